/**
 * What lanplug does with the router advertisement a container on an `-o ipv6=slaac` network heard
 * (the watch, driver/slaac-watch.ts, reads it in the container's kernel), beyond the SLAAC the kernel
 * does itself; as a host does (RFC 4861 §4.2, RFC 8415 §18.2.1 and §18.2.6):
 * - M (managed): an address from the LAN's DHCPv6 server (IA_NA), asked from inside the container on
 *   its own link, checked as any DHCP address is (not this host's, not in use on the LAN), put on the
 *   container's interface as a /128 (the on-link prefix is the advertisement's to give), and kept by
 *   the lease keeper: renewed in the container, released at Leave like any lease;
 * - O (other configuration) without M: an Information-request, for DNS servers and the search list;
 * - M and O both unset: nothing is asked.
 * A later advertisement that turns M or O on asks then (driver/slaac-flags.ts hears it); one that turns
 * them off stops nothing (asksDhcp6).
 * The DNS servers learnt (the advertisement's RDNSS/DNSSL, DHCPv6's) are recorded on the endpoint for
 * `lanplug ls`, logged, and a `slaac.dns` event; they are not written into the container, whose
 * resolver is Docker's (docs/slaac.md says why).
 */
import type { LeaseKeeper } from '../dhcp/keeper';
import { exchangeDeadline } from '../dhcp/channel';
import { informationRequest } from '../dhcp/client6';
import { linkLocalIn, openChannel } from '../dhcp/lease-networks';
import type { AdvertFollowUp } from '../driver/slaac-advert';
import type { NetworkDriver } from '../driver/network-driver';
import { REAL_CLOCK, type WatchClock } from '../driver/slaac-watch';
import { clientIdFromIdentity, duidFromIdentity, hostnameFromIdentity } from '../driver/identity';
import type { LinkInfo } from '../link/link';
import { openRtnl, type Rtnl } from '../link/rtnl';
import type { Logger } from '../log';
import { recordEvent } from '../metrics/events';
import { duidFromMac, type DhcpIdentity, type Lease, type LeaseRecord } from '../model/lease';
import { shortId, type EndpointRecord, type LearnedDns, type NetworkSpec } from '../model/network';
import { formatPrefix, type IpAddress } from '../net/address';
import type { AdvertFlags } from '../netlink/router-adverts';

/** A DHCPv6 address is the client's alone (RFC 8415 §6.3): the on-link prefix comes from the router. */
const DHCP6_ADDRESS_LENGTH = 128;
/** The exchange runs after Join, in the background: no Docker deadline bounds it, lanplug's usual one does. */
const DEFAULT_TIMEOUT_MS = 10_000;
/** DAD of a link-local address takes a second (one probe, RetransTimer 1 s); a few more under load. */
const LINK_LOCAL_WAIT_MS = 5_000;

/** What unit tests replace: the clock, and the container's kernel as the exchange reads and writes it. */
export interface SlaacDhcp6Seams {
  /**
   * The watch's monotonic clock: the wait for the link-local address and the time an exchange took are
   * measured on it. On the wall clock, one set forward a day ended the wait at once (no DHCPv6 for the
   * container), one set back an hour had it polled ten times a second for the hour.
   */
  clock?: WatchClock;
  /** The link's link-local address past DAD in the container's namespace (what the client sends from), or null. */
  linkLocal?: (netns: string, index: number) => IpAddress | null;
  /** The container's kernel, where the leased address goes. */
  openRtnl?: (netns: string) => Rtnl;
}

export class SlaacDhcp6 implements AdvertFollowUp {
  /** The exchange under way per endpoint; cancel() drops it, and what it brings back then goes back. */
  private readonly running = new Map<string, symbol>();
  private readonly clock: WatchClock;
  private readonly linkLocal: (netns: string, index: number) => IpAddress | null;
  private readonly openRtnl: (netns: string) => Rtnl;

  constructor(
    private readonly driver: NetworkDriver,
    private readonly keeper: LeaseKeeper,
    private readonly log: Logger,
    seams: SlaacDhcp6Seams = {},
  ) {
    this.clock = seams.clock ?? REAL_CLOCK;
    this.linkLocal = seams.linkLocal ?? linkLocalIn;
    this.openRtnl = seams.openRtnl ?? ((netns) => openRtnl({ netns }));
  }

  flags(
    spec: NetworkSpec,
    endpoint: EndpointRecord,
    netns: string,
    link: LinkInfo,
    flags: AdvertFlags,
    before: AdvertFlags | null,
  ): void {
    if (!asksDhcp6(flags, before)) return;
    const id = endpoint.endpointId;
    // A later advertisement never asks again while an exchange runs or a DHCPv6 lease is held (RFC 2462 §5.5.3).
    if (before !== null && (this.running.has(id) || this.holdsLease6(spec.networkId, id))) return;
    const token = Symbol(id);
    this.running.set(id, token);
    const what = { endpoint: shortId(id), network: shortId(spec.networkId), ifname: link.name };
    const exchange = (): Promise<void> =>
      flags.managed
        ? this.lease(spec, endpoint, netns, link, token, what)
        : this.otherConfig(spec, endpoint, netns, link, token, what);
    const work = this.linkLocalReady(netns, link).then(exchange);
    void work
      .catch((err: unknown) => {
        if (this.running.get(id) !== token) return;
        const error = err instanceof Error ? err.message : String(err);
        this.log.warn(
          flags.managed
            ? 'no DHCPv6 address for the container (the router advertises M); its SLAAC address, if any, stays'
            : 'no DHCPv6 answer for other configuration (the router advertises O)',
          { ...what, error },
        );
        recordEvent('slaac.dhcp6-failed', { ...what, error });
      })
      .finally(() => {
        if (this.running.get(id) === token) this.running.delete(id);
      });
  }

  dns(endpoint: EndpointRecord, dns: LearnedDns): void {
    try {
      this.driver.noteLearnedDns(endpoint.networkId, endpoint.endpointId, dns);
    } catch (err) {
      this.log.warn('could not record the DNS servers learnt', {
        endpoint: shortId(endpoint.endpointId),
        error: String(err),
      });
    }
  }

  cancel(endpointId: string): void {
    this.running.delete(endpointId);
  }

  private holdsLease6(networkId: string, endpointId: string): boolean {
    return this.keeper.get(networkId, endpointId)?.leases.some((l) => l.family === 6) ?? false;
  }

  /** M: an address from the server, on the container's interface, held by the keeper as the endpoint's lease. */
  private async lease(
    spec: NetworkSpec,
    endpoint: EndpointRecord,
    netns: string,
    link: LinkInfo,
    token: symbol,
    what: Record<string, string>,
  ): Promise<void> {
    const { networkId } = spec;
    const id = endpoint.endpointId;
    // `-o dhcp=true` beside: the endpoint's IPv4 lease has its identity already; the server sees one client.
    const identity = this.keeper.get(networkId, id)?.identity ?? identityOf(endpoint, link);
    const began = this.clock.now();
    const [lease] = await this.keeper.acquire(
      { index: link.index, name: link.name },
      link.name,
      identity,
      { networkId, ipv4: false, ipv6: true, prefixLength6: DHCP6_ADDRESS_LENGTH, subnets4: [], netns },
      spec.dhcp?.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    );
    if (lease === undefined) return;
    if (this.running.get(id) !== token) {
      // The container left while the server answered: nobody holds the lease.
      this.keeper.giveBack(networkId, identity, [lease]);
      return;
    }
    try {
      const rtnl = this.openRtnl(netns);
      try {
        rtnl.addAddress(link, lease.address);
      } finally {
        rtnl.close();
      }
    } catch (err) {
      this.keeper.giveBack(networkId, identity, [lease]);
      throw err;
    }
    this.keeper.hold(withLease(this.keeper.get(networkId, id), networkId, id, identity, lease, netns), [lease]);
    this.keeper.joined(networkId, id, netns);
    this.log.info('IPv6 address from DHCPv6 (the router advertises M) put on the container', {
      ...what,
      address: formatPrefix(lease.address),
      afterAdvertMs: this.clock.now() - began,
    });
    recordEvent('slaac.dhcp6-address', { ...what, address: formatPrefix(lease.address) });
    if (lease.dns.length > 0)
      this.learnt(endpoint, { servers: lease.dns.map((a) => a.text), search: [], from: ['dhcpv6'] }, what);
  }

  /** O without M: DNS servers and search list by an Information-request, from the container's link. */
  private async otherConfig(
    spec: NetworkSpec,
    endpoint: EndpointRecord,
    netns: string,
    link: LinkInfo,
    token: symbol,
    what: Record<string, string>,
  ): Promise<void> {
    const identity = this.keeper.get(spec.networkId, endpoint.endpointId)?.identity ?? identityOf(endpoint, link);
    const channel = openChannel(link, link.name, 6, netns);
    let got;
    try {
      got = await informationRequest(channel, identity, exchangeDeadline(spec.dhcp?.timeoutMs ?? DEFAULT_TIMEOUT_MS));
    } finally {
      void channel.close();
    }
    if (this.running.get(endpoint.endpointId) !== token) return;
    if (got === null) throw new Error(`no DHCPv6 server answered the Information-request on ${link.name}`);
    this.learnt(endpoint, { servers: got.dns.map((a) => a.text), search: got.search, from: ['dhcpv6'] }, what);
  }

  /**
   * Waits (up to LINK_LOCAL_WAIT_MS) for the link's link-local address to be past DAD: the server answers
   * the address the client sends from, and an advertisement the router sent on its own may come while the
   * kernel still checks it (the client would send from the MAC's EUI-64 address, which the link has not).
   */
  private async linkLocalReady(netns: string, link: LinkInfo): Promise<void> {
    const deadline = this.clock.now() + LINK_LOCAL_WAIT_MS;
    while (this.linkLocal(netns, link.index) === null) {
      if (this.clock.now() > deadline) throw new Error(`${link.name} has no usable link-local address to ask from`);
      await new Promise<void>((resolve) => this.clock.after(100, resolve));
    }
  }

  private learnt(endpoint: EndpointRecord, dns: LearnedDns, what: Record<string, string>): void {
    this.log.info('DNS servers from DHCPv6', { ...what, servers: dns.servers.join(' '), search: dns.search.join(' ') });
    recordEvent('slaac.dns', { ...what, servers: dns.servers.join(' '), search: dns.search.join(' '), from: 'dhcpv6' });
    this.dns(endpoint, dns);
  }
}

/**
 * Whether the advertisement's flags ask for a DHCPv6 exchange: at the first one heard (`before` null), M
 * or O set; at a later change, a flag turned on (M: an address; O without M: other configuration). A
 * flag turned off asks nothing, and stops nothing: the lease taken stays, renewed, until its server or
 * its lifetime ends it (RFC 2462 §5.5.3, whose rules RFC 4862 dropped from the text without deprecating
 * them; RFC 4861 §4.2).
 */
export function asksDhcp6(flags: AdvertFlags, before: AdvertFlags | null): boolean {
  if (before === null) return flags.managed || flags.other;
  if (flags.managed) return !before.managed;
  return flags.other && !before.other;
}

/**
 * The DHCPv6 client an `-o ipv6=slaac` endpoint is to the server, as a `-o dhcp=true` endpoint's would
 * be (endpoint/dhcp-endpoints.ts): its identity's name, else its own MAC; an ipvlan link has the
 * parent's MAC, so there the endpoint tells it apart.
 */
function identityOf(endpoint: EndpointRecord, link: LinkInfo): DhcpIdentity {
  const name = endpoint.identity ?? null;
  const mac = endpoint.mac ?? link.mac ?? '00:00:00:00:00:00';
  const own = `lanplug-${shortId(endpoint.endpointId)}`;
  return {
    mac,
    duid:
      name !== null
        ? duidFromIdentity(name)
        : endpoint.mac !== null
          ? duidFromMac(endpoint.mac)
          : duidFromIdentity(`lanplug-${endpoint.endpointId}`),
    iaid: 1,
    stable: name !== null,
    clientId:
      name !== null
        ? clientIdFromIdentity(name)
        : endpoint.mac !== null
          ? '01' + endpoint.mac.replace(/:/g, '')
          : '00' + Buffer.from(own).toString('hex'),
    hostname: name === null ? null : hostnameFromIdentity(name),
    broadcast: false,
  };
}

/** The endpoint's lease record with `lease` as its IPv6 one (beside an IPv4 lease of `-o dhcp=true`). */
function withLease(
  current: LeaseRecord | null,
  networkId: string,
  endpointId: string,
  identity: DhcpIdentity,
  lease: Lease,
  netns: string,
): LeaseRecord {
  if (current !== null)
    return { ...current, leases: [...current.leases.filter((l) => l.family !== 6), lease], sandboxKey: netns };
  // Docker knows nothing of the address: no ReleaseAddress of Docker's names it.
  return {
    networkId,
    endpointId,
    identity,
    leases: [lease],
    dockerAddresses: [],
    sandboxKey: netns,
    renewedAt: null,
    failures: 0,
    lastError: null,
  };
}
