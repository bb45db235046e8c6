/**
 * What `lanplug ls` shows, built by the daemon from its store and from what
 * dockerd says of each network (the containers' ids and names, the network's
 * name and IPAM driver): every endpoint with its addresses and where they came
 * from, and the LAN devices lanplug heard using addresses of its pools. Plain
 * data (strings, numbers, null), so its JSON form is exactly what
 * `lanplug ls --json` prints.
 */
import { stateAt } from '../dhcp/lease-state';
import { INFINITE_SECONDS, leaseExpiresAt, type LeaseRecord, type LeaseState } from '../model/lease';
import type { LearnedAddress } from '../driver/slaac';
import type { EndpointRecord, LearnedDns, NetworkRecord } from '../model/network';
import { formatPrefix, type IpAddress } from '../net/address';
import type { IdentityReservation } from '../state/identity-store';
import type { LanSighting } from '../state/store';

/**
 * Where an endpoint's addresses came from: Docker's own IPAM, lanplug's IPAM driver on this host's
 * store or on shared pools (etcd), the LAN's DHCP server, a CNI configuration; unknown when
 * dockerd did not answer and lanplug's store cannot tell Docker's IPAM from another.
 */
export type AddressSource = 'docker-ipam' | 'lanplug-ipam' | 'shared-pool' | 'dhcp' | 'cni' | 'unknown';

export interface LeaseRow {
  family: 4 | 6;
  address: string;
  state: LeaseState;
  /** ISO 8601; null for an infinite lease. */
  expires: string | null;
}

export interface EndpointRow {
  networkId: string;
  /** Docker's name for the network, the CNI configuration's name; null when dockerd did not say. */
  network: string | null;
  driver: string;
  parent: string;
  mode: string;
  endpointId: string;
  containerId: string | null;
  containerName: string | null;
  /** `--driver-opt lanplug.identity` (or `lanplug.dhcp.id`): the name its MAC and DHCP ids follow. */
  identity: string | null;
  mac: string | null;
  ipv4: string | null;
  ipv6: string | null;
  source: AddressSource;
  leases: LeaseRow[];
  /** Renewals that failed since the last success (DHCP only; 0 otherwise). */
  renewalFailures: number;
  /** The Docker host's own addresses on this network (host access), null when it has none. */
  hostAccess: { ipv4: string | null; ipv6: string | null } | null;
  /**
   * `-o ipv6=slaac`: the IPv6 addresses the container formed from the LAN router's advertisements, as
   * its kernel has them now (Docker does not know them); null on other networks, or when the container's
   * namespace could not be read.
   */
  slaac: { address: string; state: LearnedAddress['state'] }[] | null;
  /**
   * `-o ipv6=slaac`: the DNS servers and search list the container's LAN offered it (the router's
   * RDNSS/DNSSL, a DHCPv6 server's); null on other networks and before any was heard.
   */
  slaacDns: LearnedDns | null;
  /** The last LAN device seen using one of this endpoint's addresses. */
  lastConflict: { address: string; mac: string; how: string; at: string } | null;
}

export interface LanDeviceRow {
  address: string;
  mac: string;
  how: string;
  firstSeen: string;
  lastSeen: string;
  networkId: string | null;
  /** The container whose address the device claimed (a device answering a probe claimed none). */
  claimed: { endpointId: string; containerId: string | null; containerName: string | null } | null;
}

/** An identity's reservation on a network (`lanplug ls --identities`; ipam/reservations.ts). */
export interface IdentityRow {
  networkId: string;
  network: string | null;
  /** The `lanplug.identity` name. */
  name: string;
  mac: string | null;
  ipv4: string | null;
  ipv6: string | null;
  clientId: string;
  duid: string;
  /** The container holding it now; null while none does. */
  heldBy: { endpointId: string; containerName: string | null } | null;
  /** When a container last held it (ISO 8601). */
  lastSeen: string;
  /** When it goes if no container takes it again (ISO 8601); null while held. */
  expires: string | null;
}

export interface Listing {
  endpoints: EndpointRow[];
  lan: LanDeviceRow[];
  /** The identities' reservations; [] from a daemon older than them. */
  identities: IdentityRow[];
  /** Why container names and address sources are missing: dockerd did not answer. Null when it did. */
  dockerError: string | null;
}

/** What dockerd says of one of its networks (api/docker/engine.ts asks it). */
export interface DockerView {
  name: string | null;
  /** `default` for Docker's own IPAM. */
  ipamDriver: string | null;
  /** Endpoint id -> the container attached by it. */
  containers: ReadonlyMap<string, { containerId: string; name: string | null }>;
}

export interface ListingInput {
  networks: readonly NetworkRecord[];
  endpoints: readonly EndpointRecord[];
  leases: readonly LeaseRecord[];
  sightings: readonly LanSighting[];
  /** Docker's view of each network it was asked about (null: Docker does not know it). */
  views: ReadonlyMap<string, DockerView | null>;
  /** Whether lanplug's IPAM driver keeps its pools on etcd (`--store etcd://`). */
  sharedPools: boolean;
  /** Whether an address is claimed in one of this host's lanplug IPAM pools. */
  inLocalPool: (address: IpAddress) => boolean;
  dockerError: string | null;
  now: number;
  /** What an `-o ipv6=slaac` endpoint's container learned (read in its namespace); null when unknown. */
  learnedIpv6?: (network: NetworkRecord, endpoint: EndpointRecord) => LearnedAddress[] | null;
  reservations?: readonly IdentityReservation[];
  /** `--identity-expire`, for each idle reservation's expiry. */
  identityExpireMs?: number;
}

export function buildListing(input: ListingInput): Listing {
  const networks = new Map(input.networks.map((n) => [n.spec.networkId, n]));
  const leases = new Map(input.leases.map((l) => [`${l.networkId}/${l.endpointId}`, l]));
  const endpoints = input.endpoints.flatMap((ep) => {
    const network = networks.get(ep.networkId);
    return network === undefined
      ? []
      : [endpointRow(input, network, ep, leases.get(`${ep.networkId}/${ep.endpointId}`))];
  });
  const holders = new Map<string, EndpointRow>();
  for (const row of endpoints)
    for (const address of [row.ipv4, row.ipv6]) if (address !== null) holders.set(bare(address), row);
  const lan = input.sightings.map((s): LanDeviceRow => {
    const holder = s.networkId === null ? undefined : holders.get(s.address);
    return {
      address: s.address,
      mac: s.mac,
      how: s.how,
      firstSeen: iso(s.firstSeen),
      lastSeen: iso(s.lastSeen),
      networkId: s.networkId,
      claimed:
        holder === undefined
          ? null
          : { endpointId: holder.endpointId, containerId: holder.containerId, containerName: holder.containerName },
    };
  });
  const identities = (input.reservations ?? []).map((r) => identityRow(input, r, endpoints));
  return { endpoints, lan, identities, dockerError: input.dockerError };
}

function identityRow(input: ListingInput, r: IdentityReservation, endpoints: readonly EndpointRow[]): IdentityRow {
  const holder = r.endpointId === null ? undefined : endpoints.find((e) => e.endpointId === r.endpointId);
  const network = input.networks.find((n) => n.spec.networkId === r.networkId);
  return {
    networkId: r.networkId,
    network: network?.cniName ?? input.views.get(r.networkId)?.name ?? null,
    name: r.name,
    mac: r.mac,
    ipv4: r.ipv4,
    ipv6: r.ipv6,
    clientId: r.clientId,
    duid: r.duid,
    heldBy: r.endpointId === null ? null : { endpointId: r.endpointId, containerName: holder?.containerName ?? null },
    lastSeen: iso(r.lastSeen),
    expires:
      r.endpointId !== null || input.identityExpireMs === undefined ? null : iso(r.lastSeen + input.identityExpireMs),
  };
}

function endpointRow(
  input: ListingInput,
  network: NetworkRecord,
  ep: EndpointRecord,
  lease: LeaseRecord | undefined,
): EndpointRow {
  const { spec } = network;
  const view = input.views.get(spec.networkId) ?? null;
  const attached = view?.containers.get(ep.endpointId);
  const addresses = [ep.ipv4?.address.text, ep.ipv6?.address.text].filter((a): a is string => a !== undefined);
  const seen = input.sightings.filter((s) => addresses.includes(s.address)).sort((a, b) => b.lastSeen - a.lastSeen)[0];
  return {
    networkId: spec.networkId,
    network: network.cniName ?? view?.name ?? null,
    driver: `lanplug-${spec.mode.kind}`,
    parent: spec.parent.name,
    mode: spec.mode.kind === 'macvlan' ? spec.mode.mode : `${spec.mode.mode}/${spec.mode.flag}`,
    endpointId: ep.endpointId,
    containerId: ep.sandbox?.containerId ?? attached?.containerId ?? null,
    containerName: attached?.name ?? null,
    identity: ep.identity ?? null,
    mac: ep.mac,
    ipv4: ep.ipv4 === null ? null : formatPrefix(ep.ipv4),
    ipv6: ep.ipv6 === null ? null : formatPrefix(ep.ipv6),
    source: addressSource(input, network, ep, view),
    leases: (lease?.leases ?? []).map((l) => ({
      family: l.family,
      address: formatPrefix(l.address),
      state: stateAt(l, input.now),
      expires: l.leaseSeconds === INFINITE_SECONDS ? null : iso(leaseExpiresAt(l)),
    })),
    renewalFailures: lease?.failures ?? 0,
    hostAccess:
      spec.hostAccess === null
        ? null
        : { ipv4: spec.hostAccess.ipv4?.text ?? null, ipv6: spec.hostAccess.ipv6?.text ?? null },
    slaac:
      (spec.slaac ?? null) === null
        ? null
        : (input.learnedIpv6?.(network, ep)?.map((a) => ({
            address: `${a.address}/${a.prefixLength}`,
            state: a.state,
          })) ?? null),
    slaacDns: (spec.slaac ?? null) === null ? null : (ep.learnedDns ?? null),
    lastConflict:
      seen === undefined ? null : { address: seen.address, mac: seen.mac, how: seen.how, at: iso(seen.lastSeen) },
  };
}

/**
 * The network's record says CNI and DHCP; Docker's view names the IPAM driver of the rest ('default'
 * is its own). Without that view, an address claimed in this host's pools is lanplug IPAM's.
 */
function addressSource(
  input: ListingInput,
  network: NetworkRecord,
  ep: EndpointRecord,
  view: DockerView | null,
): AddressSource {
  if (network.cniName !== undefined) return 'cni';
  if (network.spec.dhcp !== null) return 'dhcp';
  const lanplugIpam = input.sharedPools ? 'shared-pool' : 'lanplug-ipam';
  if (view !== null && view.ipamDriver !== null)
    return view.ipamDriver === 'default' || view.ipamDriver === '' ? 'docker-ipam' : lanplugIpam;
  const address = ep.ipv4?.address ?? ep.ipv6?.address;
  if (address !== undefined && input.inLocalPool(address)) return 'lanplug-ipam';
  return 'unknown';
}

function bare(prefix: string): string {
  return prefix.split('/')[0] ?? prefix;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}
