// The lanplug test lab: a LAN (a bridge in a network namespace), LAN hosts, and Docker hosts
// running a real dockerd (Debian's docker.io, 20.10) in their own network namespace, plus the
// lanplug daemon next to it. Nothing here configures the root namespace's interfaces; all links,
// addresses and packets live in namespaces the lab creates and deletes.
//
// Isolation from a system dockerd (and between labs): each dockerd runs in its own network
// namespace AND its own private mount namespace in which the lab's per-host directories are
// bind-mounted over /run/docker/plugins (dockerd 20.10's plugin socket directory is a constant in
// moby's pkg/plugins: no flag, no daemon.json key) and over /run/containerd (where containerd 1.6
// puts its shim sockets). dockerd's own mounts (overlay2, container netns files) exist only in that
// mount namespace and vanish with its last process. Never `ip netns exec` (it remounts /sys and
// loses the cgroup mounts dockerd needs); nsenter + `unshare --mount` leave /sys alone.
//
// exec() of a LAN, LAN host or Docker host runs the machine's own programs (ip, busybox, ...)
// inside that namespace; iputils-ping may be absent, /bin/busybox ping always works.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { busyboxRootfsTar, repoRoot } from './image';
import {
  allPids, isAlive, nsIdentity, readOr, run, runOk, signal, sleep, startTime, terminateSync,
  waitGoneSync, type RunOptions, type RunResult, CommandError,
} from './proc';

export { CommandError, type RunResult, type RunOptions } from './proc';

export const DOCKERD = '/usr/sbin/dockerd';
/** Debian's client, matching the 20.10 daemon (/usr/local/bin/docker is a newer client). */
export const DOCKER_CLIENT = '/usr/bin/docker';
/** Where dockerd 20.10 looks for plugin sockets; hard-coded in moby's pkg/plugins (no flag). */
export const DOCKER_PLUGIN_SOCKET_DIR = '/run/docker/plugins';
const CONTAINERD_RUN_DIR = '/run/containerd';
const TMP_ROOT = '/tmp';
const DIR_PREFIX = 'lp-lab-';
/** Namespace names the lab creates: lp-lan-<id>, lp-dh-<id>-<n>, lp-lh-<id>-<name>. */
const NS_RE = /^lp-(?:lan|dh|lh)-([0-9a-f]{6})(?:-[a-z0-9]+)?$/;
const CGROUP_RE = /^lp-lab-([0-9a-f]{6})(?:-\d+)?$/;
const SYS_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
/** Processes the sweep may kill when their command line names a lab directory. */
const LAB_PROGRAMS = new Set([
  'dockerd', 'containerd', 'containerd-shim', 'containerd-shim-runc-v2', 'runc', 'docker-init',
  'docker-proxy', 'node', 'nsenter', 'unshare', 'sh',
]);

// Run inside `unshare --mount`: $1 = plugin dir, $2 = containerd run dir, rest = command.
const MOUNT_SCRIPT =
  'set -e; mount --bind "$1" ' + DOCKER_PLUGIN_SOCKET_DIR + '; mount --bind "$2" ' + CONTAINERD_RUN_DIR +
  '; shift 2; exec "$@"';

// ---------------------------------------------------------------------------------------------
// registry of live labs, torn down on exit and on SIGINT/SIGTERM

const liveLans = new Set<Lan>();
let hooksInstalled = false;

function onExit(): void {
  destroyAll();
}
function onSignal(sig: NodeJS.Signals): void {
  try {
    destroyAll();
  } finally {
    process.exit(sig === 'SIGINT' ? 130 : 143);
  }
}
function updateHooks(): void {
  const want = liveLans.size > 0;
  if (want === hooksInstalled) return;
  if (want) {
    process.on('exit', onExit);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  } else {
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  hooksInstalled = want;
}

/** Destroys every lab this process created and has not destroyed yet (synchronous). */
export function destroyAll(): void {
  for (const lan of [...liveLans]) lan.destroy();
}

// ---------------------------------------------------------------------------------------------
// helpers

function nsExecArgv(ns: string, argv: readonly string[], mntNs?: string, wd = '/'): string[] {
  const a = ['nsenter', `--net=/run/netns/${ns}`];
  if (mntNs !== undefined) {
    // setns into a mount namespace also moves the root to that namespace's root. Where the caller
    // runs chrooted (the full-kernel VM runs everything in a chroot of the host root), that root is
    // not the caller's: keep dockerd's own root, which nsenter opens before it switches.
    const root = mntNs.replace(/\/ns\/mnt$/, '/root');
    a.push(`--mount=${mntNs}`, ...(root !== mntNs ? [`--root=${root}`] : []), `--wd=${wd}`);
  }
  return [...a, '--', ...argv];
}

function validCidr(cidr: string): string {
  if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(cidr)) throw new Error(`lab: not an address/prefix: ${JSON.stringify(cidr)}`);
  return cidr;
}
const isV6 = (cidr: string): boolean => cidr.includes(':');

function addrArgs(cidr: string, dev: string): string[] {
  const a = ['addr', 'add', validCidr(cidr), 'dev', dev];
  if (isV6(cidr)) a.push('nodad');
  return a;
}

function sysctlsNoDad(ns: string): void {
  // sysctl through busybox (busybox-static is a lab dependency anyway); default.* covers links made later
  for (const key of ['net.ipv6.conf.all.accept_dad', 'net.ipv6.conf.default.accept_dad']) {
    runOk(nsExecArgv(ns, ['/bin/busybox', 'sysctl', '-qw', `${key}=0`]));
  }
}

function addNetns(name: string): void {
  runOk(['ip', 'netns', 'add', name]);
  runOk(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
}

function delNetns(name: string): void {
  if (fs.existsSync(`/run/netns/${name}`)) run(['ip', 'netns', 'del', name]);
}

function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of ['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'NOTIFY_SOCKET']) {
    delete env[k];
  }
  return env;
}

function mountPointsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readOr('/proc/self/mountinfo', '').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp === undefined) continue;
    const p = mp.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === dir || p.startsWith(dir + '/')) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Lazily unmounts anything mounted under dir (in this mount namespace), deepest first. */
function umountUnder(dir: string): string[] {
  const mps = mountPointsUnder(dir);
  for (const mp of mps) run(['umount', '-l', mp]);
  return mps;
}

function rmdirTree(dir: string): void {
  let entries: fs.Dirent[] = [];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory()) rmdirTree(path.join(dir, e.name));
  try {
    fs.rmdirSync(dir);
  } catch {
    // busy or gone
  }
}

/** cgroup directories (any v1 hierarchy or v2) whose name matches, up to depth 4. */
function findCgroupDirs(match: (name: string) => boolean): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = path.join(dir, e.name);
      if (match(e.name)) found.push(p);
      else if (depth < 4) walk(p, depth + 1);
    }
  };
  walk('/sys/fs/cgroup', 0);
  return found;
}

interface SweepMarkers {
  netIds: Set<string>;
  mntIds: Set<string>;
  cgroup: (name: string) => boolean;
  dirs: string[];
}

/** SIGKILLs every process that belongs to the lab(s) described; returns their pids. */
function sweepProcesses(m: SweepMarkers): number[] {
  const victims: number[] = [];
  for (const pid of allPids()) {
    if (pid === process.ppid) continue;
    const base = `/proc/${pid}`;
    let hit = false;
    try {
      if (m.netIds.has(fs.readlinkSync(`${base}/ns/net`)) || m.mntIds.has(fs.readlinkSync(`${base}/ns/mnt`))) hit = true;
    } catch {
      continue; // gone, or a kernel thread
    }
    if (!hit) {
      for (const line of readOr(`${base}/cgroup`, '').split('\n')) {
        const cg = line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
        if (cg.split('/').some(m.cgroup)) {
          hit = true;
          break;
        }
      }
    }
    if (!hit && m.dirs.length > 0) {
      const argv = readOr(`${base}/cmdline`, '').split('\0');
      const prog = path.basename(argv[0] ?? '');
      if (LAB_PROGRAMS.has(prog) && argv.some((a) => m.dirs.some((d) => a.includes(d + '/') || a === d))) hit = true;
    }
    if (hit && isAlive(pid)) {
      signal(pid, 'SIGKILL');
      victims.push(pid);
    }
  }
  waitGoneSync(victims, 5_000);
  return victims;
}

function connectable(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.createConnection({ path: sock });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------------------------------------
// LAN

export interface LanOptions {
  /** Addresses put on br0 in the LAN namespace (the gateway); default ['172.16.86.1/24']. */
  addresses?: string[];
  /** MTU of the bridge and of every port made later; default 1500. */
  mtu?: number;
}

export interface LanHostOptions {
  /** Default route via this address (optional). */
  gateway?: string;
}

export class LanHost {
  readonly port: string;
  private destroyed = false;
  constructor(
    readonly lan: Lan,
    readonly name: string,
    readonly ns: string,
    readonly addresses: string[],
  ) {
    this.port = `lh-${name}`;
  }
  /** Runs argv inside this LAN host's namespace. */
  exec(argv: readonly string[], opts?: RunOptions): RunResult {
    return run(nsExecArgv(this.ns, argv), opts);
  }
  execOk(argv: readonly string[], opts?: RunOptions): string {
    return runOk(nsExecArgv(this.ns, argv), opts);
  }
  addAddress(cidr: string): void {
    runOk(['ip', '-n', this.ns, ...addrArgs(cidr, 'eth0')]);
    this.addresses.push(cidr);
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    sweepProcesses({ netIds: new Set([nsIdentity('net', `/run/netns/${this.ns}`) ?? '-']), mntIds: new Set(), cgroup: () => false, dirs: [] });
    delNetns(this.ns);
    this.lan.lanHosts.delete(this);
  }
}

export class Lan {
  readonly bridge = 'br0';
  readonly ns: string;
  readonly dir: string;
  readonly mtu: number;
  readonly addresses: string[] = [];
  /** @internal */ readonly dockerHosts = new Set<DockerHost>();
  /** @internal */ readonly lanHosts = new Set<LanHost>();
  /** @internal */ nextHost = 1;
  private destroyed = false;

  constructor(readonly id: string, opts: LanOptions) {
    this.ns = `lp-lan-${id}`;
    this.dir = path.join(TMP_ROOT, `${DIR_PREFIX}${id}`);
    this.mtu = opts.mtu ?? 1500;
  }

  /** @internal */ setUp(opts: LanOptions): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    fs.writeFileSync(path.join(this.dir, 'owner'), `${process.pid} ${startTime(process.pid) ?? ''}\n`);
    addNetns(this.ns);
    sysctlsNoDad(this.ns);
    runOk(['ip', '-n', this.ns, 'link', 'add', this.bridge, 'mtu', String(this.mtu), 'type', 'bridge',
      'stp_state', '0', 'forward_delay', '0', 'mcast_snooping', '0']);
    runOk(['ip', '-n', this.ns, 'link', 'set', this.bridge, 'up']);
    for (const a of opts.addresses ?? ['172.16.86.1/24']) this.addAddress(a);
  }

  /** Adds an address (IPv4 or IPv6 with nodad) to br0 in the LAN namespace. */
  addAddress(cidr: string): void {
    runOk(['ip', '-n', this.ns, ...addrArgs(cidr, this.bridge)]);
    this.addresses.push(cidr);
  }

  /** Runs argv inside the LAN namespace (where br0 and the gateway address live). */
  exec(argv: readonly string[], opts?: RunOptions): RunResult {
    return run(nsExecArgv(this.ns, argv), opts);
  }
  execOk(argv: readonly string[], opts?: RunOptions): string {
    return runOk(nsExecArgv(this.ns, argv), opts);
  }

  /**
   * Another machine on the LAN: namespace lp-lh-<id>-<name> whose eth0 is a veth into br0
   * (port lh-<name>) with the given addresses. name: 1-8 of [a-z0-9].
   */
  addLanHost(name: string, cidrs: string | string[], opts: LanHostOptions = {}): LanHost {
    if (!/^[a-z0-9]{1,8}$/.test(name)) throw new Error(`lab: LAN host name must be 1-8 of [a-z0-9], received: ${JSON.stringify(name)}`);
    const host = new LanHost(this, name, `lp-lh-${this.id}-${name}`, []);
    this.lanHosts.add(host);
    addNetns(host.ns);
    sysctlsNoDad(host.ns);
    this.plug(host.port, host.ns);
    for (const c of Array.isArray(cidrs) ? cidrs : [cidrs]) host.addAddress(c);
    if (opts.gateway !== undefined) {
      runOk(['ip', '-n', host.ns, ...(isV6(opts.gateway) ? ['-6'] : []), 'route', 'add', 'default', 'via', opts.gateway]);
    }
    return host;
  }

  /** @internal Creates veth <port> (in br0) <-> eth0 (in ns), both up. */
  plug(port: string, ns: string): void {
    runOk(['ip', '-n', this.ns, 'link', 'add', port, 'mtu', String(this.mtu), 'type', 'veth',
      'peer', 'name', 'eth0', 'mtu', String(this.mtu), 'netns', ns]);
    runOk(['ip', '-n', this.ns, 'link', 'set', port, 'master', this.bridge, 'up']);
    runOk(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
  }

  /** Tears down every Docker host and LAN host of this LAN, the namespace and the temp dir. Idempotent, synchronous. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      for (const dh of [...this.dockerHosts]) dh.destroy();
      for (const h of [...this.lanHosts]) h.destroy();
      sweepProcesses({ netIds: new Set([nsIdentity('net', `/run/netns/${this.ns}`) ?? '-']), mntIds: new Set(), cgroup: () => false, dirs: [] });
      delNetns(this.ns);
      umountUnder(this.dir);
      fs.rmSync(this.dir, { recursive: true, force: true });
    } finally {
      liveLans.delete(this);
      updateHooks();
    }
  }
}

/** Creates a LAN: namespace lp-lan-<id> holding bridge br0 (up) with the gateway address(es). */
export function createLan(opts: LanOptions = {}): Lan {
  const lan = new Lan(randomBytes(3).toString('hex'), opts);
  liveLans.add(lan);
  updateHooks();
  try {
    lan.setUp(opts);
  } catch (e) {
    lan.destroy();
    throw e;
  }
  return lan;
}

// ---------------------------------------------------------------------------------------------
// Docker host

export interface DockerHostOptions {
  /** Addresses for eth0 (none by default: macvlan/ipvlan children carry the containers' addresses). */
  addresses?: string[];
  /** Enable hairpin on this host's bridge port (for macvlan vepa mode). */
  hairpin?: boolean;
  /** Import the busybox image as alpine:latest (default true). */
  image?: boolean;
  /** Extra dockerd arguments, e.g. ['--experimental']. */
  dockerdArgs?: string[];
  /** How long to wait for `docker info` to answer (default 30 s). */
  readyTimeoutMs?: number;
}

export class DockerHost {
  readonly ns: string;
  /** This host's port on the LAN bridge (in the LAN namespace). */
  readonly port: string;
  readonly dir: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly sock: string;
  readonly pidFile: string;
  readonly logPath: string;
  /** The directory dockerd sees as /run/docker/plugins: put plugin sockets here. */
  readonly pluginDir: string;
  readonly cgroupParent: string;
  readonly clientConfigDir: string;
  /** @internal */ readonly containerdRunDir: string;
  /** @internal */ readonly lanplugs = new Set<Lanplug>();
  dockerdPid = 0;
  private mntId: string | undefined;
  private netId: string | undefined;
  private destroyed = false;
  private lanplugCount = 0;

  constructor(
    readonly lan: Lan,
    readonly index: number,
  ) {
    this.ns = `lp-dh-${lan.id}-${index}`;
    this.port = `dh${index}`;
    this.dir = path.join(lan.dir, `dh${index}`);
    this.dataRoot = path.join(this.dir, 'data');
    this.execRoot = path.join(this.dir, 'run');
    this.sock = path.join(this.dir, 'docker.sock');
    this.pidFile = path.join(this.dir, 'docker.pid');
    this.logPath = path.join(this.dir, 'dockerd.log');
    this.pluginDir = path.join(this.dir, 'plugins');
    this.containerdRunDir = path.join(this.dir, 'containerd');
    this.clientConfigDir = path.join(this.dir, 'client');
    this.cgroupParent = `lp-lab-${lan.id}-${index}`;
  }

  /** The mount namespace of dockerd (where its overlay and netns mounts, and the plugin dir bind, live). */
  get mntNs(): string | undefined {
    return this.dockerdPid !== 0 && isAlive(this.dockerdPid) ? `/proc/${this.dockerdPid}/ns/mnt` : undefined;
  }

  /** @internal */ async setUp(opts: DockerHostOptions): Promise<void> {
    for (const d of [this.dataRoot, this.execRoot, this.pluginDir, this.containerdRunDir, this.clientConfigDir]) {
      fs.mkdirSync(d, { recursive: true });
    }
    // unix socket paths are limited to 108 bytes; containerd's longest one lives under exec-root
    const longest = path.join(this.execRoot, 'containerd', 'containerd-debug.sock');
    if (longest.length > 100) throw new Error(`lab: exec-root too long for unix sockets: ${longest}`);
    addNetns(this.ns);
    this.netId = nsIdentity('net', `/run/netns/${this.ns}`);
    sysctlsNoDad(this.ns);
    this.lan.plug(this.port, this.ns);
    for (const a of opts.addresses ?? []) runOk(['ip', '-n', this.ns, ...addrArgs(a, 'eth0')]);
    if (opts.hairpin === true) this.setHairpin(true);
    await this.startDockerd(opts);
    if (opts.image !== false) this.importImage();
  }

  private async startDockerd(opts: DockerHostOptions): Promise<void> {
    // mount points for the binds inside dockerd's mount namespace (empty dirs; docker.io makes them too)
    fs.mkdirSync(DOCKER_PLUGIN_SOCKET_DIR, { recursive: true });
    fs.mkdirSync(CONTAINERD_RUN_DIR, { recursive: true });
    const config = path.join(this.dir, 'daemon.json');
    // keep the daemon's trust key out of /etc/docker/key.json (20.10 has no flag for it, only this key)
    fs.writeFileSync(config, JSON.stringify({ 'deprecated-key-path': path.join(this.dir, 'key.json') }) + '\n');
    const argv = [
      'nsenter', `--net=/run/netns/${this.ns}`, '--',
      'unshare', '--mount', '--propagation', 'private', '--',
      '/bin/sh', '-c', MOUNT_SCRIPT, 'sh', this.pluginDir, this.containerdRunDir,
      DOCKERD,
      '--iptables=false', '--ip6tables=false', '--bridge=none', '--userland-proxy=false',
      '--data-root', this.dataRoot, '--exec-root', this.execRoot,
      '-H', `unix://${this.sock}`, '--pidfile', this.pidFile,
      '--config-file', config, '--cgroup-parent', this.cgroupParent, '--shutdown-timeout', '2',
      ...(opts.dockerdArgs ?? []),
    ];
    const log = fs.openSync(this.logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(argv[0] as string, argv.slice(1), {
        stdio: ['ignore', log, log],
        detached: true,
        env: cleanEnv({ PATH: SYS_PATH }),
      });
    } finally {
      fs.closeSync(log);
    }
    child.on('error', () => undefined);
    child.unref();
    if (child.pid === undefined) throw new Error(`lab: could not start dockerd: ${argv.join(' ')}`);
    this.dockerdPid = child.pid; // nsenter, unshare and sh all exec: this is dockerd's pid

    const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
    for (;;) {
      if (!isAlive(this.dockerdPid)) {
        throw new Error(`lab: dockerd exited during start-up; log ${this.logPath}:\n${tail(readOr(this.logPath, ''), 30)}`);
      }
      const r = this.docker(['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 10_000 });
      if (r.status === 0) break;
      if (Date.now() > deadline) {
        throw new Error(`lab: dockerd did not answer \`docker info\` in time; last error: ${r.stderr.trim()}\nlog:\n${tail(readOr(this.logPath, ''), 30)}`);
      }
      await sleep(100);
    }
    this.mntId = nsIdentity('mnt', `/proc/${this.dockerdPid}/ns/mnt`);
  }

  /** Imports the cached busybox rootfs as alpine:latest (CMD ["ash"]). */
  importImage(tag = 'alpine:latest'): void {
    this.dockerOk(['import', '--change', 'CMD ["ash"]', busyboxRootfsTar(), tag]);
  }

  /** Runs Debian's docker client against this host's dockerd. Never throws. */
  docker(args: readonly string[], opts: RunOptions = {}): RunResult {
    return run([DOCKER_CLIENT, '-H', `unix://${this.sock}`, ...args], {
      ...opts,
      env: cleanEnv({ DOCKER_CONFIG: this.clientConfigDir, ...(opts.env ?? {}) }),
    });
  }

  /** Like docker(), but throws CommandError (naming the command and its stderr) on failure; returns stdout. */
  dockerOk(args: readonly string[], opts: RunOptions = {}): string {
    const argv = [DOCKER_CLIENT, '-H', `unix://${this.sock}`, ...args];
    const r = this.docker(args, opts);
    if (r.status !== 0) throw new CommandError(argv, r);
    return r.stdout;
  }

  /** Runs argv in this host's network namespace and dockerd's mount namespace (via nsenter). */
  exec(argv: readonly string[], opts?: RunOptions): RunResult {
    return run(nsExecArgv(this.ns, argv, this.mntNs), opts);
  }
  execOk(argv: readonly string[], opts?: RunOptions): string {
    return runOk(nsExecArgv(this.ns, argv, this.mntNs), opts);
  }

  /** Turns hairpin mode of this host's bridge port on or off (needed for macvlan vepa mode). */
  setHairpin(on: boolean): void {
    runOk(['ip', '-n', this.lan.ns, 'link', 'set', 'dev', this.port, 'type', 'bridge_slave', 'hairpin', on ? 'on' : 'off']);
  }

  /** dockerd's (and its containerd's) log so far. */
  dockerdLog(): string {
    return readOr(this.logPath, '');
  }

  /** @internal */ nextLanplugIndex(): number {
    return ++this.lanplugCount;
  }

  /**
   * Removes all containers, stops dockerd (SIGTERM, then SIGKILL), stops lanplug daemons started
   * here, kills anything left in the namespace/cgroups (containerd, shims, container processes),
   * deletes the namespace and the cgroup dirs, unmounts and removes the temp dirs.
   * Idempotent and synchronous.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      if (this.dockerdPid !== 0 && isAlive(this.dockerdPid)) {
        const ids = this.docker(['ps', '-aq'], { timeoutMs: 10_000 }).stdout.split('\n').filter((s) => s !== '');
        if (ids.length > 0) this.docker(['rm', '-f', ...ids], { timeoutMs: 30_000 });
        terminateSync(this.dockerdPid, 15_000);
      }
      for (const lp of [...this.lanplugs]) lp.stopSync();
      sweepProcesses({
        netIds: new Set([this.netId ?? nsIdentity('net', `/run/netns/${this.ns}`) ?? '-']),
        mntIds: new Set(this.mntId !== undefined ? [this.mntId] : []),
        cgroup: (n) => n === this.cgroupParent,
        dirs: [this.dir],
      });
      delNetns(this.ns);
      for (const d of findCgroupDirs((n) => n === this.cgroupParent)) rmdirTree(d);
      umountUnder(this.dir);
      fs.rmSync(this.dir, { recursive: true, force: true });
    } finally {
      this.lan.dockerHosts.delete(this);
    }
  }
}

/**
 * Creates a Docker host on the LAN: namespace lp-dh-<id>-<n> whose eth0 is a veth into br0, and a
 * real dockerd in it (own data-root, exec-root, containerd, cgroup parent, socket; the plugin
 * socket directory is DockerHost.pluginDir). Resolves once `docker info` answers and the image is imported.
 */
export async function createDockerHost(lan: Lan, opts: DockerHostOptions = {}): Promise<DockerHost> {
  const dh = new DockerHost(lan, lan.nextHost++);
  lan.dockerHosts.add(dh);
  try {
    await dh.setUp(opts);
  } catch (e) {
    dh.destroy();
    throw e;
  }
  return dh;
}

// ---------------------------------------------------------------------------------------------
// lanplug daemon

export interface LanplugOptions {
  /** --state-dir (default: a fresh dir under the Docker host's temp dir). */
  stateDir?: string;
  /** --plugin-dir (default: dockerHost.pluginDir, which dockerd sees as /run/docker/plugins). */
  pluginDir?: string;
  /** Program to run instead of [node, <repo>/bin/lanplug]; 'daemon' and the options are appended. */
  command?: string[];
  /** Extra arguments after the standard ones. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Sockets (in pluginDir) that must accept connections before start resolves; default ['lanplug-macvlan.sock']. */
  sockets?: string[];
  readyTimeoutMs?: number;
}

export class Lanplug {
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  private readonly exited: Promise<void>;
  constructor(
    readonly dockerHost: DockerHost,
    private readonly child: ChildProcess,
    readonly pid: number,
    readonly argv: string[],
    readonly stateDir: string,
    readonly pluginDir: string,
    readonly stdoutPath: string,
    readonly stderrPath: string,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, sig) => {
        this.exitCode = code;
        this.exitSignal = sig;
        resolve();
      });
    });
  }
  /** Everything the daemon wrote to stderr so far. */
  stderr(): string {
    return readOr(this.stderrPath, '');
  }
  stdout(): string {
    return readOr(this.stdoutPath, '');
  }
  get running(): boolean {
    return isAlive(this.pid);
  }
  /** SIGTERM, wait up to timeoutMs, then SIGKILL. Resolves with the exit code (null if killed by a signal). */
  async stop(timeoutMs = 5_000): Promise<number | null> {
    if (isAlive(this.pid)) {
      signal(this.pid, 'SIGTERM');
      if (!(await this.waitExit(timeoutMs))) {
        signal(this.pid, 'SIGKILL');
        await this.waitExit(5_000);
      }
    }
    this.dockerHost.lanplugs.delete(this);
    return this.exitCode;
  }
  private async waitExit(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.exited.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
  /** Synchronous stop, for teardown. */
  stopSync(timeoutMs = 5_000): void {
    terminateSync(this.pid, timeoutMs);
    this.dockerHost.lanplugs.delete(this);
  }
}

/**
 * Starts `node <repo>/bin/lanplug daemon --state-dir X --plugin-dir Y` in the Docker host's network
 * namespace and dockerd's mount namespace (nsenter), stdout/stderr to files; resolves when its
 * sockets accept connections, rejects (with its stderr) if it exits or times out first.
 */
export async function startLanplug(dh: DockerHost, opts: LanplugOptions = {}): Promise<Lanplug> {
  const n = dh.nextLanplugIndex();
  const stateDir = opts.stateDir ?? path.join(dh.dir, `lanplug-state-${n}`);
  const pluginDir = opts.pluginDir ?? dh.pluginDir;
  fs.mkdirSync(stateDir, { recursive: true });
  fs.mkdirSync(pluginDir, { recursive: true });
  const root = repoRoot();
  const program = opts.command ?? [process.execPath, path.join(root, 'bin', 'lanplug')];
  const argv = [...program, 'daemon', '--state-dir', stateDir, '--plugin-dir', pluginDir, ...(opts.args ?? [])];
  const mnt = dh.mntNs;
  if (mnt === undefined) throw new Error('lab: dockerd is not running on this Docker host');
  const full = nsExecArgv(dh.ns, argv, mnt, root);
  const stdoutPath = path.join(dh.dir, `lanplug-${n}.stdout.log`);
  const stderrPath = path.join(dh.dir, `lanplug-${n}.stderr.log`);
  const out = fs.openSync(stdoutPath, 'a');
  const err = fs.openSync(stderrPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(full[0] as string, full.slice(1), {
      stdio: ['ignore', out, err],
      env: cleanEnv(opts.env ?? {}),
    });
  } finally {
    fs.closeSync(out);
    fs.closeSync(err);
  }
  child.on('error', () => undefined);
  // a forgotten daemon must not keep the test process alive: the exit hook tears the lab down
  child.unref();
  if (child.pid === undefined) throw new Error(`lab: could not start ${full.join(' ')}`);
  const lp = new Lanplug(dh, child, child.pid, argv, stateDir, pluginDir, stdoutPath, stderrPath);
  dh.lanplugs.add(lp);

  const sockets = (opts.sockets ?? ['lanplug-macvlan.sock']).map((s) => path.join(pluginDir, s));
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
  for (;;) {
    if (!lp.running) {
      await lp.stop();
      throw new Error(`lab: lanplug exited (code ${String(lp.exitCode)}, signal ${String(lp.exitSignal)}) before its sockets were ready: ${argv.join(' ')}\nstderr:\n${tail(lp.stderr(), 40)}`);
    }
    const ready = await Promise.all(sockets.map(connectable));
    if (ready.every(Boolean)) return lp;
    if (Date.now() > deadline) {
      await lp.stop();
      throw new Error(`lab: lanplug sockets not ready in time (${sockets.filter((_s, i) => !ready[i]).join(', ')})\nstderr:\n${tail(lp.stderr(), 40)}`);
    }
    await sleep(50);
  }
}

// ---------------------------------------------------------------------------------------------
// stale labs

export interface StaleCleanupReport {
  namespaces: string[];
  pids: number[];
  dirs: string[];
  mounts: string[];
  cgroups: string[];
}

function ownerAlive(dir: string): boolean {
  const owner = readOr(path.join(dir, 'owner'), '');
  if (owner === '') {
    // a lab being created right now (between mkdir and writing its owner file) is not stale
    try {
      return Date.now() - fs.statSync(dir).mtimeMs < 60_000;
    } catch {
      return false;
    }
  }
  const [pid, start] = owner.trim().split(' ');
  const p = Number(pid);
  if (!Number.isInteger(p) || p <= 0) return false;
  return isAlive(p) && startTime(p) === start;
}

/**
 * Removes what crashed earlier runs left: lab namespaces (lp-lan-*, lp-dh-*, lp-lh-* with a lab id),
 * their processes (dockerd, containerd, shims, containers, lanplug), cgroup dirs, mounts and temp
 * dirs. Labs whose owning process is still alive (another test file running now) are left alone.
 */
export function cleanupStaleLab(): StaleCleanupReport {
  const report: StaleCleanupReport = { namespaces: [], pids: [], dirs: [], mounts: [], cgroups: [] };
  const live = new Set<string>();
  const stale = new Set<string>();
  let dirs: string[] = [];
  try {
    dirs = fs.readdirSync(TMP_ROOT).filter((n) => n.startsWith(DIR_PREFIX) && /^[0-9a-f]{6}$/.test(n.slice(DIR_PREFIX.length)));
  } catch {
    // no /tmp?
  }
  for (const d of dirs) {
    const id = d.slice(DIR_PREFIX.length);
    (ownerAlive(path.join(TMP_ROOT, d)) ? live : stale).add(id);
  }
  let nsNames: string[] = [];
  try {
    nsNames = fs.readdirSync('/run/netns');
  } catch {
    // none
  }
  const staleNs: string[] = [];
  for (const ns of nsNames) {
    const id = NS_RE.exec(ns)?.[1];
    if (id === undefined || live.has(id)) continue;
    stale.add(id);
    staleNs.push(ns);
  }
  const cgroupDirs = findCgroupDirs((n) => {
    const id = CGROUP_RE.exec(n)?.[1];
    if (id === undefined || live.has(id)) return false;
    stale.add(id);
    return true;
  });
  if (stale.size === 0) return report;

  const staleDirs = [...stale].map((id) => path.join(TMP_ROOT, `${DIR_PREFIX}${id}`));
  report.pids = sweepProcesses({
    netIds: new Set(staleNs.map((ns) => nsIdentity('net', `/run/netns/${ns}`) ?? '-')),
    mntIds: new Set(),
    cgroup: (n) => {
      const id = CGROUP_RE.exec(n)?.[1];
      return id !== undefined && stale.has(id);
    },
    dirs: staleDirs,
  });
  for (const ns of staleNs) {
    delNetns(ns);
    report.namespaces.push(ns);
  }
  for (const cg of cgroupDirs) {
    rmdirTree(cg);
    report.cgroups.push(cg);
  }
  for (const d of staleDirs) {
    report.mounts.push(...umountUnder(d));
    if (fs.existsSync(d)) {
      fs.rmSync(d, { recursive: true, force: true });
      report.dirs.push(d);
    }
  }
  return report;
}

/** What is left of labs on this machine (for assertions that teardown was complete). */
export function labLeftovers(): { namespaces: string[]; dirs: string[]; cgroups: string[] } {
  let namespaces: string[] = [];
  try {
    namespaces = fs.readdirSync('/run/netns').filter((n) => NS_RE.test(n));
  } catch {
    // none
  }
  let dirs: string[] = [];
  try {
    dirs = fs.readdirSync(TMP_ROOT).filter((n) => n.startsWith(DIR_PREFIX)).map((n) => path.join(TMP_ROOT, n));
  } catch {
    // none
  }
  return { namespaces, dirs, cgroups: findCgroupDirs((n) => CGROUP_RE.test(n)) };
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}
