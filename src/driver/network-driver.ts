/**
 * The network driver behind `lanplug-macvlan` and `lanplug-ipvlan`: one
 * implementation for both, the difference carried by LinkMode. Every
 * operation takes a typed request and knows nothing of Docker's JSON.
 *
 * Every operation is synchronous (rtnetlink and SQLite calls both are), so a
 * request runs start to finish without another interleaving: no locks needed.
 *
 * Order of effects: validate fully, write the intent to the store, then
 * change the kernel; on a kernel failure undo both. Teardown goes on past a
 * failure and reports every failure at the end.
 *
 * Errors: the kernel layer names the link and the errno; this layer adds only
 * the network and its parent ("network 5e3ec79625d3 on parent eth0: ...").
 */
import { conflict, invalidArgument, LanplugError, notFound, Teardown, withContext } from '../errors';
import { macFromIpv4, randomMac } from '../ipam/mac';
import type { LinkInfo } from '../link/link';
import { ImmediateRemover, type LinkRemover } from '../link/reaper';
import type { EndpointLinkRequest, Rtnl } from '../link/rtnl';
import type { Logger } from '../log';
import { crashPoint } from '../crash-points';
import type { Announcer } from '../lan/announce';
import type { AddressCheck } from '../lan/conflicts';
import { ensureEye, removeUnusedEyes } from '../lan/eye';
import type { ProbeLink } from '../lan/probe';
import type {
  DriverKind,
  EndpointRecord,
  Leftover,
  NetworkRecord,
  NetworkSpec,
  Stamped,
  Subnet,
} from '../model/network';
import { formatPrefix, parsePrefix, prefixContains, type IpAddress, type IpPrefix } from '../net/address';
import { parseMac } from '../net/mac';
import { EOPNOTSUPP } from '../netlink/errno';
import type { Store } from '../state/store';
import { quietAskingLink } from './asking-links';
import { KernelFeatures } from './features';
import { addRoutes, ensureShim, removeRoutes, wantedRoutes } from './host-access';
import { checkDockerId, endpointLinkName, shimLinkName, shortId } from './names';
import { ensureParent, ownedParent, releaseParent } from './parent';
import type {
  CreateEndpointRequest,
  CreateEndpointResult,
  CreateNetworkRequest,
  JoinResult,
  StaticRoute,
} from './requests';
import { replayDifference, validateNetwork } from './validate';

/** A DHCP endpoint between its two halves: recorded, its link up in the daemon's namespace, no address yet. */
export interface PreparedEndpoint {
  spec: NetworkSpec;
  endpoint: EndpointRecord;
  link: LinkInfo;
}

export class NetworkDriver {
  private readonly features: KernelFeatures;

  /** Sends gratuitous ARP / unsolicited NA at Join; none in unit tests. */
  private readonly announcer: Announcer | null;
  /** How endpoint links go at DeleteEndpoint: the daemon's reaper takes them off the request path. */
  private readonly remover: LinkRemover;

  constructor(
    private readonly rtnl: Rtnl,
    private readonly store: Store,
    private readonly log: Logger,
    options: { announcer?: Announcer; remover?: LinkRemover } = {},
  ) {
    this.features = new KernelFeatures(rtnl);
    this.announcer = options.announcer ?? null;
    this.remover = options.remover ?? new ImmediateRemover(rtnl);
  }

  // ---- the LAN ----

  /**
   * What to check about a new endpoint's addresses before it is recorded: that
   * none is this host's, and where to ask the LAN about them (null when
   * conflict=off or the parent is down); null when there is nothing to check
   * (a private network, a retried CreateEndpoint, no address).
   */
  addressCheck(driver: DriverKind, request: CreateEndpointRequest): AddressCheck | null {
    if (this.store.getEndpoint(request.networkId, request.endpointId) !== null) return null;
    const addresses = [request.ipv4?.address, request.ipv6?.address].filter((a): a is IpAddress => a !== undefined);
    return this.addressCheckOf(driver, request.networkId, addresses);
  }

  /** addressCheck for `addresses` on a network, whatever is recorded (a CNI attachment checks its own). */
  addressCheckOf(driver: DriverKind, networkId: string, addresses: readonly IpAddress[]): AddressCheck | null {
    const { spec } = this.requireNetwork(networkId, driver);
    if (spec.parent.kind === 'private' || addresses.length === 0) return null;
    const link = spec.conflict === 'off' ? null : this.lanLink(spec);
    return {
      addresses: [...addresses],
      lan: link === null || spec.conflict === 'off' ? null : { link, policy: spec.conflict, networkId: spec.networkId },
    };
  }

  /**
   * The lanplug network whose subnet is exactly `pool` (the IPAM drivers' pools know no parent), among
   * those `which` accepts.
   */
  networkOfPool(
    pool: IpPrefix,
    which: (network: NetworkRecord) => boolean = () => true,
  ): (NetworkRecord & Stamped) | null {
    const wanted = formatPrefix(pool);
    return (
      this.store
        .listNetworks()
        .find((n) => which(n) && [...n.spec.ipv4, ...n.spec.ipv6].some((s) => formatPrefix(s.pool) === wanted)) ?? null
    );
  }

  /**
   * The link that probes, announces and watches for a network: on a macvlan
   * parent lanplug's own bridge-mode sibling (it sees the LAN and the
   * containers beside it); on an ipvlan or passthru parent, the parent.
   * None on a parent that is down: nothing on the LAN can answer through it,
   * and Docker's drivers attach containers to a down parent all the same.
   */
  lanLink(spec: NetworkSpec, knownParent?: LinkInfo): ProbeLink | null {
    const parent = knownParent ?? this.rtnl.getLink(spec.parent.name);
    if (parent === null || parent.mac === null || !parent.up) return null;
    if (spec.mode.kind === 'macvlan' && spec.mode.mode !== 'passthru') {
      // A caller holding a network read before an await (the warmer, a probe) must not bring back the eye of a
      // network removed meanwhile: an eye lives exactly as long as a network of this daemon needs it.
      if (this.store.getNetwork(spec.networkId) === null) return null;
      const eye = ensureEye(this.rtnl, parent);
      return eye.mac === null ? null : { index: eye.index, name: parent.name, mac: eye.mac, listenAll: false };
    }
    return { index: parent.index, name: parent.name, mac: parent.mac, listenAll: true };
  }

  /** This daemon's LAN eyes that no network of its own needs any more go (see lan/eye.ts). */
  removeUnusedEyes(): void {
    removeUnusedEyes(this.rtnl, this.store.listNetworks());
  }

  // ---- networks ----

  createNetwork(request: CreateNetworkRequest): void {
    checkDockerId(request.networkId, 'network id');
    const known = this.store.getNetwork(request.networkId);
    if (known !== null) {
      // Docker may replay CreateNetwork for a network it already gave us: the same one is fine.
      const difference = replayDifference(request, known);
      if (difference !== null) throw conflict(difference);
      return;
    }
    const leftovers = this.store.listLeftovers();
    const { spec, parentCreated } = validateNetwork(
      request,
      this.rtnl,
      this.store.listNetworks(),
      this.lanplugParents(leftovers),
    );
    this.features.require(spec.mode);
    const record: NetworkRecord = {
      spec,
      parentCreated,
      ...(request.cniName === undefined ? {} : { cniName: request.cniName }),
    };
    this.store.transaction(() => {
      this.store.insertNetwork(record);
      // A parent waiting to be removed is this network's now.
      if (leftovers.some((l) => l.kind === 'parent' && l.name === spec.parent.name))
        this.store.deleteLeftover(spec.parent.name);
    });
    try {
      const parentLink = ensureParent(this.rtnl, spec.parent, spec.mtu);
      if (spec.hostAccess !== null) ensureShim(this.rtnl, spec, parentLink);
    } catch (err) {
      this.removeShimQuietly(spec);
      this.store.deleteNetwork(spec.networkId);
      // A parent this network would have owned is removed again if the failure came after creating it.
      this.releaseOrRemember(record, 'undo a failed network create');
      throw inNetwork(spec, err);
    }
    crashPoint('create-network:parent-ready');
    this.log.info('network created', {
      network: shortId(spec.networkId),
      mode: spec.mode,
      parent: spec.parent.name,
      parentCreated,
    });
  }

  /**
   * Idempotent: an unknown network is already deleted. The rows go first,
   * replaced in the same transaction by leftovers for every link to remove;
   * then every endpoint link is tried, then the parent, and each leftover is
   * dropped once its link is gone. What failed stays for the reconciler and
   * is reported together at the end (Docker logs it and forgets the network).
   */
  deleteNetwork(networkId: string): void {
    checkDockerId(networkId, 'network id');
    const network = this.store.getNetwork(networkId);
    if (network === null) return;
    const endpoints = this.store.listEndpoints(networkId);
    const parent = ownedParent(network);
    this.store.transaction(() => {
      this.store.deleteNetwork(networkId);
      for (const endpoint of endpoints) this.store.putLeftover(endpointLeftover(endpoint, 'network removed'));
      if (parent !== null)
        this.store.putLeftover({ kind: 'parent', name: parent.name, parent, networkId, reason: 'network removed' });
    });
    crashPoint('delete-network:rows-dropped');
    const teardown = new Teardown();
    // Links still parked from DeleteEndpoint go now: `docker network rm` leaves nothing behind when it returns.
    teardown.step('remove detached endpoint links', () => this.remover.settle());
    if (network.spec.hostAccess !== null) {
      // The shim's routes go with it.
      const shim = shimLinkName(networkId);
      const removed = teardown.step('remove the host-access shim', () => this.deleteEndpointLink(shim));
      if (!removed.ok) this.store.putLeftover({ kind: 'shim', name: shim, networkId, reason: removed.error.message });
    }
    for (const endpoint of endpoints) {
      const removed = teardown.step(`endpoint ${shortId(endpoint.endpointId)}`, () =>
        this.deleteEndpointLink(endpoint.linkName),
      );
      if (removed.ok) this.store.deleteLeftover(endpoint.linkName);
      else this.store.putLeftover(endpointLeftover(endpoint, removed.error.message));
    }
    let parentLink = 'kept';
    if (parent !== null) {
      const released = teardown.step('release parent', () =>
        releaseParent(this.rtnl, parent, this.store.listNetworks()),
      );
      if (released.ok) this.store.deleteLeftover(parent.name);
      else
        this.store.putLeftover({
          kind: 'parent',
          name: parent.name,
          parent,
          networkId,
          reason: released.error.message,
        });
      parentLink = released.ok ? released.value : 'failed';
    }
    // The LAN eye on that parent goes with the last lanplug network on it (reconcile retries a failure).
    teardown.step('remove the LAN eye', () => removeUnusedEyes(this.rtnl, this.store.listNetworks()));
    this.log.info('network deleted', {
      network: shortId(networkId),
      parent: network.spec.parent.name,
      parentLink,
      failures: teardown.failed.length,
    });
    try {
      teardown.throwIfFailed();
    } catch (err) {
      throw inNetwork(network.spec, err);
    }
  }

  // ---- endpoints ----

  createEndpoint(driver: DriverKind, request: CreateEndpointRequest): CreateEndpointResult {
    checkDockerId(request.endpointId, 'endpoint id');
    const network = this.requireNetwork(request.networkId, driver);
    const { spec } = network;
    const requestedMac = request.mac === null ? null : parseMac(request.mac);
    if (spec.mode.kind === 'ipvlan' && requestedMac !== null) {
      throw invalidArgument('ipvlan interfaces do not support custom mac address assignment');
    }
    if (spec.mode.kind === 'macvlan' && spec.mode.mode === 'passthru') {
      const others = this.store.listEndpoints(spec.networkId).filter((e) => e.endpointId !== request.endpointId);
      if (others.length > 0) {
        throw conflict(
          `macvlan network ${shortId(spec.networkId)} is in mode passthru and parent ${spec.parent.name} is already given to endpoint ${shortId(others[0]?.endpointId ?? '')}; passthru allows one container per parent`,
        );
      }
    }
    const mac = spec.mode.kind === 'ipvlan' ? null : (requestedMac ?? deriveMac(request));
    this.store.putEndpoint({
      networkId: spec.networkId,
      endpointId: request.endpointId,
      linkName: endpointLinkName(request.endpointId),
      mac,
      ipv4: request.ipv4,
      ipv6: request.ipv6,
      ...(request.sandbox === undefined ? {} : { sandbox: request.sandbox }),
    });
    crashPoint('create-endpoint:recorded');
    return { assignedMac: requestedMac === null ? mac : null };
  }

  /**
   * Idempotent: a link or record already gone is success. The row is replaced
   * by a leftover first, so that a crash or a refused delete leaves the link
   * to the reconciler rather than a row Docker has forgotten.
   */
  deleteEndpoint(networkId: string, endpointId: string): void {
    checkIds(networkId, endpointId);
    const network = this.store.getNetwork(networkId);
    const endpoint = this.store.getEndpoint(networkId, endpointId);
    // Docker hands the link back to our namespace after Leave; it is deleted here, as Docker's own driver does.
    const linkName = endpoint?.linkName ?? endpointLinkName(endpointId);
    const leftover = endpointLeftover({ networkId, endpointId, linkName }, 'endpoint removed');
    this.store.transaction(() => {
      this.store.deleteEndpoint(networkId, endpointId);
      this.store.putLeftover(leftover);
    });
    crashPoint('delete-endpoint:row-dropped');
    if (endpoint !== null)
      this.announcer?.withdraw(
        [endpoint.ipv4?.address, endpoint.ipv6?.address].filter((a): a is IpAddress => a !== undefined),
      );
    try {
      if (network !== null && network.spec.hostAccess !== null && endpoint !== null)
        this.removeRoutesQuietly(network.spec, endpoint);
      const link = this.rtnl.getLink(linkName);
      if (link === null) this.store.deleteLeftover(linkName);
      // The leftover record goes once the link is: at once, or when the reaper's batch is done.
      else this.remover.remove(link, () => this.store.deleteLeftover(linkName));
    } catch (err) {
      const failure =
        network === null ? withContext(`endpoint ${shortId(endpointId)}`, err) : inNetwork(network.spec, err);
      this.store.putLeftover({ ...leftover, reason: failure.message });
      throw failure;
    }
  }

  // ---- endpoints whose address comes from the LAN's DHCP server (see dhcp-endpoints.ts) ----

  /** A network of this driver, as validated at create; NotFound for any other. */
  networkSpec(driver: DriverKind, networkId: string): NetworkSpec {
    return this.requireNetwork(networkId, driver).spec;
  }

  /**
   * The first half of a DHCP CreateEndpoint: the endpoint recorded without an
   * address, and its link made now (not at Join) in the daemon's namespace and
   * set up, for the client to ask for an address on. `mac` null: ipvlan (the
   * parent's). Undone by deleteEndpoint.
   */
  prepareDhcpEndpoint(driver: DriverKind, request: CreateEndpointRequest, mac: string | null): PreparedEndpoint {
    checkDockerId(request.endpointId, 'endpoint id');
    const { spec } = this.requireNetwork(request.networkId, driver);
    if (spec.mode.kind === 'ipvlan' && request.mac !== null) {
      throw invalidArgument('ipvlan interfaces do not support custom mac address assignment');
    }
    const endpoint: EndpointRecord = {
      networkId: spec.networkId,
      endpointId: request.endpointId,
      linkName: endpointLinkName(request.endpointId),
      mac,
      ipv4: null,
      ipv6: request.ipv6,
    };
    this.store.putEndpoint(endpoint);
    try {
      const parent = ensureParent(this.rtnl, spec.parent, spec.mtu);
      const link = this.createEndpointLinkBesideParked(spec, endpoint, parent);
      // Up in the daemon's namespace to ask on: as quiet there as lanplug-dhcp's asking links.
      quietAskingLink(this.rtnl, link, spec.dhcp?.ipv6 === true ? 6 : 4);
      this.rtnl.setUp(link);
      return { spec, endpoint, link };
    } catch (err) {
      const failure = inNetwork(spec, err);
      try {
        this.deleteEndpoint(spec.networkId, request.endpointId);
      } catch (undo) {
        this.log.error('could not undo a failed DHCP endpoint', {
          endpoint: shortId(request.endpointId),
          error: String(undo),
        });
      }
      throw failure;
    }
  }

  /** The second half: the addresses the servers granted, recorded on the endpoint. */
  completeDhcpEndpoint(prepared: PreparedEndpoint, ipv4: IpPrefix | null, ipv6: IpPrefix | null): EndpointRecord {
    const endpoint = {
      ...prepared.endpoint,
      ipv4: ipv4 ?? prepared.endpoint.ipv4,
      ipv6: ipv6 ?? prepared.endpoint.ipv6,
    };
    this.store.putEndpoint(endpoint);
    return endpoint;
  }

  /**
   * The lanplug-dhcp network whose pool this is: RequestAddress names only
   * the pool, and each such network has pools of its own (validate.ts).
   */
  dhcpNetworkOfPool(pool: IpPrefix): NetworkRecord | null {
    return this.networkOfPool(pool, (n) => n.spec.dhcp?.askedBy === 'ipam');
  }

  /** The IPv4 subnets the host holds addresses in on a network's parent (the LAN's, seen from here). */
  parentSubnets4(spec: NetworkSpec): IpPrefix[] {
    const parent = this.rtnl.getLink(spec.parent.name);
    if (parent === null) return [];
    return this.rtnl
      .listAddresses(4)
      .filter((a) => a.index === parent.index)
      .map((a) => a.prefix);
  }

  /** A DHCP server moved the container: the endpoint's address follows (the LAN watch defends what endpoints hold). */
  moveEndpointAddress(networkId: string, endpointId: string, address: IpPrefix): void {
    const endpoint = this.store.getEndpoint(networkId, endpointId);
    if (endpoint === null) return;
    this.store.putEndpoint(
      address.address.family === 4 ? { ...endpoint, ipv4: address } : { ...endpoint, ipv6: address },
    );
  }

  /** null for an endpoint lanplug does not know (Docker's own drivers answer an empty map then). */
  endpointInfo(networkId: string, endpointId: string): EndpointRecord | null {
    checkIds(networkId, endpointId);
    return this.store.getEndpoint(networkId, endpointId);
  }

  /**
   * Creates the endpoint's link in the daemon's namespace. The runtime
   * (Docker) moves it into the container, names it eth<N> and configures
   * addresses and routes. `into` (CNI): the link is made directly in the
   * container's namespace instead, named `into.name` there — a link moved
   * between namespaces waits for an RCU grace period, one made there does not.
   */
  join(
    driver: DriverKind,
    networkId: string,
    endpointId: string,
    into?: { namespaceFd: number; name: string },
  ): JoinResult {
    checkIds(networkId, endpointId);
    const network = this.requireNetwork(networkId, driver);
    const endpoint = this.store.getEndpoint(networkId, endpointId);
    if (endpoint === null) throw notFound(`endpoint ${shortId(endpointId)} not found in network ${shortId(networkId)}`);
    const { spec } = network;
    let parent: LinkInfo;
    try {
      parent = ensureParent(this.rtnl, spec.parent, spec.mtu);
      // A DHCP endpoint's link was made at CreateEndpoint, to ask for its address on.
      if (into !== undefined) {
        try {
          this.rtnl.createInNamespace(into.namespaceFd, endpointLinkRequest(spec, endpoint, parent, into.name));
        } catch (err) {
          throw explainUnsupported(spec, err);
        }
      } else {
        const link =
          spec.dhcp?.askedBy === 'driver'
            ? this.requireLink(endpoint)
            : this.createEndpointLinkBesideParked(spec, endpoint, parent);
        this.log.debug('endpoint link ready', { endpoint: shortId(endpointId), link: link.name, index: link.index });
      }
      // The shim is made again here if its parent went away and came back since.
      if (spec.hostAccess !== null)
        addRoutes(this.rtnl, ensureShim(this.rtnl, spec, parent), wantedRoutes(spec, [endpoint]));
    } catch (err) {
      throw inNetwork(spec, err);
    }
    crashPoint('join:link-created');
    this.announceEndpoint(spec, endpoint, parent);
    return joinAnswer(spec, endpoint);
  }

  /** Nothing to undo here: Docker moves the link back and then calls DeleteEndpoint. */
  leave(networkId: string, endpointId: string): void {
    checkIds(networkId, endpointId);
    if (this.store.getEndpoint(networkId, endpointId) === null) {
      this.log.debug('leave for an endpoint lanplug does not know', {
        network: shortId(networkId),
        endpoint: shortId(endpointId),
      });
    }
  }

  listNetworks(): (NetworkRecord & Stamped)[] {
    return this.store.listNetworks();
  }

  listEndpoints(networkId: string): (EndpointRecord & Stamped)[] {
    return this.store.listEndpoints(networkId);
  }

  network(networkId: string): (NetworkRecord & Stamped) | null {
    return this.store.getNetwork(networkId);
  }

  // ---- helpers ----

  private requireNetwork(networkId: string, driver: DriverKind): NetworkRecord {
    const network = this.store.getNetwork(networkId);
    if (network === null || network.spec.mode.kind !== driver) {
      throw notFound(`network ${shortId(networkId)} is not a lanplug-${driver} network known to this host`);
    }
    return network;
  }

  /**
   * Creates the endpoint's link, tried once more when the kernel refuses for
   * a reason lanplug can remove:
   * - a link of that name and of this daemon's group exists: a leftover of an
   *   earlier attempt for this endpoint (names come from the endpoint id), removed first;
   * - links are parked: a parked link is down and has no addresses, so it
   *   collides with nothing a new one needs, except where the kernel counts
   *   every link on a parent (passthru allows one); they go first.
   */
  private createEndpointLinkBesideParked(spec: NetworkSpec, endpoint: EndpointRecord, parent: LinkInfo): LinkInfo {
    try {
      return this.createEndpointLink(spec, endpoint, parent);
    } catch (err) {
      const existing = this.rtnl.getLink(endpoint.linkName);
      if (existing === null && this.remover.pending === 0) throw err;
      // A link of that name that is not this daemon's is not a leftover of ours to remove.
      if (existing !== null && !this.rtnl.owns(existing)) throw err;
      if (existing !== null) this.rtnl.deleteLink(existing);
      this.remover.settle();
      return this.createEndpointLink(spec, endpoint, parent);
    }
  }

  private createEndpointLink(spec: NetworkSpec, endpoint: EndpointRecord, parent: LinkInfo): LinkInfo {
    const req = endpointLinkRequest(spec, endpoint, parent, endpoint.linkName);
    try {
      return req.kind === 'macvlan' ? this.rtnl.createMacvlan(req) : this.rtnl.createIpvlan(req);
    } catch (err) {
      throw explainUnsupported(spec, err);
    }
  }

  private requireLink(endpoint: EndpointRecord): LinkInfo {
    const link = this.rtnl.getLink(endpoint.linkName);
    if (link === null)
      throw notFound(`link ${endpoint.linkName} of endpoint ${shortId(endpoint.endpointId)} is gone from the host`);
    return link;
  }

  private deleteEndpointLink(name: string): void {
    const link = this.rtnl.getLink(name);
    if (link !== null) this.rtnl.deleteLink(link);
  }

  /**
   * Releases the parent of a network that is gone; a failure is kept as a
   * leftover and logged, never thrown (it must not hide the error being reported).
   */
  private releaseOrRemember(network: NetworkRecord, why: string): void {
    const parent = ownedParent(network);
    if (parent === null) return;
    try {
      releaseParent(this.rtnl, parent, this.store.listNetworks());
    } catch (err) {
      const reason = withContext(why, err).message;
      this.store.putLeftover({ kind: 'parent', name: parent.name, parent, networkId: network.spec.networkId, reason });
      this.log.error('could not remove parent link', { parent: parent.name, error: reason });
    }
  }

  /** Gratuitous ARP / unsolicited NA with the container's MAC, in the background; a failure is only logged. */
  private announceEndpoint(spec: NetworkSpec, endpoint: EndpointRecord, parent: LinkInfo): void {
    if (this.announcer === null || spec.announce.count === 0 || spec.parent.kind === 'private') return;
    try {
      const link = this.lanLink(spec, parent);
      const mac = endpoint.mac ?? link?.mac ?? null; // ipvlan: the parent's MAC
      const addresses = [endpoint.ipv4?.address, endpoint.ipv6?.address].filter((a): a is IpAddress => a !== undefined);
      if (link !== null && mac !== null) this.announcer.announce(link, mac, addresses, spec.announce);
    } catch (err) {
      this.log.warn('could not announce an endpoint', { endpoint: shortId(endpoint.endpointId), error: String(err) });
    }
  }

  /** A route that will not go is only logged: reconcile compares the routes with the endpoints. */
  private removeRoutesQuietly(spec: NetworkSpec, endpoint: EndpointRecord): void {
    try {
      removeRoutes(this.rtnl, spec, wantedRoutes(spec, [endpoint]));
    } catch (err) {
      this.log.warn('could not remove a host-access route; reconcile retries', {
        endpoint: shortId(endpoint.endpointId),
        error: String(err),
      });
    }
  }

  /** On the undo path of a failed create: the shim, if it was made, goes again. */
  private removeShimQuietly(spec: NetworkSpec): void {
    if (spec.hostAccess === null) return;
    try {
      this.deleteEndpointLink(shimLinkName(spec.networkId));
    } catch (err) {
      const name = shimLinkName(spec.networkId);
      this.store.putLeftover({ kind: 'shim', name, networkId: spec.networkId, reason: String(err) });
      this.log.error('could not remove the host-access shim', { shim: name, error: String(err) });
    }
  }

  /** Parents lanplug made that the store still knows: used by a network, or waiting to be removed. */
  private lanplugParents(leftovers: readonly Leftover[]): Set<string> {
    const names = this.store.listNetworks().flatMap((n) => (n.parentCreated ? [n.spec.parent.name] : []));
    return new Set([...names, ...leftovers.flatMap((l) => (l.kind === 'parent' ? [l.name] : []))]);
  }
}

function endpointLeftover(
  endpoint: Pick<EndpointRecord, 'networkId' | 'endpointId' | 'linkName'>,
  reason: string,
): Leftover {
  return {
    kind: 'endpoint-link',
    name: endpoint.linkName,
    networkId: endpoint.networkId,
    endpointId: endpoint.endpointId,
    reason,
  };
}

/** Ids become link names and state keys: anything but a Docker id is refused before it is used. */
function checkIds(networkId: string, endpointId: string): void {
  checkDockerId(networkId, 'network id');
  checkDockerId(endpointId, 'endpoint id');
}

/** The endpoint's link as the network's mode makes it, under `name`. */
function endpointLinkRequest(
  spec: NetworkSpec,
  endpoint: EndpointRecord,
  parent: LinkInfo,
  name: string,
): EndpointLinkRequest {
  const common = { name, parentIndex: parent.index, ...(spec.mtu === null ? {} : { mtu: spec.mtu }) };
  if (spec.mode.kind === 'macvlan')
    return {
      kind: 'macvlan',
      ...common,
      mode: spec.mode.mode,
      ...(endpoint.mac === null ? {} : { mac: endpoint.mac }),
    };
  return { kind: 'ipvlan', ...common, mode: spec.mode.mode, flag: spec.mode.flag };
}

/** The one piece of context this layer adds to a failure: which network, on which parent. */
function inNetwork(spec: NetworkSpec, err: unknown): LanplugError {
  if (err instanceof LanplugError && (err.code === 'InvalidArgument' || err.code === 'Unsupported')) return err;
  return withContext(`network ${shortId(spec.networkId)} on parent ${spec.parent.name}`, err);
}

/** Docker 20.10's rule: the MAC follows the IPv4 address; without one, a random local MAC. */
function deriveMac(request: CreateEndpointRequest): string {
  return request.ipv4 === null ? randomMac() : macFromIpv4(request.ipv4.address);
}

function joinAnswer(spec: NetworkSpec, endpoint: EndpointRecord): JoinResult {
  const answer: JoinResult = { linkName: endpoint.linkName, gatewayIpv4: null, gatewayIpv6: null, staticRoutes: [] };
  if (spec.internal) return answer;
  if (spec.mode.kind === 'ipvlan' && spec.mode.mode !== 'l2') {
    // l3/l3s route through the parent's stack: no gateway, an on-link default route.
    answer.staticRoutes = [
      ...(endpoint.ipv4 === null ? [] : [connectedDefault('0.0.0.0/0')]),
      ...(endpoint.ipv6 === null ? [] : [connectedDefault('::/0')]),
    ];
    return answer;
  }
  answer.gatewayIpv4 = gatewayFor(spec.ipv4, endpoint.ipv4);
  answer.gatewayIpv6 = gatewayFor(spec.ipv6, endpoint.ipv6);
  return answer;
}

function connectedDefault(prefix: string): StaticRoute {
  return { destination: parsePrefix(prefix), kind: 'connected', nextHop: null };
}

/** The gateway of the subnet that holds the endpoint's address (same length, containing it). */
function gatewayFor(subnets: readonly Subnet[], address: IpPrefix | null): IpAddress | null {
  if (address === null) return null;
  const subnet = subnets.find(
    (s) => s.pool.prefixLength === address.prefixLength && prefixContains(s.pool, address.address),
  );
  return subnet?.gateway ?? null;
}

/** EOPNOTSUPP on creating an endpoint link means the kernel lacks the link kind: say so plainly. */
function explainUnsupported(spec: NetworkSpec, err: unknown): unknown {
  const kind = spec.mode.kind;
  if (err instanceof LanplugError && err.errno === EOPNOTSUPP) {
    return new LanplugError(
      'Unsupported',
      `cannot create ${kind} link on ${spec.parent.name}: this kernel has no ${kind} support (CONFIG_${kind.toUpperCase()})`,
      {
        errno: err.errno,
        cause: err,
      },
    );
  }
  return err;
}
