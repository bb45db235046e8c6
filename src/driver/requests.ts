/**
 * The driver's operations as typed requests and answers. Front ends (Docker's
 * remote API now, CNI later) translate their wire formats into these; nothing
 * here knows Docker's JSON.
 */
import type { DriverKind, Sandbox, Subnet } from '../model/network';
import type { IpAddress, IpPrefix } from '../net/address';

export interface CreateNetworkRequest {
  networkId: string;
  driver: DriverKind;
  /** The user's `-o key=value` options, untouched. */
  options: Readonly<Record<string, string>>;
  ipv4: Subnet[];
  ipv6: Subnet[];
  internal: boolean;
  /** `--aux-address name=address` of every subnet: addresses IPAM never gives a container. */
  auxAddresses: ReadonlyMap<string, IpAddress>;
  /** Set by the CNI front end: the network configuration's `name`. */
  cniName?: string;
  /** The IPAM driver's address space of the network's pools (Docker's IPv4Data); absent when unknown. */
  addressSpace?: string;
}

export interface CreateEndpointRequest {
  networkId: string;
  endpointId: string;
  /** "172.16.86.2/24" style, as assigned by IPAM; null when the endpoint has none of that family. */
  ipv4: IpPrefix | null;
  ipv6: IpPrefix | null;
  /** The MAC the user asked for (`--mac-address`), or null. */
  mac: string | null;
  /**
   * Per-endpoint options (`--driver-opt k=v`, compose `driver_opts`) lanplug
   * reads, unvalidated: `lanplug.dhcp.id` and `lanplug.dhcp.hostname`.
   */
  endpointOptions?: Readonly<Record<string, string>>;
  /** Set by the CNI front end: the runtime's container and interface the link is for. */
  sandbox?: Sandbox;
}

export interface CreateEndpointResult {
  /** The MAC lanplug assigned, when the request had none (null for ipvlan). */
  assignedMac: string | null;
  /** The IPv4 address lanplug found (DHCP), when the request had none. */
  assignedIpv4?: IpPrefix;
  assignedIpv6?: IpPrefix;
}

export interface StaticRoute {
  destination: IpPrefix;
  /** 'connected' = on-link through the endpoint's interface; 'nexthop' = via an address. */
  kind: 'connected' | 'nexthop';
  nextHop: IpAddress | null;
}

export interface JoinResult {
  /** Name of the link in the daemon's namespace, for the runtime to move into the container. */
  linkName: string;
  gatewayIpv4: IpAddress | null;
  gatewayIpv6: IpAddress | null;
  staticRoutes: StaticRoute[];
}

/** One endpoint of one network, as every later call names it. */
export interface EndpointRef {
  networkId: string;
  endpointId: string;
}

/** Join's: the container's network namespace (Docker's SandboxKey) comes with it. */
export interface JoinRef extends EndpointRef {
  sandboxKey: string | null;
}
