/**
 * The lease keeper: every DHCP lease lanplug holds for a container, kept
 * alive for the container's life and given back when it ends.
 *
 * - acquire: DISCOVER..ACK on the container's link while it is still in the
 *   daemon's namespace (CreateEndpoint), so Docker gets the address at once;
 * - renew at T1 (unicast to the server) and rebind at T2 (broadcast), from
 *   inside the container's namespace (Join's SandboxKey), through a packet
 *   socket opened there for the exchange only: nothing stays open in the
 *   container between renewals, so nothing pins its namespace or its MAC;
 * - a NAK (the server moved the container) means a new address, applied in
 *   the container and logged (Docker's view of the address goes stale: a
 *   remote driver cannot tell Docker, libnetwork#843);
 * - release (DHCPRELEASE) from the network's LAN link in the daemon's
 *   namespace, with the container's MAC and address: it works whether the
 *   container's link is still in its namespace, back in ours, or gone;
 * - a watchdog releases the lease of a container whose namespace vanished
 *   without a Leave (dockerd killed, a crash).
 *
 * Every lease is in the store: a daemon that restarts (or was killed) picks
 * up each one where it was, renewing the same address; it never asks anew.
 * One timer per lease, no process: memory per lease is a record and a timer.
 */
import { existsSync } from 'node:fs';
import { PacketSocket, SEND_ONLY } from '../l2/packet-socket';
import { openRtnl } from '../link/rtnl';
import type { LinkInfo } from '../link/link';
import type { Logger } from '../log';
import { leaseExpiresAt, type DhcpIdentity, type Lease, type LeaseRecord } from '../model/lease';
import { formatPrefix, parsePrefix } from '../net/address';
import type { LeaseStore } from '../state/lease-store';
import { PacketChannel } from './channel';
import { acquire, release, renew } from './client';

/** The link a lease's frames leave by, in the daemon's namespace. */
export interface SendLink {
  index: number;
  name: string;
}

/** How long one renewal exchange may take before it counts as unanswered. */
const EXCHANGE_MS = 8_000;
/** RFC 2131 §4.4.5: retry at half the time left, but not more often than this, nor less often than the cap. */
const RETRY_MIN_MS = 5_000;
const RETRY_MAX_MS = 60_000;
/** A lease never joined to a container this long after it was taken belongs to a start that failed. */
const UNJOINED_GRACE_MS = 60_000;
const DEFAULT_ROUTE = parsePrefix('0.0.0.0/0');

function key(networkId: string, endpointId: string): string {
  return `${networkId}/${endpointId}`;
}

export class LeaseKeeper {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private watchdog: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly store: LeaseStore,
    private readonly log: Logger,
    /** The LAN link of a network (the parent, or lanplug's own sibling of it); null when it has none now. */
    private readonly lanLinkOf: (networkId: string) => SendLink | null,
  ) {}

  /**
   * Takes a lease on `link` (in the daemon's namespace, up, no address),
   * asking for the address this client id held last. Writes nothing.
   */
  async acquire(link: SendLink, where: string, identity: DhcpIdentity, timeoutMs: number): Promise<Lease> {
    const channel = PacketChannel.open(link.index, where);
    try {
      return await acquire(channel, identity, {
        hint: this.store.lastAddress(identity.clientId),
        deadline: Date.now() + timeoutMs,
      });
    } finally {
      // Not awaited: closing waits for the receive in flight (up to 100 ms), which Docker need not.
      void channel.close();
    }
  }

  /** Records a lease just taken (durably: it outlives the daemon) and remembers its address for this client id. */
  hold(record: LeaseRecord): void {
    this.store.putLease(record, true);
    this.store.rememberAddress(record.identity.clientId, record.lease.address.address);
    this.log.info('dhcp lease bound', {
      endpoint: record.endpointId.slice(0, 12),
      address: formatPrefix(record.lease.address),
      server: record.lease.serverId.text,
      leaseSeconds: record.lease.leaseSeconds,
    });
  }

  /** The container's namespace is known: renewals run there from now on. */
  joined(networkId: string, endpointId: string, sandboxKey: string): LeaseRecord | null {
    const record = this.store.getLease(networkId, endpointId);
    if (record === null) return null;
    const updated = { ...record, sandboxKey };
    this.store.putLease(updated, false);
    this.schedule(updated);
    return updated;
  }

  get(networkId: string, endpointId: string): LeaseRecord | null {
    return this.store.getLease(networkId, endpointId);
  }

  /** DHCPRELEASE (best effort: a lease not released expires on the server), then the record goes. Idempotent. */
  release(networkId: string, endpointId: string, why: string): void {
    this.cancel(key(networkId, endpointId));
    const record = this.store.getLease(networkId, endpointId);
    if (record === null) return;
    this.store.rememberAddress(record.identity.clientId, record.lease.address.address);
    this.store.deleteLease(networkId, endpointId);
    const link = this.lanLinkOf(networkId);
    let sent = false;
    if (link !== null) {
      try {
        const socket = PacketSocket.open(link.index, SEND_ONLY, link.name);
        try {
          release((frame) => socket.send(frame), record.identity, record.lease);
          sent = true;
        } finally {
          void socket.close();
        }
      } catch (err) {
        this.log.warn('could not send DHCPRELEASE; the server frees the address when the lease expires', {
          endpoint: endpointId.slice(0, 12),
          error: String(err),
        });
      }
    }
    this.log.info('dhcp lease released', {
      endpoint: endpointId.slice(0, 12),
      address: formatPrefix(record.lease.address),
      why,
      sent,
    });
  }

  /**
   * At daemon start: every lease renews on from where it was (its timers are
   * in the record); one whose container's namespace is gone is released.
   */
  resume(): void {
    for (const record of this.store.listLeases()) {
      if (record.sandboxKey !== null && !existsSync(record.sandboxKey))
        this.release(record.networkId, record.endpointId, 'container gone while lanplug was down');
      else this.schedule(record);
    }
  }

  /** Every `everyMs`: leases whose container vanished without a Leave are released. */
  start(everyMs: number): void {
    this.watchdog = setInterval(() => this.sweep(), everyMs);
    this.watchdog.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.watchdog !== null) clearInterval(this.watchdog);
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  /** Leases held, for status and tests. */
  get count(): number {
    return this.store.listLeases().length;
  }

  sweep(): void {
    const now = Date.now();
    for (const record of this.store.listLeases()) {
      if (record.sandboxKey === null) {
        if (now - record.createdAt > UNJOINED_GRACE_MS)
          this.release(record.networkId, record.endpointId, 'never joined to a container');
      } else if (!existsSync(record.sandboxKey)) {
        this.release(record.networkId, record.endpointId, 'container namespace gone without a Leave');
      }
    }
  }

  // ---- renewal ----

  private cancel(k: string): void {
    const timer = this.timers.get(k);
    if (timer !== undefined) clearTimeout(timer);
    this.timers.delete(k);
  }

  /** Sets the one timer of a lease: at T1 after it was bound, or for the next retry. */
  private schedule(record: LeaseRecord, retryAt?: number): void {
    if (this.stopped || record.sandboxKey === null) return;
    const k = key(record.networkId, record.endpointId);
    this.cancel(k);
    const at = retryAt ?? record.lease.boundAt + record.lease.renewSeconds * 1000;
    const timer = setTimeout(
      () => {
        this.timers.delete(k);
        this.maintain(record.networkId, record.endpointId).catch((err: unknown) =>
          this.log.error('dhcp renewal failed unexpectedly', {
            endpoint: record.endpointId.slice(0, 12),
            error: String(err),
          }),
        );
      },
      Math.max(0, at - Date.now()),
    );
    timer.unref();
    this.timers.set(k, timer);
  }

  /** One renewal step: renew (before T2), rebind (before expiry), or after a NAK take a new lease. */
  private async maintain(networkId: string, endpointId: string): Promise<void> {
    const record = this.store.getLease(networkId, endpointId);
    if (record === null || record.sandboxKey === null) return;
    const sandboxKey = record.sandboxKey;
    const { lease } = record;
    const now = Date.now();
    const t2 = lease.boundAt + lease.rebindSeconds * 1000;
    const expiry = leaseExpiresAt(lease);
    const how = now < t2 ? 'renew' : 'rebind';
    let outcome: Awaited<ReturnType<typeof renew>> | { kind: 'moved'; lease: Lease };
    let failure: string | null = null;
    try {
      const link = containerLink(sandboxKey, record);
      const channel = PacketChannel.open(link.index, link.name, sandboxKey);
      try {
        outcome = await renew(channel, record.identity, lease, how, now + EXCHANGE_MS);
        if (outcome.kind === 'nak') {
          this.log.warn('dhcp server refused the lease; asking for a new address', {
            endpoint: endpointId.slice(0, 12),
            address: formatPrefix(lease.address),
            answer: outcome.message,
          });
          outcome = {
            kind: 'moved',
            lease: await acquire(channel, record.identity, { hint: null, deadline: Date.now() + EXCHANGE_MS }),
          };
        }
      } finally {
        void channel.close();
      }
    } catch (err) {
      outcome = { kind: 'silent' };
      failure = err instanceof Error ? err.message : String(err);
    }
    // The container may have left while the exchange ran: its record is the truth.
    const current = this.store.getLease(networkId, endpointId);
    if (current === null || current.lease.boundAt !== lease.boundAt) return;
    if (outcome.kind === 'ack' || outcome.kind === 'moved') {
      const next = outcome.lease;
      if (next.address.address.value !== lease.address.address.value || next.router?.value !== lease.router?.value) {
        try {
          applyInContainer(sandboxKey, record, next);
        } catch (err) {
          failure = `apply the new lease in the container: ${err instanceof Error ? err.message : String(err)}`;
        }
        this.log.warn(
          'dhcp lease moved the container: applied in the container; docker inspect still shows the first address',
          {
            endpoint: endpointId.slice(0, 12),
            from: formatPrefix(lease.address),
            to: formatPrefix(next.address),
            router: next.router?.text ?? null,
            applied: failure === null,
          },
        );
        this.store.rememberAddress(record.identity.clientId, next.address.address);
      } else {
        this.log.debug('dhcp lease renewed', {
          endpoint: endpointId.slice(0, 12),
          address: formatPrefix(next.address),
          how,
        });
      }
      const updated: LeaseRecord = { ...current, lease: next, renewedAt: Date.now(), failures: 0, lastError: failure };
      this.store.putLease(updated, false);
      this.schedule(updated);
      return;
    }
    const reason = failure ?? `no answer to the ${how} request`;
    const failed: LeaseRecord = { ...current, failures: current.failures + 1, lastError: reason };
    this.store.putLease(failed, false);
    const end = how === 'renew' ? t2 : expiry;
    if (Date.now() >= expiry)
      this.log.error('dhcp lease expired without an answer from any server; still trying', {
        endpoint: endpointId.slice(0, 12),
        address: formatPrefix(lease.address),
        error: reason,
      });
    else this.log.warn('dhcp renewal failed; retrying', { endpoint: endpointId.slice(0, 12), how, error: reason });
    const wait = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, (end - Date.now()) / 2));
    this.schedule(failed, Date.now() + wait);
  }
}

/** The container's link in its namespace: the one with the lease's MAC (ipvlan: and its address). */
function containerLink(sandboxKey: string, record: LeaseRecord): LinkInfo {
  const rtnl = openRtnl({ netns: sandboxKey });
  try {
    const candidates = rtnl.listLinks().filter((l) => l.mac === record.identity.mac);
    if (candidates.length <= 1) {
      const [only] = candidates;
      if (only === undefined) throw new Error(`no link with MAC ${record.identity.mac} in ${sandboxKey}`);
      return only;
    }
    const holder = rtnl.listAddresses(4).find((a) => a.prefix.address.value === record.lease.address.address.value);
    const link = candidates.find((l) => l.index === holder?.index);
    if (link === undefined) throw new Error(`no link holds ${record.lease.address.address.text} in ${sandboxKey}`);
    return link;
  } finally {
    rtnl.close();
  }
}

/**
 * The old address goes first: a new one in the same subnet would be its
 * secondary, and the kernel removes secondaries with their primary. Removing
 * the last address also removes the routes through the link, so the default
 * route is put back after.
 */
function applyInContainer(sandboxKey: string, record: LeaseRecord, next: Lease): void {
  const link = containerLink(sandboxKey, record);
  const rtnl = openRtnl({ netns: sandboxKey });
  try {
    const old = record.lease;
    if (next.address.address.value !== old.address.address.value) {
      rtnl.deleteAddress(link, old.address);
      rtnl.addAddress(link, next.address);
    }
    if (next.router !== null) rtnl.replaceRoute(DEFAULT_ROUTE, link, null, next.router);
  } finally {
    rtnl.close();
  }
}
