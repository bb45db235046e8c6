/**
 * The store: the truth for intent (the kernel is the truth for links).
 *
 * Everything is written before the kernel change it describes, so that after
 * a crash the daemon knows which links are its own. The interface is small on
 * purpose, so that a distributed store can implement it later.
 *
 * A row that cannot be read is an error naming it, never an absent network.
 */
import type { EndpointRecord, Leftover, NetworkRecord, Stamped } from '../model/network';

export interface Store {
  getNetwork(networkId: string): (NetworkRecord & Stamped) | null;
  listNetworks(): (NetworkRecord & Stamped)[];
  /** Inserts; throws Conflict if a network with that id exists. */
  insertNetwork(record: NetworkRecord): void;
  /** Deletes the network and its endpoints. */
  deleteNetwork(networkId: string): void;

  getEndpoint(networkId: string, endpointId: string): (EndpointRecord & Stamped) | null;
  listEndpoints(networkId: string): (EndpointRecord & Stamped)[];
  listAllEndpoints(): (EndpointRecord & Stamped)[];
  /** Inserts or replaces. */
  putEndpoint(record: EndpointRecord): void;
  deleteEndpoint(networkId: string, endpointId: string): void;

  listLeftovers(): Leftover[];
  /** Inserts or replaces (by link name). */
  putLeftover(leftover: Leftover): void;
  deleteLeftover(name: string): void;

  /** Runs `fn` atomically: all of its writes land, or none. */
  transaction<T>(fn: () => T): T;
  close(): void;
}
