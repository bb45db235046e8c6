/**
 * One daemon per state directory: an exclusive flock(2) on
 * `<stateDir>/lanplug.lock`, which holds the owner's pid (and, for a managed
 * Docker plugin, its name) for the message a second daemon prints. The kernel
 * drops the lock when the process dies, however it dies (kill -9 included), so
 * a stale lock file never blocks. flock works across mount namespaces (the
 * same inode): a managed plugin's bind-mounted state directory and the host's
 * daemon see one lock.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LanplugError } from '../errors';
import { DRIVER_KINDS } from '../model/network';
import { EAGAIN } from '../netlink/errno';
import { libc } from '../sys/libc';

export const LOCK_FILE = 'lanplug.lock';
const LOCK_EX = 2;
const LOCK_NB = 4;
const PROBE_RETRIES = 5;
const PROBE_PAUSE_MS = 10;
const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Who serves the directory: a daemon started on the host (systemd or by hand), or a managed Docker
 * plugin (its pid means nothing outside the plugin's pid namespace: its name is what to act on).
 */
export type LockOwner = { kind: 'daemon' } | { kind: 'plugin'; name: string } | { kind: 'gc' };

export interface LockHolder {
  pid: number;
  owner: LockOwner;
}

export class StateLock {
  private constructor(
    private fd: number,
    readonly path: string,
  ) {}

  /** Takes the lock or throws Conflict saying who holds it and what to do. */
  static acquire(stateDir: string, owner: LockOwner = { kind: 'daemon' }): StateLock {
    const taken = StateLock.tryAcquire(stateDir, owner);
    if (taken instanceof StateLock) return taken;
    throw new LanplugError('Conflict', heldMessage(join(stateDir, LOCK_FILE), taken, owner));
  }

  /**
   * Takes the lock, or says who holds it (an unreadable holder counts as a daemon of unknown pid).
   * A few tries: isLocked() below probes by taking the lock for two system calls, and a start that
   * meets a probe must not take it for a daemon.
   */
  static tryAcquire(stateDir: string, owner: LockOwner): StateLock | LockHolder {
    const path = join(stateDir, LOCK_FILE);
    const fd = openSync(path, 'a+', 0o600);
    for (let attempt = 1; libc().flock(fd, LOCK_EX | LOCK_NB) !== 0; attempt++) {
      const errno = libc().errno();
      if (errno === EAGAIN && attempt < PROBE_RETRIES) {
        Atomics.wait(pause, 0, 0, PROBE_PAUSE_MS);
        continue;
      }
      closeSync(fd);
      if (errno === EAGAIN) return lockHolder(stateDir) ?? { pid: 0, owner: { kind: 'daemon' } };
      throw new LanplugError('Internal', `cannot lock ${path}: errno ${errno}`, { errno });
    }
    ftruncateSync(fd, 0);
    const second = owner.kind === 'plugin' ? `plugin ${owner.name}\n` : owner.kind === 'gc' ? 'gc\n' : '';
    writeSync(fd, `${process.pid}\n${second}`, 0);
    return new StateLock(fd, path);
  }

  release(): void {
    if (this.fd < 0) return;
    closeSync(this.fd); // closing the last descriptor drops the flock
    this.fd = -1;
  }
}

/** What the daemon that holds (or last held) the lock wrote into it, or null. */
export function lockHolder(stateDir: string): LockHolder | null {
  let lines: string[];
  try {
    lines = readFileSync(join(stateDir, LOCK_FILE), 'utf8').split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  if (lines[1] === 'gc') return { pid, owner: { kind: 'gc' } };
  const plugin = /^plugin (\S+)$/.exec(lines[1] ?? '');
  return { pid, owner: plugin === null ? { kind: 'daemon' } : { kind: 'plugin', name: plugin[1] ?? '' } };
}

/** How a holder is named to an operator: a plugin by its name (its pid is in another namespace). */
export function describeHolder(holder: LockHolder): string {
  if (holder.owner.kind === 'plugin') return `the managed Docker plugin ${holder.owner.name}`;
  if (holder.owner.kind === 'gc') return `lanplug gc${holder.pid > 0 ? ` (pid ${holder.pid})` : ''}`;
  return `a lanplug daemon${holder.pid > 0 ? ` (pid ${holder.pid})` : ''}`;
}

/** lanplug's managed plugins come in pairs, one per link kind, under one tag: both must go. */
function siblingPlugins(name: string): string[] {
  const match = /^(.*\/)[a-z]+(:.*)$/.exec(name);
  return match === null ? [name] : DRIVER_KINDS.map((kind) => `${match[1] ?? ''}${kind}${match[2] ?? ''}`);
}

/** One line: who holds the lock, and what to do, for the kind of process that wanted it. */
export function heldMessage(path: string, holder: LockHolder, wanted: LockOwner): string {
  const who = describeHolder(holder);
  if (holder.owner.kind === 'gc')
    return `${who} holds ${path} for the moment it reconciles: try again when it has finished`;
  if (holder.owner.kind === 'plugin' && wanted.kind === 'daemon')
    return `${who} holds ${path}: a managed and a legacy lanplug never share a state directory; disable the managed plugins first (docker plugin disable ${siblingPlugins(holder.owner.name).join(' ')}) or give this daemon another --state-dir`;
  if (holder.owner.kind === 'daemon' && wanted.kind === 'plugin')
    return `${who} outside Docker holds ${path}: a managed and a legacy lanplug never share a state directory; stop it (systemctl stop lanplug.service lanplug-macvlan.socket lanplug-ipvlan.socket lanplug-ipam.socket lanplug-dhcp.socket), then disable and enable ${wanted.name}; or give the plugin another directory (docker plugin disable ${wanted.name}, then docker plugin set ${wanted.name} state.source=DIR)`;
  return `another lanplug daemon${holder.pid > 0 ? ` (pid ${holder.pid})` : ''} holds ${path}; one daemon serves a state directory: stop it first, or give this one another --state-dir`;
}

/** True when a daemon holds the lock now (a read-only probe: takes and drops it if free). */
export function isLocked(stateDir: string): boolean {
  let fd: number;
  try {
    fd = openSync(join(stateDir, LOCK_FILE), 'r');
  } catch {
    return false;
  }
  try {
    if (libc().flock(fd, LOCK_EX | LOCK_NB) === 0) return false;
    return libc().errno() === EAGAIN;
  } finally {
    closeSync(fd); // drops the probe's lock, if it got one
  }
}
