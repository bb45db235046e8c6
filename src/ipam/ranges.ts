/**
 * Allocation for CNI networks, in host-local's terms: one address from each
 * range set, from `rangeStart` to `rangeEnd` of the first range of the set
 * with one free, never the gateway. Claims go through the same store as the
 * Docker IPAM driver's, and an address claimed in any pool or held by any
 * lanplug endpoint counts as taken: a host running Docker and Podman on one
 * LAN never hands one address out twice.
 */
import { LanplugError, invalidArgument } from '../errors';
import type { AddressRange, PoolRecord } from '../model/ipam';
import {
  addressFromValue,
  formatPrefix,
  networkOf,
  prefixBounds,
  prefixContains,
  sameAddress,
  type IpAddress,
  type IpPrefix,
} from '../net/address';
import type { IpamStore } from '../state/ipam-store';
import { usableBounds } from './pool';

/** CNI pools live in an address space per network: `cni:<network name>`. */
export function cniAddressSpace(networkName: string): string {
  return `cni:${networkName}`;
}

export interface RangeAllocation {
  poolId: string;
  address: IpPrefix;
  gateway: IpAddress;
}

export class RangeAllocator {
  constructor(
    private readonly store: IpamStore,
    /**
     * What is taken although no pool claims it (an endpoint's address, a
     * gateway, this host's, one the LAN uses), with why; null when free. Read once per allocation.
     */
    private readonly takenNow: () => (address: IpAddress) => string | null,
  ) {}

  /** One address of the set: `requested` if one of them lies in the set's subnets, else the first free. */
  allocate(
    networkName: string,
    set: readonly AddressRange[],
    requested: readonly IpAddress[],
    options: { owner?: string; reserved?: readonly IpAddress[] } = {},
  ): RangeAllocation {
    const { owner } = options;
    const taken = this.takenNow();
    const reserved = new Set((options.reserved ?? []).map((a) => a.text));
    const free = (pool: PoolRecord, address: IpAddress): boolean =>
      !reserved.has(address.text) && this.store.poolsClaiming(address).length === 0 && taken(address) === null;
    const inRange = (r: AddressRange, a: IpAddress): boolean =>
      prefixContains(r.subnet, a) && a.value >= r.start.value && a.value <= r.end.value;
    const wanted = requested.find((a) => set.some((r) => inRange(r, a)));
    if (wanted !== undefined) {
      const range = set.find((r) => inRange(r, wanted));
      if (range === undefined) throw new LanplugError('Internal', 'range vanished');
      const pool = this.poolOf(networkName, range.subnet);
      if (sameAddress(wanted, range.gateway))
        throw invalidArgument(`requested address ${wanted.text} is the gateway of ${formatPrefix(range.subnet)}`);
      const why = taken(wanted);
      if (why !== null) throw new LanplugError('Conflict', why);
      if (!free(pool, wanted) || !this.store.claimAddress(pool.poolId, wanted, 'requested', owner))
        throw new LanplugError('Conflict', `Address already in use: ${wanted.text}`);
      return { poolId: pool.poolId, address: withLength(wanted, range.subnet), gateway: range.gateway };
    }
    for (const range of set) {
      const pool = this.poolOf(networkName, range.subnet);
      for (let value = range.start.value; value <= range.end.value; value++) {
        if (value === range.gateway.value) continue;
        const candidate = addressFromValue(range.subnet.address.family, value);
        if (free(pool, candidate) && this.store.claimAddress(pool.poolId, candidate, 'allocated', owner))
          return { poolId: pool.poolId, address: withLength(candidate, range.subnet), gateway: range.gateway };
      }
    }
    const where = set.map((r) => `${r.start.text}-${r.end.text}`).join(', ');
    throw new LanplugError('Conflict', `No available addresses in ${where}`);
  }

  release(poolId: string, address: IpAddress): void {
    this.store.releaseAddress(poolId, address);
  }

  /** The pools of a CNI network in which nothing is claimed any more go (they are made again on demand). */
  dropEmptyPools(networkName: string): void {
    const space = cniAddressSpace(networkName);
    for (const pool of this.store.listPools())
      if (pool.addressSpace === space && this.store.claimedAddresses(pool.poolId).length === 0)
        this.store.deletePool(pool.poolId);
  }

  /** Every pool of a CNI network goes with it. */
  dropPools(networkName: string): void {
    const space = cniAddressSpace(networkName);
    for (const pool of this.store.listPools()) if (pool.addressSpace === space) this.store.deletePool(pool.poolId);
  }

  private poolOf(networkName: string, subnet: IpPrefix): PoolRecord {
    const space = cniAddressSpace(networkName);
    const poolId = `${space}/${formatPrefix(subnet)}`;
    const known = this.store.getPool(poolId);
    if (known !== null) return known;
    const record: PoolRecord = { poolId, addressSpace: space, pool: subnet, range: null };
    this.store.insertPool(record);
    return record;
  }
}

/**
 * A range as the shared pool it names, in the Docker IPAM driver's terms: `--subnet`, and `--ip-range`
 * as a prefix (null: the whole subnet, as a range without rangeStart/rangeEnd is). A pool is the same
 * on every host, Docker's and CNI's alike, only when it is a prefix: one that is not is refused.
 */
export function sharedPoolOf(range: AddressRange): { pool: IpPrefix; range: IpPrefix | null } {
  const { subnet, start, end } = range;
  const whole = usableBounds(subnet);
  if (start.value === whole.lowest && end.value === whole.highest) return { pool: subnet, range: null };
  const bits = subnet.address.family === 4 ? 32 : 128;
  for (let length = subnet.prefixLength; length <= bits; length++) {
    const candidate = networkOf({ address: start, prefixLength: length });
    const { first, last } = prefixBounds(candidate);
    if (first === start.value && last === end.value) return { pool: subnet, range: candidate };
  }
  throw invalidArgument(
    `a shared pool's range is a prefix, as --ip-range is on every host: ${start.text}-${end.text} is not one (such as ${formatPrefix(networkOf({ address: start, prefixLength: subnet.prefixLength + 2 }))})`,
  );
}

/** Every address the runtime asked for must be one it got (host-local refuses one in no range set). */
export function checkRequestedUsed(requested: readonly IpAddress[], claims: readonly RangeAllocation[]): void {
  for (const wanted of requested)
    if (!claims.some((c) => sameAddress(c.address.address, wanted)))
      throw invalidArgument(`requested address ${wanted.text} is in none of the network's ranges`);
}

function withLength(address: IpAddress, subnet: IpPrefix): IpPrefix {
  return { address, prefixLength: subnet.prefixLength };
}
