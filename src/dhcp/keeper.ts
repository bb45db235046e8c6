/**
 * The lease keeper: every DHCP lease lanplug holds for a container, kept
 * alive for the container's life and given back when it ends.
 *
 * - acquire: DISCOVER..ACK (and, for DHCPv6, Solicit..Reply) on the
 *   container's link while it is still in the daemon's namespace
 *   (CreateEndpoint), so Docker gets the addresses at once;
 * - renew at T1 (unicast to the server), rebind at T2 (broadcast), ask anew
 *   when expired or refused: each lease's state says which (lease-state.ts),
 *   and renewal.ts runs the step from inside the container's namespace;
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
import { leaseOf, type DhcpIdentity, type Lease, type LeaseRecord } from '../model/lease';
import { formatPrefix, type Family, type IpAddress, type IpPrefix } from '../net/address';
import type { LeaseStore } from '../state/lease-store';
import { exchangeDeadline } from './channel';
import { acquire, release } from './client';
import { acquire6, release6Frame } from './client6';
import { openChannel, type LeaseNetworks, type SendLink } from './lease-networks';
import { MalformedAnswers } from './malformed-log';
import { Renewals } from './renewal';
import { shortId } from '../model/network';
import { recordEvent } from '../metrics/events';

export { NO_LEASE_NETWORKS, type LeaseNetworks, type SendLink } from './lease-networks';

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
  /** The namespace `link` is in (a CNI pod's, as a file); absent: the daemon's. */
  netns?: string;
}

/** How long a released address is remembered as released (Docker's ReleaseAddress follows within milliseconds). */
const RELEASED_MEMORY_MS = 60_000;
/**
 * How long an identity's last address is remembered after its lease was taken or given back. Every
 * CNI attachment (a pod's container id) and every container with its own --mac-address adds a row:
 * without a limit a year of pods would only grow the table. A month covers any restart worth
 * keeping an address across; the LAN's server usually remembers the client anyway.
 */
export const REMEMBER_ADDRESS_MS = 30 * 24 * 3600_000;
/** A lease never joined to a container this long after it was taken belongs to a start that failed. */
const UNJOINED_GRACE_MS = 60_000;

/**
 * Where the last address of an identity is remembered: its client id
 * (DHCPv4) or DUID (DHCPv6); null for one that never comes back (a random
 * MAC), which is not worth a row.
 */
function rememberKey(identity: DhcpIdentity, family: Family): string | null {
  if (!identity.stable) return null;
  return family === 4 ? identity.clientId : `6:${identity.duid}`;
}

/** After Join, when a lease given a name at hand-over is renewed to tell the server: the namespace is ready by then. */
const NAME_RENEWAL_DELAY_MS = 2_000;

export class LeaseKeeper {
  private readonly renewals: Renewals;
  /** Malformed answers are logged per network at most a line a minute: any LAN device may send them. */
  private readonly malformed: MalformedAnswers;
  /** Addresses Docker knew released leases by, by text, and when they went on `monotonic` (see releasedLately). */
  private readonly released = new Map<string, number>();
  private watchdog: NodeJS.Timeout | null = null;
  /** "network/endpoint" of leases given a name at hand-over that no server has heard yet (in memory: else at T1). */
  private readonly nameUnsent = new Set<string>();

  constructor(
    private readonly store: LeaseStore,
    private readonly log: Logger,
    private readonly networks: LeaseNetworks,
    /**
     * What releasedLately's minute is measured on: monotonic ms. On the wall clock, one set forward
     * forgot a release at once (Docker's ReleaseAddress after the Leave could end the lease another
     * container took on the address since), one set back an hour kept it for the hour (a ReleaseAddress
     * of a start that failed was ignored, its lease left bound until it expired).
     */
    private readonly monotonic: () => number = () => performance.now(),
  ) {
    this.malformed = new MalformedAnswers(log);
    this.renewals = new Renewals(store, log, networks, {
      remember: (identity, lease) => this.remember(identity, lease),
      giveBack: (networkId, identity, leases) => this.giveBack(networkId, identity, leases),
      malformed: (networkId) => this.malformed.on(networkId),
    });
  }

  // ---- taking and holding ----

  /**
   * Takes a lease per family on `link` (up, no address; in the daemon's
   * namespace, or in `plan.netns`), both at once, asking for the address this identity held last.
   * Writes nothing.
   */
  async acquire(
    link: SendLink,
    where: string,
    identity: DhcpIdentity,
    plan: AcquirePlan,
    timeoutMs: number,
  ): Promise<Lease[]> {
    const deadline = exchangeDeadline(timeoutMs);
    const families: Family[] = [...(plan.ipv4 ? [4 as const] : []), ...(plan.ipv6 ? [6 as const] : [])];
    const settled = await Promise.allSettled(
      families.map(async (family) => {
        const channel = openChannel(link, where, family, plan.netns);
        try {
          const remembered = rememberKey(identity, family);
          const hint = remembered === null ? null : this.store.lastAddress(remembered);
          const check = this.networks.offerCheck(plan.networkId);
          return family === 4
            ? await acquire(channel, identity, {
                hint,
                deadline,
                check,
                subnets: plan.subnets4,
                log: this.log,
                malformed: this.malformed.on(plan.networkId),
              })
            : await acquire6(channel, identity, {
                hint,
                deadline,
                check,
                prefixLength: plan.prefixLength6,
                log: this.log,
              });
        } finally {
          // Not awaited: closing waits for the receive in flight (up to 100 ms), which Docker need not.
          void channel.close();
        }
      }),
    );
    // Both families or neither: a lease one server bound while the other family failed would stay
    // bound on the server, unrecorded, until it expired (a LAN without DHCPv6 would drain the v4 pool
    // one failed start at a time). It goes back at once, and the failure is the other family's.
    const taken = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed === undefined) return taken;
    this.giveBack(plan.networkId, identity, taken);
    throw failed.reason;
  }

  /** Records leases just taken (durably: they outlive the daemon) and remembers their addresses; `fresh`: the new ones. */
  hold(record: LeaseRecord, fresh: readonly Lease[] = record.leases): void {
    this.store.putLease(record, true);
    for (const lease of fresh) {
      this.remember(record.identity, lease);
      recordEvent('lease.acquired', {
        endpoint: shortId(record.endpointId),
        address: formatPrefix(lease.address),
        server: lease.serverId.text,
      });
      this.log.info('dhcp lease bound', {
        endpoint: shortId(record.endpointId),
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
    // A name the server has not heard yet: renewed soon (a client may renew before T1, RFC 2131 §4.4.5),
    // once Docker has moved the link into the namespace, which it does after Join returns.
    const soon = this.nameUnsent.delete(`${networkId}/${endpointId}`) ? Date.now() + NAME_RENEWAL_DELAY_MS : undefined;
    for (const lease of updated.leases) this.renewals.schedule(updated, lease.family, soon);
    return updated;
  }

  get(networkId: string, endpointId: string): LeaseRecord | null {
    return this.store.getLease(networkId, endpointId);
  }

  /** Every lease held on a network's endpoints (and those the IPAM driver took for endpoints to come). */
  heldOn(networkId: string): LeaseRecord[] {
    return this.store.listLeases().filter((r) => r.networkId === networkId);
  }

  /** The lease held under DHCPv4 client id `clientId`, if any. */
  holderOf(clientId: string): LeaseRecord | null {
    return this.store.listLeases().find((r) => r.identity.clientId === clientId) ?? null;
  }

  /**
   * A lease taken for an endpoint to come (lanplug-dhcp) becomes the endpoint's, as it is: nothing is sent.
   * `hostname`: a name the endpoint's options give (CreateEndpoint comes after the lease was taken): the
   * lease's messages carry it from now on, and the server hears it at a renewal as soon as the container joins.
   */
  handOver(networkId: string, from: string, to: string, hostname: string | null = null): LeaseRecord | null {
    const record = this.store.getLease(networkId, from);
    if (record === null) return null;
    const renamed = hostname !== null && hostname !== record.identity.hostname;
    const moved: LeaseRecord = {
      ...record,
      endpointId: to,
      identity: renamed ? { ...record.identity, hostname } : record.identity,
    };
    this.store.moveLease(moved, from);
    if (renamed) this.nameUnsent.add(`${networkId}/${to}`);
    return moved;
  }

  // ---- giving back ----

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
    void this.renewals.stop(networkId, endpointId, family);
    const given = record.dockerAddresses.filter((a) => a.family === family);
    this.store.putLease(
      { ...record, leases: kept, dockerAddresses: record.dockerAddresses.filter((a) => a.family !== family) },
      false,
    );
    this.remember(record.identity, lease);
    this.noteReleased(given);
    const sent = this.sendRelease(networkId, record.identity, [lease]);
    recordEvent('lease.released', { endpoint: shortId(endpointId), address: formatPrefix(lease.address), why });
    this.log.info('dhcp lease released', {
      endpoint: shortId(endpointId),
      addresses: [formatPrefix(lease.address)],
      why,
      sent,
    });
  }

  /** Release (best effort: a lease not released expires on the server), then the record goes. Idempotent. */
  release(networkId: string, endpointId: string, why: string): void {
    const running = ([4, 6] as const).flatMap((family) => this.renewals.stop(networkId, endpointId, family) ?? []);
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
    for (const lease of record.leases)
      recordEvent('lease.released', { endpoint: shortId(endpointId), address: formatPrefix(lease.address), why });
    this.log.info('dhcp lease released', {
      endpoint: shortId(endpointId),
      addresses: record.leases.map((l) => formatPrefix(l.address)),
      why,
      sent,
    });
  }

  /** Leases taken but never recorded (the start failed after): back to the server at once. */
  giveBack(networkId: string, identity: DhcpIdentity, leases: readonly Lease[]): void {
    if (leases.length > 0) this.sendRelease(networkId, identity, leases);
  }

  /**
   * True when lanplug gave back, within the last minute, the lease of an endpoint Docker knew by
   * `address`: Docker's ReleaseAddress for an endpoint comes after its Leave (which released the
   * lease already), and by then the server may have leased the address to another container, whose
   * lease it must not end.
   */
  releasedLately(address: IpAddress): boolean {
    const now = this.monotonic();
    for (const [text, at] of this.released) if (now - at > RELEASED_MEMORY_MS) this.released.delete(text);
    return this.released.has(address.text);
  }

  // ---- the daemon's life: resume, the watchdog, stop ----

  /**
   * At daemon start: every lease renews on from where it was (its timers are
   * in the record); one whose container's namespace is gone is released.
   */
  resume(): void {
    for (const record of this.store.listLeases()) {
      if (record.sandboxKey !== null && !existsSync(record.sandboxKey))
        this.release(record.networkId, record.endpointId, 'container gone while lanplug was down');
      else for (const lease of record.leases) this.renewals.schedule(record, lease.family);
    }
  }

  /** Every `everyMs`: leases whose container vanished without a Leave are released. */
  start(everyMs: number): void {
    this.watchdog = setInterval(() => {
      // A timer's throw would end the daemon: a sweep that fails (the store unwritable) is tried again next time.
      try {
        this.sweep();
      } catch (err) {
        this.log.warn('dhcp watchdog pass failed; trying again at the next', { error: String(err) });
      }
    }, everyMs);
    this.watchdog.unref();
  }

  sweep(now = Date.now()): void {
    const forgotten = this.store.forgetAddressesBefore(now - REMEMBER_ADDRESS_MS);
    if (forgotten > 0) this.log.debug('forgot last addresses not used for a month', { count: forgotten });
    for (const record of this.store.listLeases()) {
      if (record.sandboxKey === null) {
        if (now - record.createdAt > UNJOINED_GRACE_MS)
          this.release(record.networkId, record.endpointId, 'never joined to a container');
      } else if (!existsSync(record.sandboxKey)) {
        this.release(record.networkId, record.endpointId, 'container namespace gone without a Leave');
      }
    }
  }

  /** Stops every timer and waits for the exchanges running now (the store closes after). */
  async stop(): Promise<void> {
    if (this.watchdog !== null) clearInterval(this.watchdog);
    await this.renewals.stopAll();
    this.malformed.stop();
  }

  // ---- helpers ----

  /** `addresses`: those Docker knew the endpoint by (a moved lease's are not the ones it will name). */
  private noteReleased(addresses: readonly IpAddress[]): void {
    for (const address of addresses) this.released.set(address.text, this.monotonic());
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
}
