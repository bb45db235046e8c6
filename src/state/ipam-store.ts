/**
 * The IPAM driver's side of the store: pools and the addresses claimed in
 * them. `claimAddress` is create-if-absent: it answers false instead of
 * claiming an address twice, which is what keeps two containers (or two
 * hosts, on a distributed store) from ever holding one address.
 */
import type { AddressKind, PoolRecord } from '../model/ipam';
import type { Stamped } from '../model/network';
import type { IpAddress } from '../net/address';

export interface IpamStore {
  /** Inserts; throws Conflict when a pool with that id exists. */
  insertPool(pool: PoolRecord): void;
  getPool(poolId: string): (PoolRecord & Stamped) | null;
  listPools(): (PoolRecord & Stamped)[];
  /** Deletes the pool and every address claimed in it. */
  deletePool(poolId: string): void;

  /** Claims `address` in the pool (for `owner`, when one is named); false when it is already claimed. */
  claimAddress(poolId: string, address: IpAddress, kind: AddressKind, owner?: string): boolean;
  /** The claims of exactly this owner (`…/eth1` is not `…/eth10`). */
  claimsOf(owner: string): { poolId: string; address: IpAddress }[];
  /** The claims whose owner starts with `prefix`: a whole network's, for GC (end the prefix with its separator). */
  ownedClaims(prefix: string): { poolId: string; address: IpAddress; owner: string }[];
  /**
   * The pools in which `address` is claimed: pools of one address in
   * different address spaces (a Docker network's and a CNI network's on one
   * LAN) must not hand it out twice either.
   */
  poolsClaiming(address: IpAddress): string[];
  /** False when it was not claimed. */
  releaseAddress(poolId: string, address: IpAddress): boolean;
  claimedAddresses(poolId: string): { address: IpAddress; kind: AddressKind }[];
  /** The claims the Docker IPAM driver made for endpoints (no owner: not a CNI attachment's), with their age. */
  dockerEndpointClaims(): { poolId: string; address: IpAddress; createdAt: number }[];
}
