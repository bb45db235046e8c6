// Finding and removing what a lab leaves on the machine: the process sweep (every process in a
// lab's network or mount namespace, in its cgroups, or a lab program naming its directory), cgroup
// directory discovery, lazy unmounts under a lab directory, the owner file that tells a live lab
// from a crashed one, the stale-lab cleanup that removes crashed runs' labs, and labLeftovers()
// for asserting that teardown was complete. Everything here is synchronous (it runs in exit and
// signal hooks).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { CGROUP_RE, DIR_PREFIX, NS_RE, TMP_ROOT, labDir, labIdOfDir } from './names';
import { delNetns } from './ns';
import { allPids, isAlive, nsIdentity, readOr, run, signal, startTime, waitGoneSync } from './proc';

/** Processes the sweep may kill when their command line names a lab directory. */
const LAB_PROGRAMS = new Set([
  'dockerd',
  'containerd',
  'containerd-shim',
  'containerd-shim-runc-v2',
  'runc',
  'docker-init',
  'docker-proxy',
  'node',
  'nsenter',
  'unshare',
  'sh',
]);

/** How long SIGKILLed processes get to disappear (uninterruptible I/O over 9p can hold them). */
const KILLED_GONE_MS = 15_000;

export interface SweepMarkers {
  /** Network namespaces ("net:[ino]"): every process in one is the lab's. */
  netIds: Set<string>;
  /** Mount namespaces ("mnt:[ino]"): every process in one is the lab's. */
  mntIds: Set<string>;
  /** A cgroup path component that marks a lab's process (dockerd's --cgroup-parent). */
  cgroup: (name: string) => boolean;
  /** Lab directories: a LAB_PROGRAMS process whose argv names one is the lab's. */
  dirs: string[];
}

/** SIGKILLs every process that belongs to the lab(s) described; returns their pids. */
export function sweepProcesses(m: SweepMarkers): number[] {
  const victims: number[] = [];
  for (const pid of allPids()) {
    if (pid === process.ppid) continue;
    const base = `/proc/${pid}`;
    let hit = false;
    try {
      if (m.netIds.has(fs.readlinkSync(`${base}/ns/net`)) || m.mntIds.has(fs.readlinkSync(`${base}/ns/mnt`)))
        hit = true;
    } catch {
      continue; // gone, or a kernel thread
    }
    if (!hit) hit = inCgroup(pid, m.cgroup);
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
  waitGoneSync(victims, KILLED_GONE_MS);
  return victims;
}

/** Whether a path component of one of the process's cgroups (any hierarchy) matches. */
export function inCgroup(pid: number, match: (name: string) => boolean): boolean {
  for (const line of readOr(`/proc/${pid}/cgroup`, '').split('\n')) {
    const cg = line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
    if (cg.split('/').some(match)) return true;
  }
  return false;
}

/** What Podman calls the network namespaces it makes in /run/netns (containers/common pkg/netns). */
const PODMAN_NETNS_RE = /^netns-[0-9a-f-]+$/;

/**
 * The network namespaces in /run/netns that Podman made for the containers in the matching
 * cgroups (a lab Podman host's): found by the processes in them, so ask before they are killed.
 * The names are Podman's own, never the lab's; a Podman of the machine has its own there.
 */
export function podmanNetnsOf(cgroup: (name: string) => boolean): string[] {
  const ids = new Set<string>();
  for (const pid of allPids()) {
    if (!inCgroup(pid, cgroup)) continue;
    const id = nsIdentity('net', `/proc/${pid}/ns/net`);
    if (id !== undefined) ids.add(id);
  }
  if (ids.size === 0) return [];
  let names: string[] = [];
  try {
    names = fs.readdirSync('/run/netns').filter((n) => PODMAN_NETNS_RE.test(n));
  } catch {
    // none
  }
  return names.filter((n) => ids.has(nsIdentity('net', `/run/netns/${n}`) ?? '-'));
}

/** SIGKILLs every process in the named network namespace (/run/netns/<ns>). */
export function sweepNetns(ns: string): number[] {
  return sweepProcesses({
    netIds: new Set([nsIdentity('net', `/run/netns/${ns}`) ?? '-']),
    mntIds: new Set(),
    cgroup: () => false,
    dirs: [],
  });
}

/** The mount points at or under dir in this mount namespace, deepest first. */
export function mountPointsUnder(dir: string): string[] {
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
export function umountUnder(dir: string): string[] {
  const mps = mountPointsUnder(dir);
  for (const mp of mps) run(['umount', '-l', mp]);
  return mps;
}

/** Removes a tree of empty directories (cgroup dirs), deepest first; busy ones stay. */
export function rmdirTree(dir: string): void {
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
export function findCgroupDirs(match: (name: string) => boolean): string[] {
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

/** Writes <dir>/owner: this process's pid and start time, so that a later cleanup can tell it is alive. */
export function markOwner(dir: string): void {
  fs.writeFileSync(path.join(dir, 'owner'), `${process.pid} ${startTime(process.pid) ?? ''}\n`);
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

export interface StaleCleanupReport {
  namespaces: string[];
  pids: number[];
  dirs: string[];
  mounts: string[];
  cgroups: string[];
}

/**
 * Removes what crashed earlier runs left: lab namespaces (lp-lan-*, lp-dh-*, lp-lh-* with a lab id),
 * their processes (dockerd, containerd, shims, containers, lanplug; a Podman host's holder, conmons
 * and containers), the network namespaces Podman made for those containers, cgroup dirs, mounts
 * and temp dirs. Labs whose owning process is still alive (another test file running now) are left alone.
 */
export function cleanupStaleLab(): StaleCleanupReport {
  const report: StaleCleanupReport = { namespaces: [], pids: [], dirs: [], mounts: [], cgroups: [] };
  const live = new Set<string>();
  const stale = new Set<string>();
  let dirs: string[] = [];
  try {
    dirs = fs.readdirSync(TMP_ROOT).filter((n) => labIdOfDir(n) !== undefined);
  } catch {
    // no /tmp?
  }
  for (const d of dirs) {
    const id = labIdOfDir(d) as string;
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

  const staleDirs = [...stale].map(labDir);
  const staleCgroup = (n: string): boolean => {
    const id = CGROUP_RE.exec(n)?.[1];
    return id !== undefined && stale.has(id);
  };
  // a crashed Podman host's containers outlive it (they are not in a lab namespace): their
  // namespaces are known by them, so before they are killed
  const podmanNs = podmanNetnsOf(staleCgroup);
  report.pids = sweepProcesses({
    netIds: new Set(staleNs.map((ns) => nsIdentity('net', `/run/netns/${ns}`) ?? '-')),
    mntIds: new Set(),
    cgroup: staleCgroup,
    dirs: staleDirs,
  });
  for (const ns of [...staleNs, ...podmanNs]) {
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

/** The namespaces in /run/netns named with this lab id (whoever made them: the lab, a bench, a program it ran). */
export function labNamespaces(id: string): string[] {
  try {
    return fs.readdirSync('/run/netns').filter((n) => NS_RE.exec(n)?.[1] === id);
  } catch {
    return [];
  }
}

/**
 * What is left of the labs with these ids (this process's: names.issuedLabIds), whatever else runs on
 * the machine meanwhile: their namespaces, directories, and processes whose command line names a directory.
 */
export function labLeftoversOf(ids: Iterable<string>): { namespaces: string[]; dirs: string[]; processes: string[] } {
  const idList = [...ids];
  const dirs = idList.map(labDir).filter((d) => fs.existsSync(d));
  const named = idList.map(labDir);
  const processes: string[] = [];
  for (const pid of allPids()) {
    const argv = readOr(`/proc/${pid}/cmdline`, '').split('\0');
    if (argv.some((a) => named.some((d) => a === d || a.includes(d + '/')))) processes.push(`${pid} ${argv.join(' ')}`);
  }
  return { namespaces: idList.flatMap(labNamespaces), dirs, processes };
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
    dirs = fs
      .readdirSync(TMP_ROOT)
      .filter((n) => n.startsWith(DIR_PREFIX))
      .map((n) => path.join(TMP_ROOT, n));
  } catch {
    // none
  }
  return { namespaces, dirs, cgroups: findCgroupDirs((n) => CGROUP_RE.test(n)) };
}
