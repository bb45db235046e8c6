/**
 * The driver's own vocabulary. Front ends (Docker's remote API now, CNI
 * later) translate their wire formats into these requests; nothing here
 * knows about Docker's JSON.
 */
import type { IpAddress, IpPrefix } from '../ipam/address';
import type { IpvlanFlag, IpvlanMode, MacvlanMode } from '../netlink/rtnl';

export type DriverKind = 'macvlan' | 'ipvlan';

export type LinkMode =
  | { kind: 'macvlan'; mode: MacvlanMode }
  | { kind: 'ipvlan'; mode: IpvlanMode; flag: IpvlanFlag };

export interface Subnet {
  pool: IpPrefix;
  /** Bare gateway address, or null when the subnet has none. */
  gateway: IpAddress | null;
}

export interface CreateNetworkRequest {
  networkId: string;
  driver: DriverKind;
  /** The user's `-o key=value` options, untouched. */
  options: Readonly<Record<string, string>>;
  ipv4: Subnet[];
  ipv6: Subnet[];
  internal: boolean;
}

/**
 * Where a network's links hang from.
 * - existing: a link the user named and that is there; lanplug never deletes it.
 * - vlan: an 802.1Q sub-interface `base.id`; lanplug creates it when missing.
 * - private: no parent was given; lanplug makes a link of its own (`dm-<id>`).
 */
export type ParentPlan =
  | { type: 'existing'; name: string }
  | { type: 'vlan'; name: string; base: string; vlanId: number }
  | { type: 'private'; name: string };

/** The validated, complete description of a network: what setup acts on. */
export interface NetworkSpec {
  networkId: string;
  mode: LinkMode;
  parent: ParentPlan;
  /** MTU for every endpoint link, or null to inherit the parent's. */
  mtu: number | null;
  internal: boolean;
  ipv4: Subnet[];
  ipv6: Subnet[];
}

export interface CreateEndpointRequest {
  networkId: string;
  endpointId: string;
  /** "172.16.86.2/24" style, as assigned by IPAM; null when the endpoint has none of that family. */
  ipv4: IpPrefix | null;
  ipv6: IpPrefix | null;
  /** The MAC the user asked for (`--mac-address`), or null. */
  mac: string | null;
}

export interface CreateEndpointResult {
  /** The MAC lanplug assigned, when the request had none (null for ipvlan). */
  assignedMac: string | null;
}

export interface StaticRoute {
  destination: IpPrefix;
  /** 'connected' = on-link through the endpoint's interface; 'nexthop' = via an address. */
  type: 'connected' | 'nexthop';
  nextHop: IpAddress | null;
}

export interface JoinResult {
  /** Name of the link in the daemon's namespace, for the runtime to move into the container. */
  linkName: string;
  gatewayIpv4: IpAddress | null;
  gatewayIpv6: IpAddress | null;
  staticRoutes: StaticRoute[];
}
