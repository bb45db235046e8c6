/**
 * Where the `lanplug` IPAM driver keeps its pools and the addresses claimed
 * in them. Two books: this host's SQLite store (the default), and etcd
 * (state/etcd/address-book.ts) for a fleet of hosts on one LAN that must
 * never hand out one address or MAC twice. The allocator (ipam/allocator.ts)
 * makes the same decisions on either; a book only answers whether a claim
 * went through, atomically.
 */
import type { AddressKind, PoolRecord } from '../model/ipam';
import type { IpAddress } from '../net/address';
import type { IpamStore } from './ipam-store';

/** A pool as the book knows it; on a shared book, who defined it and the gateway they gave. */
export interface BookPool extends PoolRecord {
  /** The host that created the pool; null on a single host. */
  definedBy: string | null;
  /** The gateway every host of a shared pool uses; null until the first host claimed one (always null locally). */
  gateway: IpAddress | null;
  /** The hosts whose networks use a shared pool ([] locally). */
  users: string[];
}

/** An endpoint's address a host claimed: what the orphan check and the reclaim of absent hosts look at. */
export interface OwnClaim {
  poolId: string;
  address: IpAddress;
  /** When it was claimed (ms since the epoch). */
  at: number;
  /** Tells this claim from a later claim of the same address. */
  identity: string;
  /** Frees it unless it changed since it was read; true when freed. */
  release(): Promise<boolean>;
}

export interface AddressBook {
  /** Null on a single host; this host's id when the pools are shared with other hosts. */
  readonly hostId: string | null;
  listPools(): Promise<BookPool[]>;
  getPool(poolId: string): Promise<BookPool | null>;
  /**
   * Records the pool. A shared book joins the identical pool another host defined ('joined');
   * Conflict when this host has it already.
   */
  addPool(pool: PoolRecord): Promise<'created' | 'joined'>;
  /** Drops this host's use of the pool; the pool and its claims go with its last user. Idempotent. */
  releasePool(poolId: string): Promise<void>;
  /**
   * Claims `address`; false when it is taken. On a shared book gateway and aux claims are the
   * pool's, not a host's (every host's network asks for them), and an endpoint claim with a MAC
   * also claims the MAC on the LAN (Conflict when another endpoint has it).
   */
  claim(poolId: string, address: IpAddress, kind: AddressKind, mac: string | null): Promise<boolean>;
  /**
   * False when it was not claimed (or, shared, is the pool's or another host's: left as it is).
   * `identity` (claimIdentity's): only that claim is freed, not a later claim of the address.
   */
  release(poolId: string, address: IpAddress, identity?: string): Promise<boolean>;
  /**
   * What tells this host's claim of `address` from a later claim of it (OwnClaim.identity); null when
   * this host holds no claim of it. A give-back made again after its answer was lost gives it to release.
   */
  claimIdentity(poolId: string, address: IpAddress): Promise<string | null>;
  claimed(poolId: string): Promise<{ address: IpAddress; kind: AddressKind }[]>;
  /** This host's endpoint claims (not gateways, aux entries or a CNI attachment's). */
  ownEndpointClaims(): Promise<OwnClaim[]>;
}

/** The single-host book: the SQLite store, whose calls are synchronous and atomic already. */
export class LocalAddressBook implements AddressBook {
  readonly hostId = null;

  constructor(private readonly store: IpamStore) {}

  listPools(): Promise<BookPool[]> {
    return Promise.resolve(this.store.listPools().map(local));
  }

  getPool(poolId: string): Promise<BookPool | null> {
    const pool = this.store.getPool(poolId);
    return Promise.resolve(pool === null ? null : local(pool));
  }

  addPool(pool: PoolRecord): Promise<'created'> {
    this.store.insertPool(pool);
    return Promise.resolve('created');
  }

  releasePool(poolId: string): Promise<void> {
    this.store.deletePool(poolId);
    return Promise.resolve();
  }

  claim(poolId: string, address: IpAddress, kind: AddressKind): Promise<boolean> {
    // An aux address is one asked for by value: the SQLite schema has always called that 'requested'.
    return Promise.resolve(this.store.claimAddress(poolId, address, kind === 'aux' ? 'requested' : kind));
  }

  /** `identity` is not needed here: the store's writes never lose their answer, nothing asks again. */
  release(poolId: string, address: IpAddress): Promise<boolean> {
    return Promise.resolve(this.store.releaseAddress(poolId, address));
  }

  claimIdentity(poolId: string, address: IpAddress): Promise<string | null> {
    const held = this.store.claimedAddresses(poolId).some((a) => a.address.value === address.value);
    return Promise.resolve(held ? 'local' : null);
  }

  claimed(poolId: string): Promise<{ address: IpAddress; kind: AddressKind }[]> {
    return Promise.resolve(this.store.claimedAddresses(poolId));
  }

  ownEndpointClaims(): Promise<OwnClaim[]> {
    return Promise.resolve(
      this.store.dockerEndpointClaims().map((claim) => ({
        poolId: claim.poolId,
        address: claim.address,
        at: claim.createdAt,
        identity: String(claim.createdAt),
        release: () => Promise.resolve(this.store.releaseAddress(claim.poolId, claim.address)),
      })),
    );
  }
}

function local(pool: PoolRecord): BookPool {
  return {
    poolId: pool.poolId,
    addressSpace: pool.addressSpace,
    pool: pool.pool,
    range: pool.range,
    definedBy: null,
    gateway: null,
    users: [],
  };
}

/** One host's hold on reclaiming an absent host's addresses, or who holds it. */
export type ReclaimLock = { held: true; release(): Promise<void> } | { held: false; by: string };

/** An endpoint address of this host that another host reclaimed while this host was away. */
export interface ReclaimedClaim {
  poolId: string;
  address: IpAddress;
  /** The host that reclaimed it, and when (ISO 8601). */
  by: string;
  at: string;
  kind: AddressKind;
  mac: string | null;
  /** Drops the record (this host has dealt with it). */
  forget(): Promise<void>;
}

/** What a shared book adds for hosts that went away (ipam/reclaim.ts) and come back (ipam/reclaimed.ts). */
export interface SharedBook extends AddressBook {
  /**
   * Hosts that hold endpoint claims but have no registration, with when this was first seen (by
   * any host; recorded in the book, so that a daemon restart does not restart the count).
   */
  absentHolders(): Promise<Map<string, number>>;
  /** Another host's claims released here are recorded for it (reclaimedFromHere, on that host). */
  endpointClaimsOf(hostId: string): Promise<OwnClaim[]>;
  /** Only one host at a time reclaims a given absent host's addresses. */
  lockReclaim(absentHost: string): Promise<ReclaimLock>;
  reclaimedFromHere(): Promise<ReclaimedClaim[]>;
  holderOf(poolId: string, address: IpAddress): Promise<string | null>;
}
