/**
 * The store: the truth for intent (the kernel is the truth for links).
 *
 * Everything is written before the kernel change it describes, so that after
 * a crash the daemon knows which links are its own. The interface is small on
 * purpose, so that a distributed store can implement it later.
 */
import type { EndpointRecord, NetworkRecord } from './records';

export interface Store {
  getNetwork(networkId: string): NetworkRecord | null;
  listNetworks(): NetworkRecord[];
  /** Inserts; throws Conflict if a network with that id exists. */
  insertNetwork(record: NetworkRecord): void;
  deleteNetwork(networkId: string): void;

  getEndpoint(networkId: string, endpointId: string): EndpointRecord | null;
  listEndpoints(networkId: string): EndpointRecord[];
  /** Inserts or replaces. */
  putEndpoint(record: EndpointRecord): void;
  deleteEndpoint(networkId: string, endpointId: string): void;

  /** Runs `fn` atomically: all of its writes land, or none. */
  transaction<T>(fn: () => T): T;
  close(): void;
}
