// Network namespaces for the lab: the nsenter argument vector that runs a program inside one
// (and, for a Docker host, inside dockerd's private mount namespace too), creating and deleting
// named namespaces, `ip addr add` arguments, and the sysctls every lab namespace gets.
// Why nsenter and never `ip netns exec`: see README.md in this directory.

import * as fs from 'node:fs';
import { run, runOk } from './proc';

/** A mount namespace to enter, and the root to take in it (undefined: that namespace's own root). */
export interface MountNs {
  ns: string;
  root: string | undefined;
}

/**
 * `nsenter --net=/run/netns/<ns> [--mount=<mntNs> --root=... --wd=<wd>] -- argv...`.
 * With mnt, the program also runs in that mount namespace (a Docker host's dockerd's). A path
 * `/proc/<pid>/ns/mnt` means: that process's root too (DockerHost.mount says it for any engine).
 */
export function nsExecArgv(ns: string, argv: readonly string[], mnt?: string | MountNs, wd = '/'): string[] {
  const a = ['nsenter', `--net=/run/netns/${ns}`];
  if (mnt !== undefined) {
    // setns into a mount namespace also moves the root to that namespace's root. Where the caller
    // runs chrooted (the full-kernel VM runs everything in a chroot of the host root), that root is
    // not the caller's: keep dockerd's own root, which nsenter opens before it switches.
    const { ns: mntNs, root } =
      typeof mnt === 'string'
        ? { ns: mnt, root: mnt.endsWith('/ns/mnt') ? mnt.replace(/\/ns\/mnt$/, '/root') : undefined }
        : mnt;
    a.push(`--mount=${mntNs}`, ...(root !== undefined ? [`--root=${root}`] : []), `--wd=${wd}`);
  }
  return [...a, '--', ...argv];
}

function validCidr(cidr: string): string {
  if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(cidr)) throw new Error(`lab: not an address/prefix: ${JSON.stringify(cidr)}`);
  return cidr;
}

export const isV6 = (cidr: string): boolean => cidr.includes(':');

/** `addr add <cidr> dev <dev>` for `ip -n <ns>`; IPv6 addresses get nodad (usable at once). */
export function addrArgs(cidr: string, dev: string): string[] {
  const a = ['addr', 'add', validCidr(cidr), 'dev', dev];
  if (isV6(cidr)) a.push('nodad');
  return a;
}

/** Turns IPv6 duplicate address detection off in the namespace, for links made now and later. */
export function sysctlsNoDad(ns: string): void {
  // sysctl through busybox (busybox-static is a lab dependency anyway); default.* covers links made later
  for (const key of ['net.ipv6.conf.all.accept_dad', 'net.ipv6.conf.default.accept_dad']) {
    runOk(nsExecArgv(ns, ['/bin/busybox', 'sysctl', '-qw', `${key}=0`]));
  }
}

/** `ip netns add <name>` with lo up. */
export function addNetns(name: string): void {
  runOk(['ip', 'netns', 'add', name]);
  runOk(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
}

/** `ip netns del <name>` if it exists; never throws. */
export function delNetns(name: string): void {
  if (fs.existsSync(`/run/netns/${name}`)) run(['ip', 'netns', 'del', name]);
}
