/**
 * What lanplug knows about a network and its endpoints once a request has
 * been validated: the vocabulary the driver acts on and the store keeps.
 * Front ends (Docker's remote API, later CNI) never see these shapes on the
 * wire; they translate into the driver's requests (driver/requests.ts).
 */
import type { IpvlanFlag, IpvlanMode } from '../link/ipvlan';
import type { MacvlanMode } from '../link/macvlan';
import type { IpAddress, IpPrefix } from '../net/address';

/** The two drivers lanplug serves: `lanplug-macvlan` and `lanplug-ipvlan`. */
export type DriverKind = 'macvlan' | 'ipvlan';
export const DRIVER_KINDS: readonly DriverKind[] = ['macvlan', 'ipvlan'];

/** The kind of link a network's endpoints get, with its mode. */
export type LinkMode = { kind: 'macvlan'; mode: MacvlanMode } | { kind: 'ipvlan'; mode: IpvlanMode; flag: IpvlanFlag };

export interface Subnet {
  pool: IpPrefix;
  /** Bare gateway address, or null when the subnet has none. */
  gateway: IpAddress | null;
}

/**
 * Where a network's links hang from.
 * - existing: a link the user named and that is there; lanplug never deletes it.
 * - vlan: an 802.1Q sub-interface `base.id` lanplug creates when missing.
 * - private: no parent was given; lanplug makes a link of its own (`dm-<id>`).
 */
export type ParentPlan =
  | { kind: 'existing'; name: string }
  | { kind: 'vlan'; name: string; base: string; vlanId: number }
  | { kind: 'private'; name: string };

/**
 * Host access: the Docker host's own addresses on this network (the `host` and
 * `host6` aux addresses), put on a shim link beside the containers'.
 */
export interface HostAccess {
  ipv4: IpAddress | null;
  ipv6: IpAddress | null;
}

/**
 * What lanplug does with an address the LAN already uses: refuse it (the
 * default), log a warning and go on, or not look at all.
 */
export type ConflictPolicy = 'refuse' | 'warn' | 'off';

/**
 * Containers take their addresses from the LAN's DHCP servers, within
 * `timeoutMs`, asked by one of two parts of lanplug:
 * - 'driver': `--ipam-driver null -o dhcp=true` (IPv4): the network driver
 *   asks at CreateEndpoint and answers Docker with the address;
 * - 'ipam': `--ipam-driver lanplug-dhcp` (IPv4, and IPv6 with `--ipv6`): the
 *   IPAM driver asks at RequestAddress with the MAC Docker sends it, and the
 *   network driver takes over the lease at CreateEndpoint.
 */
export interface DhcpPolicy {
  ipv4: boolean;
  ipv6: boolean;
  timeoutMs: number;
  askedBy: 'driver' | 'ipam';
}

/**
 * `-o ipv6=slaac`: the container's interface takes IPv6 from the LAN router's advertisements
 * (address by stable-privacy autoconfiguration, default route, MTU), not from any IPAM.
 */
export interface SlaacPolicy {
  /** `-o ipv6.rt_info_max_plen=`: the longest prefix a Route Information option may install (0: none). */
  rtInfoMaxPlen: number;
}

/** Gratuitous ARP / unsolicited NA on attach: how many (0 = none) and how far apart. */
export interface AnnouncePolicy {
  count: number;
  intervalMs: number;
}

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
  /** null when the network has no host access. */
  hostAccess: HostAccess | null;
  conflict: ConflictPolicy;
  announce: AnnouncePolicy;
  /** null: addresses come from Docker's IPAM, as on any network. */
  dhcp: DhcpPolicy | null;
  /** Absent (records older than the option) or null: no IPv6 from the LAN's router advertisements. */
  slaac?: SlaacPolicy | null;
  /** `-o lanplug.mdns=true`: lanplug answers `<name>.local` for its named containers; absent: no. */
  mdns?: boolean;
}

export interface NetworkRecord {
  spec: NetworkSpec;
  /**
   * True when lanplug created the parent link (an 802.1Q sub-interface or a
   * private parent). Only then may lanplug delete it, and only when no other
   * network uses it.
   */
  parentCreated: boolean;
  /**
   * The `name` of the CNI network configuration this network was made from
   * (at a CNI ADD); absent for networks Docker made. Docker is never asked
   * about a CNI network, and it goes with its last attachment.
   */
  cniName?: string;
}

/** Where a CNI attachment lives: the runtime's container, namespace file and interface name. */
export interface Sandbox {
  containerId: string;
  netns: string;
  ifname: string;
}

export interface EndpointRecord {
  networkId: string;
  endpointId: string;
  linkName: string;
  mac: string | null;
  ipv4: IpPrefix | null;
  ipv6: IpPrefix | null;
  /** A CNI attachment's container side; absent for Docker's endpoints (Docker moves and names their links). */
  sandbox?: Sandbox;
  /**
   * The namespace file Docker's Join named (SandboxKey). Docker moves the link back out before
   * DeleteEndpoint; a dockerd killed while containers ran leaves the sandbox, with lanplug's link
   * in it, and DeleteEndpoint looks for the link there (see removeLeftInSandbox).
   */
  dockerSandboxKey?: string;
  /** `--driver-opt lanplug.identity` (or `lanplug.dhcp.id`): the name the endpoint's MAC and DHCP ids follow. */
  identity?: string;
  /** `-o ipv6=slaac`: the DNS servers and search list the LAN offered the container (reported, not configured). */
  learnedDns?: LearnedDns;
}

/**
 * DNS configuration a container's LAN offered it: RDNSS/DNSSL options of the router's advertisements
 * (RFC 8106), a DHCPv6 server's answer (the `O` or `M` flag). lanplug reports it; the container's
 * resolver stays Docker's (docs/slaac.md says why).
 */
export interface LearnedDns {
  servers: string[];
  search: string[];
  /** Where they were learnt, in the order first heard. */
  from: ('ra' | 'dhcpv6')[];
}

/** `a` with what `b` adds, nothing twice: servers and search lists as a resolver reads them, first heard first. */
export function mergeLearnedDns(a: LearnedDns | undefined, b: LearnedDns): LearnedDns {
  const union = <T>(x: readonly T[], y: readonly T[]): T[] => [...new Set([...x, ...y])];
  return a === undefined
    ? b
    : { servers: union(a.servers, b.servers), search: union(a.search, b.search), from: union(a.from, b.from) };
}

/** The addresses an endpoint holds (or a request gives it), IPv4 first. */
export function addressesOf(endpoint: Pick<EndpointRecord, 'ipv4' | 'ipv6'>): IpAddress[] {
  return [endpoint.ipv4?.address, endpoint.ipv6?.address].filter((a): a is IpAddress => a !== undefined);
}

/** Docker ids are 64 hex characters; the first 12 are what `docker network ls` shows, and what lanplug's messages name. */
export function shortId(id: string): string {
  return id.slice(0, 12);
}

/** When the store wrote a record (ms since the epoch; 0 when unknown), filled in on read. */
export interface Stamped {
  createdAt: number;
}

/**
 * Something a teardown could not remove, kept until the reconciler manages to
 * (keyed by link name): an endpoint link, or a parent lanplug made. While a
 * parent is recorded here it stays lanplug's: a new network on it adopts it
 * instead of treating it as the user's.
 */
export type Leftover =
  | { kind: 'endpoint-link'; name: string; networkId: string; endpointId: string; reason: string }
  | { kind: 'shim'; name: string; networkId: string; reason: string }
  | {
      kind: 'parent';
      name: string;
      parent: Exclude<ParentPlan, { kind: 'existing' }>;
      networkId: string;
      reason: string;
    };
