/**
 * This host's registration in etcd: `hosts/<host-id>` on a lease that the
 * daemon keeps alive. Every allocation's transaction compares that key with
 * the value this daemon wrote (the fence): a host whose lease ran out — cut
 * off from etcd for longer than the TTL, so that other hosts may be counting
 * down to reclaim its addresses — cannot allocate until it has registered
 * again. Addresses are never on the lease (a partitioned host's containers
 * keep using theirs; research/multihost.md §5).
 */
import { randomBytes } from 'node:crypto';
import { LanplugError } from '../../errors';
import type { Logger } from '../../log';
import type { Compare, EtcdClient } from './client';

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

  constructor(
    private readonly client: EtcdClient,
    readonly hostId: string,
    private readonly key: string,
    private readonly log: Logger,
  ) {}

  /** Registers in the background and keeps the lease alive; the daemon never waits on etcd to start. */
  start(): void {
    const tick = (): void => {
      this.refresh(KEEPALIVE_EVERY_MS).catch((err: unknown) =>
        this.log.warn('etcd: this host could not renew its registration', { host: this.hostId, error: String(err) }),
      );
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
    if (this.lease !== null && this.registration !== null) {
      const ttl = await this.client.keepAlive(this.lease, deadlineMs);
      if (ttl > 0) {
        this.lastRefresh = started;
        return;
      }
      this.log.warn('etcd: this host registration had expired; registering again', { host: this.hostId });
    }
    const lease = await this.client.grantLease(HOST_TTL_SECONDS, deadlineMs);
    const registration = JSON.stringify({
      host: this.hostId,
      epoch: randomBytes(8).toString('hex'),
      pid: process.pid,
      since: new Date().toISOString(),
    });
    await this.client.txn([], [{ put: { key: this.key, value: registration, lease } }], [], deadlineMs);
    this.lease = lease;
    this.registration = registration;
    this.lastRefresh = started;
    this.log.info('etcd: host registered', { host: this.hostId });
  }
}
