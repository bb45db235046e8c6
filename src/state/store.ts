/**
 * The store: the truth for intent (the kernel is the truth for links).
 *
 * Everything is written before the kernel change it describes, so that after
 * a crash the daemon knows which links are its own. The interface is small on
 * purpose, so that a distributed store can implement it later.
 *
 * A row that cannot be read is an error naming it, never an absent network.
 */
import { LanplugError } from '../errors';
import type { EndpointRecord, Leftover, NetworkRecord, Stamped } from '../model/network';
import type { IdentityStore } from './identity-store';

/**
 * The refusal of an endpoint whose address another endpoint of the network holds (the store's, through
 * the unique MAC an address-derived MAC gives; the driver's, by address): it names that endpoint.
 */
export function addressHeldConflict(address: string, holder: EndpointRecord): LanplugError {
  return new LanplugError(
    'Conflict',
    `address ${address} of this network is already held by endpoint ${holder.endpointId.slice(0, 12)} (MAC ${holder.mac ?? 'none'}): Docker gave it out twice (as it can after dockerd was killed while starting containers), or forgot that endpoint (lanplug was killed while answering it; lanplug gc drops it once Docker no longer knows it); remove this container and run it again for another address`,
  );
}

export interface Store extends IdentityStore {
  getNetwork(networkId: string): (NetworkRecord & Stamped) | null;
  listNetworks(): (NetworkRecord & Stamped)[];
  /** Inserts; throws Conflict if a network with that id exists. */
  insertNetwork(record: NetworkRecord): void;
  /** Deletes the network, its endpoints and its identities' reservations (those keeping IPAM claims: at ReleasePool). */
  deleteNetwork(networkId: string): void;

  getEndpoint(networkId: string, endpointId: string): (EndpointRecord & Stamped) | null;
  listEndpoints(networkId: string): (EndpointRecord & Stamped)[];
  listAllEndpoints(): (EndpointRecord & Stamped)[];
  /** The network's endpoints that hold one of `record`'s addresses (indexed: cheap at every CreateEndpoint). */
  endpointsHoldingAddressesOf(
    networkId: string,
    record: Pick<EndpointRecord, 'ipv4' | 'ipv6'>,
  ): (EndpointRecord & Stamped)[];
  /** Inserts or replaces; throws Conflict (addressHeldConflict) if another endpoint of the network holds its address and MAC. */
  putEndpoint(record: EndpointRecord): void;
  deleteEndpoint(networkId: string, endpointId: string): void;

  /** Network id -> the Docker engine (its /info ID) seen to know it (api/docker/forgotten.ts). */
  networkEngines(): Map<string, string>;
  setNetworkEngine(networkId: string, engineId: string): void;
  /** Small facts about this state directory: its link groups, the Docker engine its networks came from. */
  getMeta(key: string): string | null;
  setMeta(key: string, value: string): void;

  listLeftovers(): Leftover[];
  /** Inserts or replaces (by link name). */
  putLeftover(leftover: Leftover): void;
  deleteLeftover(name: string): void;

  /** Grows with every write to an endpoint row: unchanged means the endpoints are as last read. */
  readonly endpointGeneration: number;

  /** Runs `fn` atomically: all of its writes land, or none. */
  transaction<T>(fn: () => T): T;
  close(): void;
}

/** A device on the LAN seen using an address: by answering a probe, or by claiming a container's address. */
export interface LanSighting {
  address: string;
  mac: string;
  how: string;
  /** The lanplug network whose address it was, when it was one of its containers'. */
  networkId: string | null;
  firstSeen: number;
  lastSeen: number;
}

/** What lanplug remembers of the LAN: for `lanplug doctor`, which runs as a process of its own. */
export interface LanSightings {
  recordSighting(sighting: Omit<LanSighting, 'firstSeen' | 'lastSeen'>, at: number): void;
  listSightings(): LanSighting[];
}
