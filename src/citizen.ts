/**
 * The LAN side of the daemon, wired together: the guard that remembers what
 * the LAN answered, the conflict checks the plugin routes await, the warmer
 * that keeps the next candidates' answers fresh, the watch that notices a
 * device claiming a container's address afterwards, and the mDNS responder of
 * `-o lanplug.mdns=true` networks. Composition only: each piece lives in
 * src/lan/ or src/mdns/.
 */
import type { OfferCheck } from './dhcp/outcomes';
import { refuseOffered, type NetworkFacts } from './dhcp/offer-rules';
import type { NetworkDriver } from './driver/network-driver';
import type { AddressFilter, IpamAllocator } from './ipam/allocator';
import type { LanHearing } from './ipam/reclaim';
import { hearAddress } from './lan/hearing';
import { nextCandidates } from './lan/candidates';
import { LanConflicts, ONE_DEVICE_SAMPLES, type LanCheck } from './lan/conflicts';
import { LanGuard } from './lan/guard';
import { usedParentNames } from './lan/eye';
import { UnusedEyeSweep } from './lan/eye-sweep';
import type { ChangeSignal, HostAddresses } from './lan/host-addresses';
import { probe, type ProbeLink } from './lan/probe';
import { CandidateWarmer, type WarmTarget } from './lan/warmer';
import { LanWatch, type Holding } from './lan/watch';
import type { Logger } from './log';
import { MdnsResponder, type MdnsName } from './mdns/responder';
import { hostnameFromIdentity } from './driver/identity';
import type { PoolRecord } from './model/ipam';
import { addressesOf, shortId, type EndpointRecord, type NetworkRecord, type NetworkSpec } from './model/network';
import { formatPrefix, networkOf, sameAddress, type Family, type IpAddress } from './net/address';
import type { IpamStore } from './state/ipam-store';
import type { LeaseStore } from './state/lease-store';
import type { SharedPoolState } from './state/shared-state';
import type { LanSightings, Store } from './state/store';

/** How long after an address is handed out the warmer refills: past the CreateEndpoint and Join that follow. */
const WARM_AFTER_USE_MS = 150;

export class LanCitizen {
  readonly conflicts: LanConflicts;
  private readonly watch: LanWatch;
  private readonly mdns: MdnsResponder;
  private readonly eyeSweep: UnusedEyeSweep;
  private warmer: CandidateWarmer | null = null;
  private timer: NodeJS.Timeout | null = null;
  private warmTimer: NodeJS.Timeout | null = null;
  /** The endpoints holding each address, decoded again when the endpoints changed (holding()). */
  private holders = new Map<string, EndpointRecord[]>();
  private holdersGeneration = -1;
  /** The probing link of each network, refreshed every sync. */
  private linkOfNetwork = new Map<string, number>();

  constructor(
    private readonly driver: NetworkDriver,
    private readonly store: Store & IpamStore & LanSightings & LeaseStore & Pick<SharedPoolState, 'isAddressLost'>,
    private readonly log: Logger,
    host: HostAddresses,
    /** What tells the sync a link changed (RTNLGRP_LINK, netlink/events.ts; the caller's to close); absent: it reads the links every time. */
    linkChanges: Pick<ChangeSignal, 'changed'> | null = null,
  ) {
    const ownAnswer = (link: ProbeLink, address: IpAddress, mac: string): boolean =>
      this.holding(link, address)?.mac.toLowerCase() === mac.toLowerCase();
    this.conflicts = new LanConflicts(
      new LanGuard(log, probe, () => performance.now(), ownAnswer),
      store,
      log,
      host,
      () => this.warmSoon(),
    );
    // An address still being asked about is no container's yet: a device answering is the refusal, not a claim.
    this.watch = new LanWatch((link, address) => this.conflicts.defensible(this.holding(link, address)), store, log);
    this.mdns = new MdnsResponder(log);
    this.eyeSweep = new UnusedEyeSweep(() => this.driver.removeUnusedEyes(), linkChanges);
  }

  /** Where and how to ask the LAN for a network; null when its policy is off or it has no LAN. */
  checkFor(network: NetworkRecord): LanCheck | null {
    const { spec } = network;
    if (spec.conflict === 'off' || spec.parent.kind === 'private') return null;
    const link = this.driver.lanLink(spec);
    return link === null ? null : { link, policy: spec.conflict, networkId: spec.networkId };
  }

  /**
   * How a DHCP network checks an address its server acknowledged, before the
   * container uses it, in this order: this host's own address, and what the
   * network knows without asking (offer-rules.ts: no host's address, outside
   * its subnet, the router or the server, another container's), are always
   * declined; then the LAN is asked like for any other; one in use is declined
   * under `refuse` (the default) and used with a warning under `warn`; `off`
   * asks nothing. The asking container's own answer is no conflict (after a
   * long server outage it starts over still holding the address; an ipvlan
   * container answers with the parent's MAC, which the probing link, the
   * parent, never counts). Each refusal is one line naming the server.
   */
  dhcpOfferCheck(networkId: string): OfferCheck | undefined {
    const network = this.store.getNetwork(networkId);
    if (network === null || network.spec.parent.kind === 'private') return undefined;
    const check = this.checkFor(network);
    const spec = network.spec;
    return async (address, ownMac, by) => {
      const hostLink = this.conflicts.hostHolder(address);
      if (hostLink !== null) {
        this.log.warn("declining a DHCP address: it is this host's own", {
          network: shortId(networkId),
          address: address.text,
          link: hostLink,
          server: by.server.text,
        });
        return `in use by this host (it holds the address on ${hostLink})`;
      }
      const refusal = refuseOffered(address, by, this.networkFacts(spec, by.identity.clientId));
      if (refusal !== null) {
        this.log.warn(`declining a DHCP address: it is ${refusal.what}`, {
          network: shortId(networkId),
          address: address.text,
          ...refusal.fields,
          server: by.server.text,
        });
        return refusal.why;
      }
      if (check === null) return null;
      // The server knows its leases, not the LAN's static devices: asked now, never from memory.
      const verdict = await this.conflicts.verdict(check, address, { asNow: true, ownMac });
      if (!verdict.inUse) return null;
      const fields = {
        network: shortId(networkId),
        address: address.text,
        mac: verdict.mac,
        how: verdict.how,
        server: by.server.text,
      };
      if (check.policy === 'warn') {
        this.log.warn('using a DHCP address the LAN already uses (lanplug.conflict=warn)', fields);
        return null;
      }
      this.log.warn('declining a DHCP address the LAN already uses', fields);
      return `in use by ${verdict.mac} (${verdict.how})`;
    };
  }

  /**
   * What a DHCP network knows of its addresses as it is now: its subnets (a lanplug-dhcp network's
   * --subnet; for -o dhcp=true, which has none, the host's own on the parent), its gateways and the
   * routers its leases name, and the containers on the same parent (the same LAN) that hold an
   * address, but those of the client `clientId` itself (it may be given its own address back).
   */
  private networkFacts(spec: NetworkSpec, clientId: string): NetworkFacts {
    const given = [...spec.ipv4, ...spec.ipv6].filter((s) => s.pool.prefixLength > 0);
    const subnets = [
      ...given.map((s) => s.pool),
      ...(given.some((s) => s.pool.address.family === 4) ? [] : this.driver.parentSubnets4(spec)),
    ].map(networkOf);
    const leases = this.store.listLeases();
    const routers = [
      ...given.flatMap((s) => (s.gateway === null ? [] : [s.gateway])),
      ...leases.filter((r) => r.networkId === spec.networkId).flatMap((r) => r.leases.flatMap((l) => l.router ?? [])),
    ];
    const sameLan = new Set(
      this.store
        .listNetworks()
        .filter((n) => n.spec.parent.kind !== 'private' && n.spec.parent.name === spec.parent.name)
        .map((n) => n.spec.networkId),
    );
    const own = new Set(
      leases.filter((r) => r.identity.clientId === clientId).map((r) => `${r.networkId}/${r.endpointId}`),
    );
    return {
      subnets,
      routers,
      heldBy: (address) => {
        const holds = (held: IpAddress | undefined): boolean =>
          held !== undefined && held.family === address.family && held.value === address.value;
        for (const e of this.store.listAllEndpoints())
          if (sameLan.has(e.networkId) && !own.has(`${e.networkId}/${e.endpointId}`))
            if (holds(e.ipv4?.address) || holds(e.ipv6?.address)) return shortId(e.endpointId);
        for (const r of leases)
          if (sameLan.has(r.networkId) && r.identity.clientId !== clientId)
            if (r.leases.some((l) => holds(l.address.address))) return shortId(r.endpointId);
        return null;
      },
    };
  }

  /** The IPAM driver's pools know no parent: the lanplug network on the pool's subnet does. */
  checkForPool(pool: PoolRecord): LanCheck | null {
    const network = this.driver.networkOfPool(pool.pool);
    return network === null ? null : this.checkFor(network);
  }

  /**
   * Whether a lanplug network on a LAN uses `pool`: then an address asked for by value is an
   * endpoint's (Docker asks for the gateway and --aux-address entries before it creates the
   * network), and it must not be this host's. Null for a pool no such network uses.
   */
  rulesForPool(pool: PoolRecord): { lan: LanCheck | null } | null {
    const network = this.driver.networkOfPool(pool.pool);
    if (network === null || network.spec.parent.kind === 'private') return null;
    return { lan: this.checkFor(network) };
  }

  /**
   * What automatic allocation in `pool` skips although no claim holds it: this host's addresses,
   * and what the LAN behind the pool's network was seen using (behind any link, for a pool no
   * lanplug network here uses).
   */
  takenIn(pool: PoolRecord): (address: IpAddress) => boolean {
    return this.conflicts.takenOn(this.checkForPool(pool)?.link ?? null);
  }

  /**
   * What the `lanplug` IPAM driver's automatic allocation skips although its book has it free:
   * this host's addresses, what the LAN was seen using (takenIn), and an address claimed in another
   * pool (a CNI network's on the same LAN), as taken as one the LAN uses.
   */
  allocationFilter(): AddressFilter {
    return {
      takenIn: (pool) => {
        const lanOrHost = this.takenIn(pool);
        return (address) => lanOrHost(address) || this.store.poolsClaiming(address).some((id) => id !== pool.poolId);
      },
    };
  }

  /**
   * Whether anything on the LAN uses `address` of `pool` now: two fresh probes from the pool's
   * network's probing link, whatever is remembered. 'unknown' where this host cannot ask.
   */
  async hearNow(pool: PoolRecord | null, address: IpAddress): Promise<LanHearing> {
    const check = pool === null ? null : this.checkForPool(pool);
    if (check === null) return 'unknown';
    return hearAddress(() => this.conflicts.verdict(check, address, { ignoreMemory: true }));
  }

  start(allocator: IpamAllocator, options: { syncEveryMs: number; warmEveryMs: number }): void {
    this.sync();
    this.timer = setInterval(() => this.sync(), options.syncEveryMs);
    this.timer.unref();
    this.warmer = new CandidateWarmer(() => this.warmTargets(allocator), this.conflicts, this.log);
    this.warmer.start(options.warmEveryMs);
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    if (this.warmTimer !== null) clearTimeout(this.warmTimer);
    await this.warmer?.stop();
    await this.watch.close();
    await this.mdns.close();
  }

  /**
   * An address was just handed out: the next candidates are asked about once
   * the attach it belongs to is through (Docker sends CreateEndpoint and Join
   * right after RequestAddress), not in the middle of it.
   */
  private warmSoon(): void {
    if (this.warmTimer !== null) return;
    this.warmTimer = setTimeout(() => {
      this.warmTimer = null;
      void this.warmer?.tick();
    }, WARM_AFTER_USE_MS);
    this.warmTimer.unref();
  }

  /** The links to watch, and each network's, from the store as it is now. */
  private sync(): void {
    try {
      const links = new Map<number, ProbeLink>();
      const linkOfNetwork = new Map<string, number>();
      for (const network of this.store.listNetworks()) {
        const check = this.checkFor(network);
        if (check === null) continue;
        links.set(check.link.index, check.link);
        linkOfNetwork.set(network.spec.networkId, check.link.index);
      }
      this.linkOfNetwork = linkOfNetwork;
      this.watch.sync([...links.values()]);
    } catch (err) {
      this.log.warn('could not refresh the LAN watch', { error: String(err) });
    }
    try {
      // Whatever made an eye outlive its last network (a removal that failed, a caller that raced it): gone now.
      // Looked for only when a link or the networks' parents changed (eye-sweep.ts).
      this.eyeSweep.run(usedParentNames(this.store.listNetworks()));
    } catch (err) {
      this.log.warn('could not remove a LAN eye no network needs; reconcile retries', { error: String(err) });
    }
    try {
      this.mdns.sync(this.mdnsNames());
    } catch (err) {
      this.log.warn('could not refresh the mDNS names', { error: String(err) });
    }
    this.conflicts.forgetStale();
  }

  /**
   * `<identity>.local` for the named containers of `-o lanplug.mdns=true` networks, on each network's LAN
   * eye. The name is the identity (`lanplug.identity`): Docker 20.10 to 28 tell a driver no container name.
   */
  private mdnsNames(): MdnsName[] {
    const names: MdnsName[] = [];
    for (const network of this.store.listNetworks()) {
      if (network.spec.mdns !== true || network.spec.parent.kind === 'private') continue;
      const link = this.driver.lanLink(network.spec);
      if (link === null) continue;
      for (const e of this.store.listEndpoints(network.spec.networkId)) {
        // A single label: `web1.local`; a dotted identity is a name in a DNS domain already, not one for .local.
        const host = e.identity === undefined ? null : hostnameFromIdentity(e.identity);
        if (host === null || host.includes('.')) continue;
        // Only addresses the container holds still: a name never points a LAN host at an address now someone else's.
        const addresses = addressesOf(e).filter((a) => this.stillHolds(e, a));
        names.push({
          name: `${host}.local`,
          addresses,
          mac: e.mac ?? link.mac,
          link,
          networkId: e.networkId,
          endpointId: e.endpointId,
        });
      }
    }
    return names;
  }

  /**
   * Which container behind `link` holds `address` at the moment a frame arrives: read from the
   * endpoints as they are then (a container re-created with a new MAC is never taken for a
   * stranger), decoded again only when they changed — a LAN flooding claims on a container's
   * address costs a map lookup per frame, not a read of the store.
   */
  private holding(link: ProbeLink, address: IpAddress): Holding | null {
    if (this.store.endpointGeneration !== this.holdersGeneration) {
      this.holdersGeneration = this.store.endpointGeneration;
      const holders = new Map<string, EndpointRecord[]>();
      for (const e of this.store.listAllEndpoints())
        for (const { text } of addressesOf(e)) holders.set(text, [...(holders.get(text) ?? []), e]);
      this.holders = holders;
    }
    // Only a container behind the link the frame came in on: two VLANs may carry one subnet.
    const endpoint = this.holders.get(address.text)?.find((e) => this.linkOfNetwork.get(e.networkId) === link.index);
    if (endpoint === undefined || !this.stillHolds(endpoint, address)) return null;
    // ipvlan containers answer with the parent's MAC, the watched link's.
    return { address, mac: endpoint.mac ?? link.mac, networkId: endpoint.networkId };
  }

  /** Whether `endpoint` holds `address` still: neither defended nor answered for by name once it does not. */
  private stillHolds(endpoint: EndpointRecord, address: IpAddress): boolean {
    // An address another host reclaimed while this one was away, and holds now.
    if (this.store.isAddressLost(endpoint.networkId, address.text)) return false;
    const network = this.store.getNetwork(endpoint.networkId);
    // On a DHCP network an endpoint holds its address while lanplug holds the lease: once given back (its
    // container vanished without a Leave, or Docker released the address) the server may lease it to anyone.
    return (
      network === null ||
      network.spec.dhcp === null ||
      this.leaseHolds(endpoint.networkId, endpoint.endpointId, address)
    );
  }

  private leaseHolds(networkId: string, endpointId: string, address: IpAddress): boolean {
    const leases = this.store.getLease(networkId, endpointId)?.leases ?? [];
    return leases.some((l) => sameAddress(l.address.address, address));
  }

  private async warmTargets(allocator: IpamAllocator): Promise<WarmTarget[]> {
    const pools = await allocator.pools();
    const targets: WarmTarget[] = [];
    for (const network of this.store.listNetworks()) {
      const check = this.checkFor(network);
      if (check === null) continue;
      const endpoints = this.store.listEndpoints(network.spec.networkId);
      const candidates = await nextCandidates(network.spec, endpoints, pools, allocator, (a) =>
        this.conflicts.isKnownTaken(check.link, a),
      );
      const elsewhere = async (family: Family, exclude: (address: IpAddress) => boolean): Promise<IpAddress[]> => {
        const subnet = (family === 4 ? network.spec.ipv4 : network.spec.ipv6)[0];
        const pool = pools.find((p) => subnet !== undefined && formatPrefix(p.pool) === formatPrefix(subnet.pool));
        return pool === undefined ? [] : allocator.randomUnclaimed(pool.poolId, ONE_DEVICE_SAMPLES, exclude);
      };
      targets.push({ check, candidates, elsewhere });
    }
    return targets;
  }
}
