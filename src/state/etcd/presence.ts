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
 * restarts) and its process's epoch. A live registration (its lease not run
 * out) of another instance is another machine: this daemon does not register,
 * and every write it would make is refused with one line naming that
 * registration. One of the same instance (or of none: written by a lanplug
 * before instance ids, as at an upgrade) is this host's own from before a
 * restart, taken over at once; but once this daemon has registered, one of
 * its instance written by another process is a copy of this state directory
 * on another machine, and is refused alike.
 */
import { randomBytes } from 'node:crypto';
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
  private registeredOnce = false;
  /** Why this daemon may not register now: another host's registration holds this host id. */
  private refusal: string | null = null;

  constructor(
    private readonly client: EtcdClient,
    readonly hostId: string,
    private readonly instance: string,
    private readonly key: string,
    private readonly log: Logger,
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
      hostname: hostname(),
      pid: process.pid,
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
    this.registeredOnce = true;
    this.log.info('etcd: host registered', { host: this.hostId, instance: this.instance });
  }

  /** Null when `found` is this host's own registration; else the one-line refusal that names it. */
  private foreign(found: KeyValue): string | null {
    const other = parseRegistration(found.value);
    if (other.epoch === this.epoch) return null;
    // At start: this host's own from before a restart (a lanplug before instance ids wrote none).
    if ((other.instance === this.instance || other.instance === undefined) && !this.registeredOnce) return null;
    const copied = other.instance === this.instance ? ', a copy of this state directory' : '';
    return `host id ${this.hostId} is registered in etcd by another lanplug (instance ${other.instance ?? 'unknown'}${copied}, hostname ${other.hostname ?? '?'}, pid ${other.pid ?? '?'}, since ${other.since ?? '?'}): cloned machines share a hostname, the default --host-id; give this host its own --host-id, or stop lanplug on the other one`;
  }

  private refuse(refusal: string): never {
    if (this.refusal !== refusal) this.log.error(`etcd: not registering: ${refusal}`, { host: this.hostId });
    this.refusal = refusal;
    this.registration = null;
    throw new LanplugError('Conflict', refusal);
  }
}

interface Registration {
  host: string;
  instance: string;
  epoch: string;
  hostname: string;
  pid: number;
  since: string;
}

/** A registration as found: written by any lanplug (one before instance ids has none). */
function parseRegistration(text: string): Partial<Registration> {
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
    return {
      instance: str(value['instance']),
      epoch: str(value['epoch']),
      hostname: str(value['hostname']),
      pid: typeof value['pid'] === 'number' ? value['pid'] : undefined,
      since: str(value['since']),
    };
  } catch {
    return {};
  }
}
