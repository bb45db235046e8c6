/**
 * The `lanplug` IPAM driver's decisions, as typed operations (the remote IPAM
 * API is translated in api/docker/ipam-routes.ts). It behaves as Docker's
 * default IPAM does for the same flags — `--subnet`, `--ip-range`,
 * `--gateway`, `--aux-address`, `--ip`/`--ip6`, several subnets, IPv6 — and
 * gives the seed commands the same addresses, with Docker's wording for its
 * errors. Every claim goes through the store, which refuses a second claim of
 * one address.
 */
import { conflict, invalidArgument, LanplugError, notFound } from '../errors';
import type { Logger } from '../log';
import type { AddressKind, PoolRecord } from '../model/ipam';
import {
  addressFromValue,
  formatPrefix,
  networkOf,
  prefixContains,
  prefixesOverlap,
  type IpAddress,
  type IpPrefix,
} from '../net/address';
import type { IpamStore } from '../state/ipam-store';
import { firstFree, isUsable } from './pool';

export const LOCAL_ADDRESS_SPACE = 'LocalDefault';
export const GLOBAL_ADDRESS_SPACE = 'GlobalDefault';

export interface PoolRequest {
  addressSpace: string;
  /** `--subnet`; lanplug does not pick subnets for you. */
  pool: IpPrefix | null;
  /** `--ip-range`. */
  range: IpPrefix | null;
  v6: boolean;
}

export interface AddressRequest {
  poolId: string;
  /** The address asked for (`--ip`, `--gateway`, an `--aux-address`), or null for any. */
  preferred: IpAddress | null;
  /** Docker asks for the gateway with RequestAddressType=com.docker.network.gateway. */
  gateway: boolean;
}

/** Addresses automatic allocation must not hand out although the store has them free (the LAN uses them). */
export interface AddressFilter {
  isTaken(pool: PoolRecord, address: IpAddress): boolean;
}

const NOTHING_TAKEN: AddressFilter = { isTaken: () => false };

export class IpamAllocator {
  constructor(
    private readonly store: IpamStore,
    private readonly log: Logger,
    private readonly lan: AddressFilter = NOTHING_TAKEN,
  ) {}

  requestPool(request: PoolRequest): PoolRecord {
    if (request.pool === null) {
      throw invalidArgument(
        'the lanplug IPAM driver does not choose subnets: give --subnet (and --ip-range, --gateway as you like)',
      );
    }
    if ((request.pool.address.family === 6) !== request.v6) {
      throw invalidArgument(`subnet ${formatPrefix(request.pool)} is not an IPv${request.v6 ? 6 : 4} subnet`);
    }
    const pool = networkOf(request.pool);
    const range = request.range === null ? null : networkOf(request.range);
    if (range !== null && !(prefixContains(pool, range.address) && range.prefixLength >= pool.prefixLength)) {
      throw invalidArgument(`--ip-range ${formatPrefix(range)} is not inside --subnet ${formatPrefix(pool)}`);
    }
    for (const other of this.store.listPools()) {
      if (other.addressSpace === request.addressSpace && prefixesOverlap(other.pool, pool)) {
        throw conflict('Pool overlaps with other one on this address space');
      }
    }
    const record: PoolRecord = {
      poolId: `${request.addressSpace}/${formatPrefix(pool)}${range === null ? '' : `/${formatPrefix(range)}`}`,
      addressSpace: request.addressSpace,
      pool,
      range,
    };
    this.store.insertPool(record);
    this.log.info('pool created', { pool: record.poolId });
    return record;
  }

  /** Idempotent: a pool that is gone is released. */
  releasePool(poolId: string): void {
    this.store.deletePool(poolId);
    this.log.info('pool released', { pool: poolId });
  }

  /** The address with the pool's prefix length, as Docker wants it ("172.16.86.2/24"). */
  requestAddress(request: AddressRequest): IpPrefix {
    const pool = this.requirePool(request.poolId);
    const kind: AddressKind = request.gateway ? 'gateway' : request.preferred === null ? 'allocated' : 'requested';
    const address = request.preferred === null ? this.allocate(pool, kind) : this.claim(pool, request.preferred, kind);
    return { address, prefixLength: pool.pool.prefixLength };
  }

  /** The next `count` addresses automatic allocation would hand out, without claiming them. */
  nextFree(pool: PoolRecord, count: number): IpAddress[] {
    const used = new Set(this.store.claimedAddresses(pool.poolId).map((a) => a.address.value));
    const out: IpAddress[] = [];
    while (out.length < count) {
      const candidate = firstFree(pool.pool, pool.range ?? pool.pool, used, (value) => this.lanUses(pool, value));
      if (candidate === null) break;
      out.push(candidate);
      used.add(candidate.value);
    }
    return out;
  }

  pool(poolId: string): PoolRecord {
    return this.requirePool(poolId);
  }

  /** Idempotent: releasing an address that is free is success. */
  releaseAddress(poolId: string, address: IpAddress): void {
    this.store.releaseAddress(poolId, address);
  }

  private requirePool(poolId: string): PoolRecord {
    const pool = this.store.getPool(poolId);
    if (pool === null) throw notFound(`pool ${poolId} is not one the lanplug IPAM driver knows`);
    return pool;
  }

  private claim(pool: PoolRecord, address: IpAddress, kind: AddressKind): IpAddress {
    if (address.family !== pool.pool.address.family || !isUsable(pool.pool, address.value)) {
      throw invalidArgument(`requested address ${address.text} is out of range of pool ${formatPrefix(pool.pool)}`);
    }
    if (!this.store.claimAddress(pool.poolId, address, kind)) {
      throw new LanplugError('Conflict', 'Address already in use');
    }
    return address;
  }

  /** The first free address of the range (or pool) that the LAN does not use either. */
  private allocate(pool: PoolRecord, kind: AddressKind): IpAddress {
    // The gateway of a pool without --gateway is its first address, wherever the range is (as Docker does).
    const range = kind === 'gateway' ? pool.pool : (pool.range ?? pool.pool);
    const used = new Set(this.store.claimedAddresses(pool.poolId).map((a) => a.address.value));
    for (;;) {
      const candidate = firstFree(pool.pool, range, used, (value) => this.lanUses(pool, value));
      if (candidate === null) throw new LanplugError('Conflict', 'No available addresses on this pool');
      if (this.store.claimAddress(pool.poolId, candidate, kind)) return candidate;
      used.add(candidate.value); // claimed meanwhile (another host, on a shared store): the next one
    }
  }

  private lanUses(pool: PoolRecord, value: bigint): boolean {
    return this.lan !== NOTHING_TAKEN && this.lan.isTaken(pool, addressFromValue(pool.pool.address.family, value));
  }
}
