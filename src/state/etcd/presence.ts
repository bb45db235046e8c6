/**
 * This host's registration in etcd: `hosts/<host-id>` on a lease that the
 * daemon keeps alive. Every allocation's transaction compares that key with
 * the value this daemon wrote (the fence): a host whose lease ran out — cut
 * off from etcd for longer than the TTL, so that other hosts may be counting
 * down to reclaim its addresses — cannot allocate until it has registered
 * again. Addresses are never on the lease (a partitioned host's containers
 * keep using theirs; research/multihost.md §5).
 *
 * One host id, one host: cloned machines share a hostname, the default
 * --host-id, and two daemons writing as one host would each take the other's
 * addresses for their own (the orphan check would free them). A registration
 * carries its state directory's instance id (made once, kept across
 * restarts), the machine's boot id and the daemon's pid. A live registration
 * (its lease not run out) is taken over only when it is this daemon's own
 * from before a restart: the same instance, written on this boot by a
 * process that no longer runs. Any other is refused in one line that names
 * it, and every write this daemon would make is refused alike:
 *
 *   - another instance: another machine;
 *   - this instance on another boot: a copy of this state directory on a
 *     cloned machine (or this machine's own from before a reboot faster than
 *     the lease: it runs out within HOST_TTL_SECONDS);
 *   - this instance, this boot, its process running: another daemon here;
 *   - no boot id (a lanplug before boot ids, as at an upgrade): hostname and
 *     pid cannot tell it from a clone's, since clones share the hostname and
 *     a pid means nothing on another machine; it is waited out, once.
 *
 * A refused daemon tries again every keepalive tick and registers as soon
 * as the other registration is gone.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { LanplugError } from '../../errors';
import type { Logger } from '../../log';
import type { Compare, EtcdClient, KeyValue, Op } from './client';

/** etcd's lease on the host key; etcd may grant more, and a leader change restarts the count. */
export const HOST_TTL_SECONDS = 15;
const KEEPALIVE_EVERY_MS = 5_000;
/** Allocation stops this long before the lease could have run out without lanplug noticing. */
const SAFETY_MARGIN_MS = 3_000;

export class HostPresence {
  private lease: string | null = null;
  private registration: string | null = null;
  private lastRefresh = 0;
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  /** This process's: tells the registrations it wrote from an earlier daemon's. */
  private readonly epoch = randomBytes(8).toString('hex');
  /** Why this daemon may not register now: another host's registration holds this host id. */
  private refusal: string | null = null;
  private readonly registered: (() => void)[] = [];

  constructor(
    private readonly client: EtcdClient,
    readonly hostId: string,
    private readonly instance: string,
    private readonly key: string,
    private readonly log: Logger,
    private readonly machine: ThisMachine = thisMachine(),
  ) {}

  /** Registers in the background and keeps the lease alive; the daemon never waits on etcd to start. */
  start(): void {
    const tick = (): void => {
      this.refresh(KEEPALIVE_EVERY_MS).catch((err: unknown) => {
        if (this.refusal !== null) return; // logged once, when it changed
        this.log.warn('etcd: this host could not renew its registration', { host: this.hostId, error: String(err) });
      });
    };
    this.timer = setInterval(tick, KEEPALIVE_EVERY_MS);
    this.timer.unref();
    tick();
  }

  /** The lease is left to run out (a restarting daemon must not look like a host that left). */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Whether the registration was refreshed recently enough to allocate on it. */
  get fresh(): boolean {
    return this.registration !== null && Date.now() - this.lastRefresh < HOST_TTL_SECONDS * 1000 - SAFETY_MARGIN_MS;
  }

  /** Why this daemon is not registered although etcd answers (another host holds its id); null otherwise. */
  get refused(): string | null {
    return this.refusal;
  }

  /** The lease this host's registration is on (a lock it takes goes with it); null while unregistered. */
  get leaseId(): string | null {
    return this.fresh ? this.lease : null;
  }

  /** The compare that fences a write; refreshes (or registers) first when the registration is not fresh. */
  async fence(deadlineMs: number): Promise<Extract<Compare, { target: 'VALUE' }>> {
    if (!this.fresh) await this.refresh(deadlineMs);
    const registration = this.registration;
    if (registration === null || !this.fresh)
      throw new LanplugError('Unavailable', `etcd: host ${this.hostId} is not registered`);
    return { key: this.key, target: 'VALUE', result: 'EQUAL', value: registration };
  }

  /**
   * Calls `listener` after every new registration (at start, and each time this host is back
   * after its registration ran out or was refused): what other hosts did meanwhile (reclaimed
   * its addresses) is final from then on. Not awaited: the write that registered goes on.
   */
  onRegistered(listener: () => void): void {
    this.registered.push(listener);
  }

  /** After a fenced write failed on the fence: register again before the next write. */
  forget(): void {
    this.registration = null;
  }

  /** One keepalive, or a new registration when there is none (or etcd dropped the lease). */
  private refresh(deadlineMs: number): Promise<void> {
    this.refreshing ??= this.refreshOnce(deadlineMs).finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  private async refreshOnce(deadlineMs: number): Promise<void> {
    const started = Date.now();
    const deadline = started + deadlineMs;
    if (this.lease !== null && this.registration !== null) {
      const ttl = await this.client.keepAlive(this.lease, deadlineMs);
      // Alive, and still ours: another daemon with this host id may have written over it.
      if (ttl > 0 && (await this.stillOurs(deadline))) {
        this.lastRefresh = started;
        return;
      }
      if (ttl <= 0) this.log.warn('etcd: this host registration had expired; registering again', { host: this.hostId });
      this.registration = null;
    }
    await this.register(started, deadline);
  }

  private async stillOurs(deadline: number): Promise<boolean> {
    const registration = this.registration ?? '';
    const compare: Compare = { key: this.key, target: 'VALUE', result: 'EQUAL', value: registration };
    const result = await this.client.txn([compare], [], [], deadline - Date.now());
    return result.succeeded;
  }

  /**
   * Writes the registration where there is none, or over this host's own from before a restart;
   * refuses (throws, and remembers why) where another host's live registration holds this host id.
   */
  private async register(started: number, deadline: number): Promise<void> {
    const lease = await this.client.grantLease(HOST_TTL_SECONDS, deadline - Date.now());
    const value: Registration = {
      host: this.hostId,
      instance: this.instance,
      epoch: this.epoch,
      ...(this.machine.bootId === null ? {} : { boot: this.machine.bootId }),
      hostname: hostname(),
      pid: this.machine.pid,
      since: new Date().toISOString(),
    };
    const registration = JSON.stringify(value);
    const write: Op = { put: { key: this.key, value: registration, lease } };
    let written = false;
    for (let round = 0; round < 3 && !written; round++) {
      const result = await this.client.txn(
        [{ key: this.key, target: 'CREATE', result: 'EQUAL', createRevision: 0n }],
        [write],
        [{ range: { key: this.key } }],
        deadline - Date.now(),
      );
      if (result.succeeded) {
        written = true;
        break;
      }
      const [found] = result.results[0] ?? [];
      if (found === undefined) continue; // its lease ran out just now
      const refusal = this.foreign(found);
      if (refusal !== null) {
        await this.client.revokeLease(lease, Math.max(500, deadline - Date.now())).catch(() => undefined);
        this.refuse(refusal);
      }
      // This host's own, from before a restart (or this daemon's, written before an answer was lost).
      const over = await this.client.txn(
        [{ key: this.key, target: 'MOD', result: 'EQUAL', modRevision: found.modRevision }],
        [write],
        [],
        deadline - Date.now(),
      );
      written = over.succeeded;
    }
    if (!written) throw new LanplugError('Unavailable', `etcd: host ${this.hostId} could not register (kept changing)`);
    this.lease = lease;
    this.registration = registration;
    this.lastRefresh = started;
    if (this.refusal !== null)
      this.log.info('etcd: the other registration of this host id is gone', { host: this.hostId });
    this.refusal = null;
    this.log.info('etcd: host registered', { host: this.hostId, instance: this.instance });
    for (const listener of this.registered) listener();
  }

  /** Null when `found` is this daemon's own registration, or its own from before a restart; else the refusal. */
  private foreign(found: KeyValue): string | null {
    const other = parseRegistration(found.value);
    if (other.epoch === this.epoch) return null;
    const by = `host id ${this.hostId} is registered in etcd by`;
    const where = `hostname ${other.hostname ?? '?'}, pid ${other.pid ?? '?'}, since ${other.since ?? '?'}`;
    if (other.instance !== undefined && other.instance !== this.instance)
      return `${by} another lanplug (instance ${other.instance}, ${where}): cloned machines share a hostname, the default --host-id; give this host its own --host-id, or stop lanplug on the other one`;
    const within = `within ${HOST_TTL_SECONDS} s`;
    if (other.boot === undefined)
      return `${by} a lanplug that recorded no boot id (an earlier version; ${where}): if it was this machine's before an upgrade, it runs out ${within}; if it stays, another machine runs lanplug as this host: give it its own --host-id`;
    if (other.boot !== this.machine.bootId)
      return `${by} a copy of this state directory running on another machine (boot id ${other.boot}, ${where}): give the clone its own --host-id, or stop lanplug there; if this machine rebooted, its registration from before runs out ${within}`;
    // This machine, this boot: its writer is gone unless its pid runs (this daemon's own pid: it is gone).
    if (other.pid !== undefined && other.pid !== this.machine.pid && this.machine.running(other.pid))
      return `${by} another lanplug of this machine on this state directory (boot id ${other.boot}, ${where}): stop it, or wait: its registration runs out ${within} of its stopping`;
    return null;
  }

  private refuse(refusal: string): never {
    if (this.refusal !== refusal) this.log.error(`etcd: not registering: ${refusal}`, { host: this.hostId });
    this.refusal = refusal;
    this.registration = null;
    throw new LanplugError('Conflict', refusal);
  }
}

/** Where this daemon runs: what tells its own earlier registration from a copy of its state directory elsewhere. */
export interface ThisMachine {
  /** The kernel's id of this boot (/proc/sys/kernel/random/boot_id); null where it cannot be read. */
  bootId: string | null;
  pid: number;
  /** Whether a process with this pid runs here now. */
  running(pid: number): boolean;
}

export function thisMachine(): ThisMachine {
  return { bootId: readBootId(), pid: process.pid, running: processRuns };
}

function readBootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface Registration {
  host: string;
  instance: string;
  epoch: string;
  /** Absent where the boot id could not be read, and in a lanplug's before boot ids. */
  boot?: string;
  hostname: string;
  pid: number;
  since: string;
}

/** A registration as found: written by any lanplug (one before instance ids has none, before boot ids no boot). */
function parseRegistration(text: string): Partial<Registration> {
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
    return {
      instance: str(value['instance']),
      epoch: str(value['epoch']),
      boot: str(value['boot']),
      hostname: str(value['hostname']),
      pid: typeof value['pid'] === 'number' ? value['pid'] : undefined,
      since: str(value['since']),
    };
  } catch {
    return {};
  }
}
