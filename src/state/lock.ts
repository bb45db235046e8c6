/**
 * One daemon per state directory: an exclusive flock(2) on
 * `<stateDir>/lanplug.lock`, which holds the owner's pid for the message a
 * second daemon prints. The kernel drops the lock when the process dies,
 * however it dies (kill -9 included), so a stale lock file never blocks.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LanplugError } from '../errors';
import { EAGAIN } from '../netlink/errno';
import { libc } from '../sys/libc';

export const LOCK_FILE = 'lanplug.lock';
const LOCK_EX = 2;
const LOCK_NB = 4;

export class StateLock {
  private constructor(
    private fd: number,
    readonly path: string,
  ) {}

  /** Takes the lock or throws Conflict naming the pid that holds it. */
  static acquire(stateDir: string): StateLock {
    const path = join(stateDir, LOCK_FILE);
    const fd = openSync(path, 'a+', 0o600);
    if (libc().flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      const errno = libc().errno();
      closeSync(fd);
      if (errno === EAGAIN) {
        const holder = lockHolder(stateDir);
        throw new LanplugError(
          'Conflict',
          `another lanplug daemon${holder === null ? '' : ` (pid ${holder})`} holds ${path}; one daemon serves a state directory: stop it first, or give this one another --state-dir`,
        );
      }
      throw new LanplugError('Internal', `cannot lock ${path}: errno ${errno}`, { errno });
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    return new StateLock(fd, path);
  }

  release(): void {
    if (this.fd < 0) return;
    closeSync(this.fd); // closing the last descriptor drops the flock
    this.fd = -1;
  }
}

/** The pid written by the daemon that holds (or last held) the lock, or null. */
export function lockHolder(stateDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(stateDir, LOCK_FILE), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
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
