/**
 * The network driver behind `lanplug-macvlan` and `lanplug-ipvlan`: one
 * implementation for both, the difference carried by LinkMode. Every
 * operation takes a typed request and knows nothing of Docker's JSON.
 *
 * This class is the driver's face; each operation lives in the file of its
 * role, as moby's macvlan driver keeps its methods in _network, _endpoint,
 * _joinleave and _setup files:
 * - networks.ts: create and delete a network, its parent and shim; a network by its pool;
 * - endpoints.ts: create and delete an endpoint, a DHCP endpoint's two halves;
 * - join-leave.ts: Join and Leave, the gateways and routes of the answer;
 * - endpoint-links.ts: an endpoint's link in the kernel;
 * - lan-link.ts: the link that faces the LAN for a network, what to check at create;
 * - driver-context.ts: what they all share.
 *
 * Every operation is synchronous (rtnetlink and SQLite calls both are), so
 * one runs start to finish without another interleaving; every wait of the
 * endpoint path is the endpoint service's (endpoint/).
 *
 * Order of effects: validate fully, write the intent to the store, then
 * change the kernel; on a kernel failure undo both. Teardown goes on past a
 * failure and reports every failure at the end.
 *
 * Errors: the kernel layer names the link and the errno; this layer adds only
 * the network and its parent ("network 5e3ec79625d3 on parent eth0: ...").
 */
import type { LinkInfo } from '../link/link';
import { ImmediateRemover, type LinkRemover } from '../link/reaper';
import type { Rtnl } from '../link/rtnl';
import type { Logger } from '../log';
import type { Announcer } from '../lan/announce';
import type { AddressCheck } from '../lan/conflicts';
import type { ProbeLink } from '../lan/probe';
import type { DriverKind, EndpointRecord, LearnedDns, NetworkRecord, NetworkSpec, Stamped } from '../model/network';
import type { IpAddress, IpPrefix } from '../net/address';
import type { Store } from '../state/store';
import { checkIds, DEFAULT_FORGOTTEN_GRACE_MS, requireNetwork, type DriverContext } from './driver-context';
import * as endpoints from './endpoints';
import type { EndpointIdentity } from './identity';
import { KernelFeatures } from './features';
import * as joinLeave from './join-leave';
import * as lan from './lan-link';
import * as networks from './networks';
import type { SlaacWatch } from './slaac-watch';
import type { CreateEndpointRequest, CreateEndpointResult, CreateNetworkRequest, JoinResult } from './requests';

export type { PreparedEndpoint } from './endpoints';
export type { JoinInto } from './join-leave';

export class NetworkDriver {
  private readonly ctx: DriverContext;

  constructor(
    rtnl: Rtnl,
    store: Store,
    log: Logger,
    options: { announcer?: Announcer; remover?: LinkRemover; forgottenAfterMs?: number; slaac?: SlaacWatch } = {},
  ) {
    this.ctx = {
      rtnl,
      store,
      log,
      features: new KernelFeatures(rtnl),
      announcer: options.announcer ?? null,
      remover: options.remover ?? new ImmediateRemover(rtnl),
      forgottenAfterMs: options.forgottenAfterMs ?? DEFAULT_FORGOTTEN_GRACE_MS,
      slaac: options.slaac ?? null,
    };
  }

  // ---- networks (networks.ts) ----

  createNetwork(request: CreateNetworkRequest): void {
    networks.createNetwork(this.ctx, request);
  }

  deleteNetwork(networkId: string): void {
    networks.deleteNetwork(this.ctx, networkId);
  }

  /** What createNetwork would refuse, refused now; nothing recorded or made. */
  checkNetwork(request: CreateNetworkRequest): void {
    networks.checkNetwork(this.ctx, request);
  }

  network(networkId: string): (NetworkRecord & Stamped) | null {
    return this.ctx.store.getNetwork(networkId);
  }

  listNetworks(): (NetworkRecord & Stamped)[] {
    return this.ctx.store.listNetworks();
  }

  /** A network of this driver, as validated at create; NotFound for any other. */
  networkSpec(driver: DriverKind, networkId: string): NetworkSpec {
    return requireNetwork(this.ctx, networkId, driver).spec;
  }

  /** The lanplug network whose subnet is exactly `pool`, among those `which` accepts. */
  networkOfPool(pool: IpPrefix, which?: (network: NetworkRecord) => boolean): (NetworkRecord & Stamped) | null {
    return networks.networkOfPool(this.ctx, pool, which);
  }

  /** The lanplug-dhcp network whose pool this is (RequestAddress names only the pool). */
  dhcpNetworkOfPool(pool: IpPrefix): NetworkRecord | null {
    return networks.dhcpNetworkOfPool(this.ctx, pool);
  }

  // ---- endpoints (endpoints.ts) ----

  createEndpoint(driver: DriverKind, request: CreateEndpointRequest): CreateEndpointResult {
    return endpoints.createEndpoint(this.ctx, driver, request);
  }

  deleteEndpoint(networkId: string, endpointId: string): void {
    endpoints.deleteEndpoint(this.ctx, networkId, endpointId);
  }

  /** null for an endpoint lanplug does not know (Docker's own drivers answer an empty map then). */
  endpointInfo(networkId: string, endpointId: string): EndpointRecord | null {
    checkIds(networkId, endpointId);
    return this.ctx.store.getEndpoint(networkId, endpointId);
  }

  listEndpoints(networkId: string): (EndpointRecord & Stamped)[] {
    return this.ctx.store.listEndpoints(networkId);
  }

  /** A DHCP CreateEndpoint's first half: recorded with no address, its link up here to ask on. */
  prepareDhcpEndpoint(
    driver: DriverKind,
    request: CreateEndpointRequest,
    mac: string | null,
    identity: EndpointIdentity | null = null,
  ): endpoints.PreparedEndpoint {
    return endpoints.prepareDhcpEndpoint(this.ctx, driver, request, mac, identity);
  }

  /** The second half: the addresses the servers granted, recorded on the endpoint. */
  completeDhcpEndpoint(
    prepared: endpoints.PreparedEndpoint,
    ipv4: IpPrefix | null,
    ipv6: IpPrefix | null,
  ): EndpointRecord {
    return endpoints.completeDhcpEndpoint(this.ctx, prepared, ipv4, ipv6);
  }

  /** A DHCP server moved the container: the endpoint's address follows. */
  moveEndpointAddress(networkId: string, endpointId: string, address: IpPrefix): void {
    endpoints.moveEndpointAddress(this.ctx, networkId, endpointId, address);
  }

  noteLearnedDns(networkId: string, endpointId: string, dns: LearnedDns): void {
    endpoints.noteLearnedDns(this.ctx, networkId, endpointId, dns);
  }

  // ---- join and leave (join-leave.ts) ----

  join(
    driver: DriverKind,
    networkId: string,
    endpointId: string,
    where?: joinLeave.JoinInto | joinLeave.JoinForDocker,
  ): JoinResult {
    return joinLeave.join(this.ctx, driver, networkId, endpointId, where);
  }

  leave(networkId: string, endpointId: string): void {
    joinLeave.leave(this.ctx, networkId, endpointId);
  }

  /** Announces an endpoint's addresses on the LAN, as Join does (for a CNI DHCP attachment, leased after its Join). */
  announce(networkId: string, endpointId: string): void {
    joinLeave.announceAddresses(this.ctx, networkId, endpointId);
  }

  // ---- the LAN (lan-link.ts) ----

  /** What to check about a new endpoint's addresses before it is recorded; null when nothing. */
  addressCheck(driver: DriverKind, request: CreateEndpointRequest): AddressCheck | null {
    return lan.addressCheck(this.ctx, driver, request);
  }

  /** addressCheck for `addresses` on a network, whatever is recorded (a CNI attachment checks its own). */
  addressCheckOf(driver: DriverKind, networkId: string, addresses: readonly IpAddress[]): AddressCheck | null {
    return lan.addressCheckOf(this.ctx, driver, networkId, addresses);
  }

  /** A failed LAN check of a network's new addresses in the network's words (a parent deleted meanwhile as Join says it). */
  explainLanCheckFailure(networkId: string, err: unknown): unknown {
    return lan.explainLanCheckFailure(this.ctx, networkId, err);
  }

  /** The link that probes, announces and watches for a network; null on a parent that is down. */
  lanLink(spec: NetworkSpec, knownParent?: LinkInfo): ProbeLink | null {
    return lan.lanLink(this.ctx, spec, knownParent);
  }

  /** This daemon's LAN eyes that no network of its own needs any more go. */
  removeUnusedEyes(): void {
    lan.removeUnneededEyes(this.ctx);
  }

  /** The IPv4 subnets the host holds addresses in on a network's parent. */
  parentSubnets4(spec: NetworkSpec): IpPrefix[] {
    return lan.parentSubnets4(this.ctx, spec);
  }
}
