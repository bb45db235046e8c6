// The lab's container image: Debian's busybox-static with its applet symlinks, as a tarball that
// `docker import` turns into `alpine:latest` (no registry is reachable here).
// The tarball is cached under <repo>/.lab/ (gitignored) and rebuilt when /bin/busybox changes.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../support/repo';
import { runOk } from './proc';

export const BUSYBOX = '/bin/busybox';

/** Applets the tests rely on; the build fails loudly if busybox lacks one. */
export const REQUIRED_APPLETS = [
  'sh',
  'ash',
  'ip',
  'ping',
  'ping6',
  'sleep',
  'cat',
  'ls',
  'ifconfig',
  'route',
  'arping',
  'nc',
  'wget',
  'hostname',
  'echo',
  'true',
  'sysctl',
] as const;

/**
 * Returns the path of a tar of a root filesystem holding /bin/busybox and a symlink for every
 * applet `busybox --list-full` names (at its usual path: /bin/sh, /sbin/ip, /usr/bin/nc, ...).
 */
export function busyboxRootfsTar(cacheDir = path.join(repoRoot(), '.lab')): string {
  const st = fs.statSync(BUSYBOX);
  const stamp = `${st.size}-${Math.trunc(st.mtimeMs)}`;
  const tar = path.join(cacheDir, `busybox-rootfs-${stamp}.tar`);
  if (fs.existsSync(tar)) return tar;

  fs.mkdirSync(cacheDir, { recursive: true });
  const build = fs.mkdtempSync(path.join(cacheDir, 'build-'));
  try {
    const root = path.join(build, 'rootfs');
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev']) {
      fs.mkdirSync(path.join(root, d), { recursive: true });
    }
    fs.chmodSync(path.join(root, 'tmp'), 0o1777);
    fs.copyFileSync(BUSYBOX, path.join(root, 'bin/busybox'));
    fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
    const applets = runOk([BUSYBOX, '--list-full'])
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.includes('..') && !l.startsWith('/'));
    const names = new Set(applets.map((a) => path.basename(a)));
    const missing = REQUIRED_APPLETS.filter((a) => !names.has(a));
    if (missing.length > 0) throw new Error(`lab: ${BUSYBOX} lacks applets: ${missing.join(', ')}`);
    for (const rel of applets) {
      if (rel === 'bin/busybox') continue;
      const target = path.join(root, rel);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      if (!fs.existsSync(target)) fs.symlinkSync('/bin/busybox', target);
    }
    fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\n');
    const tmpTar = path.join(build, 'rootfs.tar');
    runOk(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', root, '-cf', tmpTar, '.']);
    fs.renameSync(tmpTar, tar); // atomic: concurrent builders just overwrite with the same bytes
    for (const old of fs.readdirSync(cacheDir)) {
      if (/^busybox-rootfs-.*\.tar$/.test(old) && path.join(cacheDir, old) !== tar) {
        fs.rmSync(path.join(cacheDir, old), { force: true });
      }
    }
    return tar;
  } finally {
    fs.rmSync(build, { recursive: true, force: true });
  }
}
