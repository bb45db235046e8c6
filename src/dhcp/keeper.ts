/**
 * The lease keeper: every DHCP lease lanplug holds for a container, kept
 * alive for the container's life and given back when it ends.
 *
 * - acquire: DISCOVER..ACK (and, for DHCPv6, Solicit..Reply) on the
 *   container's link while it is still in the daemon's namespace
 *   (CreateEndpoint), so Docker gets the addresses at once;
 * - renew at T1 (unicast to the server) and rebind at T2 (broadcast), from
 *   inside the container's namespace (Join's SandboxKey), through a packet
 *   socket opened there for the exchange only: nothing stays open in the
 *   container between renewals, so nothing pins its namespace or its MAC;
 * - a NAK (the server moved the container) means a new address, applied in
 *   the container and logged (Docker's view of the address goes stale: a
 *   remote driver cannot tell Docker, libnetwork#843); so does an ACK of
 *   another address, once the network's offer check let it through (one it
 *   refused is declined, and the client starts over as after a NAK);
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
import type { Logger } from '../log';
import {
  INFINITE_SECONDS,
  leaseExpiresAt,
  leaseOf,
  type DhcpIdentity,
  type Lease,
  type LeaseRecord,
} from '../model/lease';
import { formatPrefix, type Family, type IpAddress, type IpPrefix } from '../net/address';
import type { LeaseStore } from '../state/lease-store';
import { PacketChannel, type DhcpChannel } from './channel';
import { applyInContainer, containerLink, sameAddress } from './in-container';
import { acquire, release, renew, type OfferCheck, type RenewOutcome } from './client';
import { acquire6, release6Frame, renew6 } from './client6';
import { DHCP_CLIENT_PORT } from './message';
import { DHCP6_CLIENT_PORT } from './message6';

/** The link a lease's frames leave by, in the daemon's namespace. */
export interface SendLink {
  index: number;
  name: string;
}

/**
 * What to ask for: the network, the families, the prefix length a DHCPv6 address gets, and the
 * subnets the network is known to be on (a DHCPv4 address whose ACK names no mask takes theirs).
 */
export interface AcquirePlan {
  networkId: string;
  ipv4: boolean;
  ipv6: boolean;
  prefixLength6: number;
  subnets4: readonly IpPrefix[];
}

/** How long one renewal exchange may take before it counts as unanswered. */
const EXCHANGE_MS = 8_000;
/** RFC 2131 §4.4.5: retry at half the time left until T2 (or expiry), but no sooner than 60 s. */
const RETRY_MIN_MS = 60_000;
/** RFC 2131 §4.1: timers get up to a second of randomness, so that containers started together do not renew together. */
const JITTER_MS = 1_000;
/** setTimeout's longest delay (2^31 - 1 ms, 24.8 days): a later renewal is reached in steps. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;
/** How long a released address is remembered as released (Docker's ReleaseAddress follows within milliseconds). */
const RELEASED_MEMORY_MS = 60_000;
/** A lease never joined to a container this long after it was taken belongs to a start that failed. */
const UNJOINED_GRACE_MS = 60_000;

function key(networkId: string, endpointId: string, family: Family): string {
  return `${networkId}/${endpointId}/${family}`;
}

/**
 * Where the last address of an identity is remembered: its client id
 * (DHCPv4) or DUID (DHCPv6); null for one that never comes back (a random
 * MAC), which is not worth a row.
 */
function rememberKey(identity: DhcpIdentity, family: Family): string | null {
  if (!identity.stable) return null;
  return family === 4 ? identity.clientId : `6:${identity.duid}`;
}

function openChannel(link: SendLink, where: string, family: Family, netns?: string): DhcpChannel {
  return PacketChannel.open(link.index, where, {
    family,
    port: family === 4 ? DHCP_CLIENT_PORT : DHCP6_CLIENT_PORT,
    ...(netns === undefined ? {} : { netns }),
  });
}

/** A renewal exchange running now: its channel (closed to abort it) and its end. */
interface InFlight {
  channel: DhcpChannel | null;
  done: Promise<void>;
}

/**
 * What the keeper needs of the networks its leases are on, from the floors above it (the endpoint
 * service implements it: driver/ and the LAN checks live there).
 */
export interface LeaseNetworks {
  /** The LAN link of a network (the parent, or lanplug's own sibling of it); null when it has none now. */
  sendLink(networkId: string): SendLink | null;
  /** A server moved a container: its endpoint's address follows (what the LAN watch defends, what status shows). */
  moved(networkId: string, endpointId: string, address: IpPrefix): void;
  /**
   * How the addresses a network's servers bind (offered, or moved to at a renewal; IPv4 and IPv6) are
   * checked before use; none: used as given.
   */
  offerCheck(networkId: string): OfferCheck | undefined;
}

/** For tests and tools without networks: no link, nothing checked, nothing to follow. */
export const NO_LEASE_NETWORKS: LeaseNetworks = {
  sendLink: () => null,
  moved: () => undefined,
  offerCheck: () => undefined,
};

export class LeaseKeeper {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Map<string, InFlight>();
  /** Leases a server refused, or that expired: the next attempt starts over with DISCOVER (RFC 2131 INIT). */
  private readonly lost = new Set<string>();
  /** Addresses Docker knew released leases by, by text, and when they went (see releasedLately). */
  private readonly released = new Map<string, number>();
  private watchdog: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly store: LeaseStore,
    private readonly log: Logger,
    private readonly networks: LeaseNetworks,
  ) {}

  /**
   * Takes a lease per family on `link` (in the daemon's namespace, up, no
   * address), both at once, asking for the address this identity held last.
   * Writes nothing.
   */
  async acquire(
    link: SendLink,
    where: string,
    identity: DhcpIdentity,
    plan: AcquirePlan,
    timeoutMs: number,
  ): Promise<Lease[]> {
    const deadline = Date.now() + timeoutMs;
    const families: Family[] = [...(plan.ipv4 ? [4 as const] : []), ...(plan.ipv6 ? [6 as const] : [])];
    return Promise.all(
      families.map(async (family) => {
        const channel = openChannel(link, where, family);
        try {
          const remembered = rememberKey(identity, family);
          const hint = remembered === null ? null : this.store.lastAddress(remembered);
          const check = this.networks.offerCheck(plan.networkId);
          return family === 4
            ? await acquire(channel, identity, { hint, deadline, check, subnets: plan.subnets4, log: this.log })
            : await acquire6(channel, identity, { hint, deadline, check, prefixLength: plan.prefixLength6 });
        } finally {
          // Not awaited: closing waits for the receive in flight (up to 100 ms), which Docker need not.
          void channel.close();
        }
      }),
    );
  }

  /** Records leases just taken (durably: they outlive the daemon) and remembers their addresses; `fresh`: the new ones. */
  hold(record: LeaseRecord, fresh: readonly Lease[] = record.leases): void {
    this.store.putLease(record, true);
    for (const lease of fresh) {
      this.remember(record.identity, lease);
      this.log.info('dhcp lease bound', {
        endpoint: record.endpointId.slice(0, 12),
        address: formatPrefix(lease.address),
        server: lease.serverId.text,
        leaseSeconds: lease.leaseSeconds,
      });
    }
  }

  /** The container's namespace is known: renewals run there from now on. */
  joined(networkId: string, endpointId: string, sandboxKey: string): LeaseRecord | null {
    const record = this.store.getLease(networkId, endpointId);
    if (record === null) return null;
    const updated = { ...record, sandboxKey };
    this.store.putLease(updated, false);
    for (const lease of updated.leases) this.schedule(updated, lease.family);
    return updated;
  }

  get(networkId: string, endpointId: string): LeaseRecord | null {
    return this.store.getLease(networkId, endpointId);
  }

  /** Every lease held on a network's endpoints (and those the IPAM driver took for endpoints to come). */
  heldOn(networkId: string): LeaseRecord[] {
    return this.store.listLeases().filter((r) => r.networkId === networkId);
  }

  /** A lease taken for an endpoint to come (lanplug-dhcp) becomes the endpoint's, as it is: nothing is sent. */
  handOver(networkId: string, from: string, to: string): LeaseRecord | null {
    const record = this.store.getLease(networkId, from);
    if (record === null) return null;
    const moved: LeaseRecord = { ...record, endpointId: to };
    this.store.moveLease(moved, from);
    return moved;
  }

  /**
   * One family's lease goes back, the record keeps the other's (Docker drops a container's IPv6
   * address when the container turns IPv6 off). The last one takes the record with it.
   */
  releaseFamily(networkId: string, endpointId: string, family: Family, why: string): void {
    const record = this.store.getLease(networkId, endpointId);
    const lease = record === null ? null : leaseOf(record, family);
    if (record === null || lease === null) return;
    const kept = record.leases.filter((l) => l.family !== family);
    if (kept.length === 0) return this.release(networkId, endpointId, why);
    const k = key(networkId, endpointId, family);
    this.cancel(k);
    this.lost.delete(k);
    void this.inFlight.get(k)?.channel?.close();
    const given = record.dockerAddresses.filter((a) => a.family === family);
    this.store.putLease(
      { ...record, leases: kept, dockerAddresses: record.dockerAddresses.filter((a) => a.family !== family) },
      false,
    );
    this.remember(record.identity, lease);
    this.noteReleased(given);
    const sent = this.sendRelease(networkId, record.identity, [lease]);
    this.log.info('dhcp lease released', {
      endpoint: endpointId.slice(0, 12),
      addresses: [formatPrefix(lease.address)],
      why,
      sent,
    });
  }

  /**
   * True when lanplug gave back, within the last minute, the lease of an endpoint Docker knew by
   * `address`: Docker's ReleaseAddress for an endpoint comes after its Leave (which released the
   * lease already), and by then the server may have leased the address to another container, whose
   * lease it must not end.
   */
  releasedLately(address: IpAddress): boolean {
    const now = Date.now();
    for (const [text, at] of this.released) if (now - at > RELEASED_MEMORY_MS) this.released.delete(text);
    return this.released.has(address.text);
  }

  /** `addresses`: those Docker knew the endpoint by (a moved lease's are not the ones it will name). */
  private noteReleased(addresses: readonly IpAddress[]): void {
    for (const address of addresses) this.released.set(address.text, Date.now());
  }

  /** Release (best effort: a lease not released expires on the server), then the record goes. Idempotent. */
  release(networkId: string, endpointId: string, why: string): void {
    const running: Promise<void>[] = [];
    for (const family of [4, 6] as const) {
      const k = key(networkId, endpointId, family);
      this.cancel(k);
      this.lost.delete(k);
      // A renewal running now stops: its channel closes, and what it finds afterwards is no record.
      const inFlight = this.inFlight.get(k);
      if (inFlight !== undefined) {
        void inFlight.channel?.close();
        running.push(inFlight.done);
      }
    }
    const record = this.store.getLease(networkId, endpointId);
    if (record === null) return;
    for (const lease of record.leases) this.remember(record.identity, lease);
    this.store.deleteLease(networkId, endpointId);
    this.noteReleased(record.dockerAddresses);
    const sent = this.sendRelease(networkId, record.identity, record.leases);
    // A renewal request already on the wire may reach the server after the release (another path out) and bind
    // the address again: once that exchange is over, release once more (a second release is harmless).
    if (running.length > 0)
      void Promise.all(running).then(() => this.sendRelease(networkId, record.identity, record.leases));
    this.log.info('dhcp lease released', {
      endpoint: endpointId.slice(0, 12),
      addresses: record.leases.map((l) => formatPrefix(l.address)),
      why,
      sent,
    });
  }

  /** Leases taken but never recorded (the start failed after): back to the server at once. */
  giveBack(networkId: string, identity: DhcpIdentity, leases: readonly Lease[]): void {
    if (leases.length > 0) this.sendRelease(networkId, identity, leases);
  }

  /** The lease held under DHCPv4 client id `clientId`, if any. */
  holderOf(clientId: string): LeaseRecord | null {
    return this.store.listLeases().find((r) => r.identity.clientId === clientId) ?? null;
  }

  /** Sends DHCPRELEASE / a DHCPv6 Release for `leases` from the network's LAN link; false when it could not. */
  private sendRelease(networkId: string, identity: DhcpIdentity, leases: readonly Lease[]): boolean {
    const link = this.networks.sendLink(networkId);
    if (link === null) return false;
    try {
      const socket = PacketSocket.open(link.index, SEND_ONLY, link.name);
      try {
        for (const lease of leases) {
          if (lease.family === 4) release((frame) => socket.send(frame), identity, lease);
          else socket.send(release6Frame(identity, lease));
        }
        return true;
      } finally {
        void socket.close();
      }
    } catch (err) {
      this.log.warn('could not send a DHCP release; the server frees the address when the lease expires', {
        error: String(err),
      });
      return false;
    }
  }

  private remember(identity: DhcpIdentity, lease: Lease): void {
    const k = rememberKey(identity, lease.family);
    if (k !== null) this.store.rememberAddress(k, lease.address.address);
  }

  /**
   * At daemon start: every lease renews on from where it was (its timers are
   * in the record); one whose container's namespace is gone is released.
   */
  resume(): void {
    for (const record of this.store.listLeases()) {
      if (record.sandboxKey !== null && !existsSync(record.sandboxKey))
        this.release(record.networkId, record.endpointId, 'container gone while lanplug was down');
      else for (const lease of record.leases) this.schedule(record, lease.family);
    }
  }

  /** Every `everyMs`: leases whose container vanished without a Leave are released. */
  start(everyMs: number): void {
    this.watchdog = setInterval(() => this.sweep(), everyMs);
    this.watchdog.unref();
  }

  /** Stops every timer and waits for the exchanges running now (the store closes after). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchdog !== null) clearInterval(this.watchdog);
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const running of this.inFlight.values()) void running.channel?.close();
    await Promise.all([...this.inFlight.values()].map((r) => r.done));
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
  private schedule(record: LeaseRecord, family: Family, retryAt?: number): void {
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
        // Registered before maintain() runs, so that the channel it opens (synchronously) can be found and closed.
        const entry: InFlight = { channel: null, done: Promise.resolve() };
        this.inFlight.set(k, entry);
        entry.done = this.maintain(record.networkId, record.endpointId, family)
          .catch((err: unknown) =>
            this.log.error('dhcp renewal failed unexpectedly', {
              endpoint: record.endpointId.slice(0, 12),
              error: String(err),
            }),
          )
          .finally(() => this.inFlight.delete(k));
      },
      Math.min(delay, LONGEST_TIMER_MS),
    );
    timer.unref();
    this.timers.set(k, timer);
  }

  /** One renewal step: renew (before T2), rebind (before expiry), or after a refusal take a new lease. */
  private async maintain(networkId: string, endpointId: string, family: Family): Promise<void> {
    const record = this.store.getLease(networkId, endpointId);
    const lease = record === null ? null : leaseOf(record, family);
    if (record === null || lease === null || record.sandboxKey === null) return;
    const sandboxKey = record.sandboxKey;
    const now = Date.now();
    const t2 = lease.boundAt + lease.rebindSeconds * 1000;
    const expiry = leaseExpiresAt(lease);
    const k = key(networkId, endpointId, family);
    // Refused before, or expired: start over (RFC 2131 §4.4.5, INIT), asking for the same address.
    const startOver = this.lost.has(k) || now >= expiry;
    const how = now < t2 ? 'renew' : 'rebind';
    const check = this.networks.offerCheck(networkId);
    let outcome: RenewOutcome | { kind: 'moved'; lease: Lease };
    let failure: string | null = null;
    try {
      const link = containerLink(sandboxKey, record, lease);
      const channel = openChannel(link, link.name, family, sandboxKey);
      const running = this.inFlight.get(k);
      if (running !== undefined) running.channel = channel;
      try {
        outcome = startOver
          ? { kind: 'nak', message: now >= expiry ? 'the lease expired' : 'refused before' }
          : family === 4
            ? await renew(channel, record.identity, lease, how, now + EXCHANGE_MS, check, this.log)
            : await renew6(channel, record.identity, lease, how, now + EXCHANGE_MS, check);
        if (outcome.kind === 'nak' || outcome.kind === 'declined') {
          this.lost.add(k);
          this.log.warn(
            outcome.kind === 'nak'
              ? 'dhcp server refused the lease; asking for a new address'
              : 'dhcp server moved the lease onto an address that may not be used; declined, asking for a new address',
            { endpoint: endpointId.slice(0, 12), address: formatPrefix(lease.address), answer: outcome.message },
          );
          const deadline = Date.now() + EXCHANGE_MS;
          // A refused address is not asked for again; an expired one is.
          const hint = startOver && now >= expiry ? lease.address.address : null;
          outcome = {
            kind: 'moved',
            lease:
              family === 4
                ? await acquire(channel, record.identity, {
                    hint,
                    deadline,
                    check,
                    subnets: [lease.address],
                    log: this.log,
                  })
                : await acquire6(channel, record.identity, {
                    hint,
                    deadline,
                    check,
                    prefixLength: lease.address.prefixLength,
                  }),
          };
          this.lost.delete(k);
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
    const held = current === null ? null : leaseOf(current, family);
    if (current === null || held === null || held.boundAt !== lease.boundAt) {
      // Released while a new lease was being taken: that one goes back too.
      if (outcome.kind === 'moved') this.sendRelease(networkId, record.identity, [outcome.lease]);
      return;
    }
    if (outcome.kind === 'ack' || outcome.kind === 'moved') {
      const next = outcome.lease;
      if (!sameAddress(next.address.address, lease.address.address) || !sameAddress(next.router, lease.router)) {
        try {
          applyInContainer(sandboxKey, record, lease, next);
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
        this.remember(record.identity, next);
        this.networks.moved(networkId, endpointId, next.address);
      } else {
        this.log.debug('dhcp lease renewed', {
          endpoint: endpointId.slice(0, 12),
          address: formatPrefix(next.address),
          how,
        });
      }
      const updated: LeaseRecord = {
        ...current,
        leases: current.leases.map((l) => (l.family === family ? next : l)),
        renewedAt: Date.now(),
        failures: 0,
        lastError: failure,
      };
      this.store.putLease(updated, false);
      this.schedule(updated, family);
      return;
    }
    const reason =
      failure ?? (outcome.kind === 'silent' ? outcome.message : undefined) ?? `no answer to the ${how} request`;
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
    const wait = Math.max(RETRY_MIN_MS, (end - Date.now()) / 2);
    this.schedule(failed, family, Date.now() + wait);
  }
}
