/**
 * Keeping leases alive: one timer per lease and family, and the step it
 * starts (lease-state.ts says what each state calls for). The step runs
 * inside the container's namespace (Join's SandboxKey), through a packet
 * socket opened there for the exchange only: nothing stays open in the
 * container between renewals, so nothing pins its namespace or its MAC.
 *
 * A server that moves the container (a NAK, then a new address; or an ACK
 * of another address the network's offer check let through) is followed:
 * the new address is applied in the container and logged (Docker's view of
 * the address goes stale: a remote driver cannot tell Docker,
 * libnetwork#843).
 */
import type { Logger } from '../log';
import {
  INFINITE_SECONDS,
  leaseExpiresAt,
  leaseOf,
  type DhcpIdentity,
  type Lease,
  type LeaseRecord,
  type LeaseState,
} from '../model/lease';
import { formatPrefix, sameAddress, type Family } from '../net/address';
import type { LeaseStore } from '../state/lease-store';
import { exchangeDeadline, type DhcpChannel } from './channel';
import { acquire, renew } from './client';
import type { MalformedReport } from './outcomes';
import { acquire6, renew6 } from './client6';
import { applyInContainer, containerLink } from './in-container';
import { openChannel, type LeaseNetworks } from './lease-networks';
import { afterAnswer, dueState, exchangeFor, retryAt } from './lease-state';
import { shortId } from '../model/network';
import { countRenewalFailure } from '../metrics/registry';
import { recordEvent } from '../metrics/events';

/** How long one renewal exchange may take before it counts as unanswered. */
const EXCHANGE_MS = 8_000;
/** RFC 2131 §4.1: timers get up to a second of randomness, so that containers started together do not renew together. */
const JITTER_MS = 1_000;
/** setTimeout's longest delay (2^31 - 1 ms, 24.8 days): a later renewal is reached in steps. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** What the renewals ask of the keeper around them. */
export interface RenewalHost {
  /** The address a lease holds is its identity's last one now (asked for again at the next start). */
  remember(identity: DhcpIdentity, lease: Lease): void;
  /** Leases nobody holds any more go back to their server. */
  giveBack(networkId: string, identity: DhcpIdentity, leases: readonly Lease[]): void;
  /** Where malformed answers on a network are said (rate-limited per network). */
  malformed(networkId: string): MalformedReport;
}

/** A step running now: its channel (closed to abort it) and its end. */
interface Running {
  channel: DhcpChannel | null;
  done: Promise<void>;
}

/** What a step's exchange came to. */
type StepResult =
  | { kind: 'renewed'; lease: Lease }
  | { kind: 'new lease'; lease: Lease }
  | { kind: 'failed'; state: LeaseState; reason: string };

function key(networkId: string, endpointId: string, family: Family): string {
  return `${networkId}/${endpointId}/${family}`;
}

/** What a renewal found and the store could not take yet (its file system full), per endpoint. */
interface Unsaved {
  /** The lease record as the last step left it: the next step starts from it, not from the stored one. */
  lease?: LeaseRecord;
  /** A move of the container's address (the endpoint's row, the last address kept for its identity). */
  moved?: () => void;
}

export class Renewals {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** By network/endpoint; written at the start of the endpoint's next step, or dropped with its record. */
  private readonly unsaved = new Map<string, Unsaved>();
  private readonly running = new Map<string, Running>();
  private stopped = false;

  constructor(
    private readonly store: LeaseStore,
    private readonly log: Logger,
    private readonly networks: LeaseNetworks,
    private readonly host: RenewalHost,
  ) {}

  /** Sets the one timer of a lease: at T1 after it was bound, or at `retryAt`. */
  schedule(record: LeaseRecord, family: Family, retryAt?: number): void {
    const lease = leaseOf(record, family);
    if (this.stopped || record.sandboxKey === null || lease === null) return;
    if (retryAt === undefined && lease.leaseSeconds === INFINITE_SECONDS) return;
    const k = key(record.networkId, record.endpointId, family);
    this.cancel(k);
    const at = retryAt ?? lease.boundAt + lease.renewSeconds * 1000 + Math.random() * JITTER_MS;
    const delay = Math.max(0, at - Date.now());
    const timer = setTimeout(
      () => {
        this.timers.delete(k);
        // Beyond what one timer can wait: wait again from there.
        if (delay > LONGEST_TIMER_MS) return this.schedule(record, family, at);
        // Registered before the step runs, so that the channel it opens (synchronously) can be found and closed.
        const entry: Running = { channel: null, done: Promise.resolve() };
        this.running.set(k, entry);
        entry.done = this.step(record.networkId, record.endpointId, family)
          .catch((err: unknown) =>
            this.log.error('dhcp renewal failed unexpectedly', {
              endpoint: shortId(record.endpointId),
              error: String(err),
            }),
          )
          .finally(() => this.running.delete(k));
      },
      Math.min(delay, LONGEST_TIMER_MS),
    );
    timer.unref();
    this.timers.set(k, timer);
  }

  /**
   * A family's lease stops renewing (it is being released): its timer goes, and a step running now
   * stops (its channel closes; what it finds afterwards is no record). The end of that step, if one ran.
   */
  stop(networkId: string, endpointId: string, family: Family): Promise<void> | null {
    const k = key(networkId, endpointId, family);
    this.cancel(k);
    this.unsaved.delete(`${networkId}/${endpointId}`);
    const running = this.running.get(k);
    if (running === undefined) return null;
    void running.channel?.close();
    return running.done;
  }

  /** Every timer goes, and the steps running now are stopped and waited for (the store closes after). */
  async stopAll(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const running of this.running.values()) void running.channel?.close();
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  private cancel(k: string): void {
    const timer = this.timers.get(k);
    if (timer !== undefined) clearTimeout(timer);
    this.timers.delete(k);
  }

  /** One step of a lease's life: the exchange its state calls for, then the state the answer leads to. */
  private async step(networkId: string, endpointId: string, family: Family): Promise<void> {
    const record = this.latest(networkId, endpointId);
    const lease = record === null ? null : leaseOf(record, family);
    if (record === null || lease === null || record.sandboxKey === null) return;
    const began = Date.now();
    const result = await this.exchange(record, record.sandboxKey, lease, began);
    // The container may have left while the exchange ran: its record is the truth.
    const current = this.latest(networkId, endpointId);
    const held = current === null ? null : leaseOf(current, family);
    if (current === null || held === null || held.boundAt !== lease.boundAt) {
      // Released while a new lease was being taken: that one goes back too.
      if (result.kind === 'new lease') this.host.giveBack(networkId, record.identity, [result.lease]);
      return;
    }
    if (result.kind === 'failed') return this.failed(current, held, result, began);
    const failure = this.follow(record, record.sandboxKey, lease, result.lease);
    const updated: LeaseRecord = {
      ...current,
      leases: current.leases.map((l) => (l.family === family ? result.lease : l)),
      renewedAt: Date.now(),
      failures: 0,
      lastError: failure,
    };
    this.saveLease(updated);
    recordEvent(result.lease.address.address.value === lease.address.address.value ? 'lease.renewed' : 'lease.moved', {
      endpoint: shortId(endpointId),
      address: formatPrefix(result.lease.address),
      server: result.lease.serverId.text,
    });
    this.schedule(updated, family);
  }

  /**
   * The exchange the lease's state calls for, on a channel in the container's namespace: renew or
   * rebind; after a refusal (or when refused or expired already) ask anew.
   */
  private async exchange(record: LeaseRecord, sandboxKey: string, lease: Lease, now: number): Promise<StepResult> {
    const { family } = lease;
    const k = key(record.networkId, record.endpointId, family);
    const check = this.networks.offerCheck(record.networkId);
    const malformed = this.host.malformed(record.networkId);
    const due = dueState(lease, now);
    let state: LeaseState = due;
    try {
      const link = containerLink(sandboxKey, record, lease);
      const channel = openChannel(link, link.name, family, sandboxKey);
      const running = this.running.get(k);
      if (running !== undefined) running.channel = channel;
      try {
        const exchange = exchangeFor(due);
        if (exchange.kind !== 'ask-anew') {
          const deadline = exchangeDeadline(EXCHANGE_MS);
          const outcome =
            family === 4
              ? await renew(channel, record.identity, lease, exchange.kind, deadline, check, this.log, malformed)
              : await renew6(channel, record.identity, lease, exchange.kind, deadline, check, this.log);
          if (outcome.kind === 'ack') return { kind: 'renewed', lease: outcome.lease };
          if (outcome.kind === 'silent')
            return { kind: 'failed', state, reason: outcome.message ?? `no answer to the ${exchange.kind} request` };
          state = afterAnswer(state, 'refusal');
          this.log.warn(
            outcome.kind === 'nak'
              ? 'dhcp server refused the lease; asking for a new address'
              : 'dhcp server moved the lease onto an address that may not be used; declined, asking for a new address',
            { endpoint: shortId(record.endpointId), address: formatPrefix(lease.address), answer: outcome.message },
          );
        } else {
          this.log.warn('dhcp lease ' + (state === 'expired' ? 'expired' : 'refused before') + '; asking anew', {
            endpoint: shortId(record.endpointId),
            address: formatPrefix(lease.address),
          });
        }
        const hint = state === 'expired' ? lease.address.address : null;
        const deadline = exchangeDeadline(EXCHANGE_MS);
        const fresh =
          family === 4
            ? await acquire(channel, record.identity, {
                hint,
                deadline,
                check,
                subnets: [lease.address],
                log: this.log,
                malformed,
              })
            : await acquire6(channel, record.identity, {
                hint,
                deadline,
                check,
                prefixLength: lease.address.prefixLength,
                log: this.log,
              });
        return { kind: 'new lease', lease: fresh };
      } finally {
        void channel.close();
      }
    } catch (err) {
      return { kind: 'failed', state, reason: err instanceof Error ? err.message : String(err) };
    }
  }

  /**
   * A lease the server moved onto another address (or router) is put in place in the container and
   * followed; the error of putting it there, if any (the lease is kept all the same: it is the server's word).
   */
  private follow(record: LeaseRecord, sandboxKey: string, old: Lease, next: Lease): string | null {
    const endpoint = shortId(record.endpointId);
    if (sameAddress(next.address.address, old.address.address) && sameAddress(next.router, old.router)) {
      this.log.debug('dhcp lease renewed', { endpoint, address: formatPrefix(next.address) });
      return null;
    }
    let failure: string | null = null;
    try {
      applyInContainer(sandboxKey, record, old, next);
    } catch (err) {
      failure = `apply the new lease in the container: ${err instanceof Error ? err.message : String(err)}`;
    }
    this.log.warn(
      'dhcp lease moved the container: applied in the container; docker inspect still shows the first address',
      {
        endpoint,
        from: formatPrefix(old.address),
        to: formatPrefix(next.address),
        router: next.router?.text ?? null,
        applied: failure === null,
      },
    );
    const moved = (): void => {
      this.host.remember(record.identity, next);
      this.networks.moved(record.networkId, record.endpointId, next.address);
    };
    try {
      moved();
    } catch (err) {
      this.owe(record, { moved }, err);
    }
    return failure;
  }

  /**
   * The lease record as the endpoint's last step left it: the stored one, or the one the store could
   * not take (then written now if there is room). A renewal whose record failed used to end the
   * lease's renewals for good (the timer was set after the write); and a step that started from the
   * stored record after one that was not saved asked the server for an address the container no
   * longer had. Null once the record is gone (released): what was owed for it goes too.
   */
  private latest(networkId: string, endpointId: string): LeaseRecord | null {
    const k = `${networkId}/${endpointId}`;
    const stored = this.store.getLease(networkId, endpointId);
    const owed = this.unsaved.get(k);
    if (stored === null || owed === undefined) {
      this.unsaved.delete(k);
      return stored;
    }
    try {
      owed.moved?.();
      delete owed.moved;
      if (owed.lease !== undefined) this.store.putLease(owed.lease, false);
      this.unsaved.delete(k);
      this.log.info('dhcp renewal recorded now that the state directory has room', { endpoint: shortId(endpointId) });
    } catch {
      // still no room: the next step tries again
    }
    return owed.lease ?? stored;
  }

  /** Keeps what a step found, or holds it for the next step when the store cannot take it. */
  private saveLease(record: LeaseRecord): void {
    try {
      this.store.putLease(record, false);
    } catch (err) {
      this.owe(record, { lease: record }, err);
    }
  }

  private owe(record: LeaseRecord, what: Unsaved, err: unknown): void {
    const k = `${record.networkId}/${record.endpointId}`;
    this.unsaved.set(k, { ...this.unsaved.get(k), ...what });
    this.log.warn('dhcp renewal not recorded; renewing on, and recording at the next renewal', {
      endpoint: shortId(record.endpointId),
      error: err instanceof Error ? err.message : String(err),
    });
  }

  /** No lease from this step: the state it got to is recorded, and the step is tried again later. */
  private failed(
    current: LeaseRecord,
    held: Lease,
    result: { state: LeaseState; reason: string },
    began: number,
  ): void {
    const failedRecord: LeaseRecord = {
      ...current,
      leases: current.leases.map((l) => (l.family === held.family ? { ...held, state: result.state } : l)),
      failures: current.failures + 1,
      lastError: result.reason,
    };
    countRenewalFailure(held.family);
    recordEvent(result.state === 'refused' ? 'lease.declined' : 'lease.renewal-failed', {
      endpoint: shortId(current.endpointId),
      address: formatPrefix(held.address),
      state: result.state,
      reason: result.reason,
    });
    this.saveLease(failedRecord);
    const endpoint = shortId(current.endpointId);
    if (Date.now() >= leaseExpiresAt(held))
      this.log.error('dhcp lease expired without an answer from any server; still trying', {
        endpoint,
        address: formatPrefix(held.address),
        state: result.state,
        error: result.reason,
      });
    else this.log.warn('dhcp renewal failed; retrying', { endpoint, state: result.state, error: result.reason });
    this.schedule(failedRecord, held.family, retryAt(held, began, Date.now()));
  }
}
