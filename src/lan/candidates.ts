/**
 * The addresses a network's next containers will ask for, for the warmer:
 * with the lanplug IPAM driver exactly the ones it will hand out; with
 * Docker's default IPAM a good guess (the subnet's first free addresses —
 * Docker does not tell a driver its --ip-range, so a range elsewhere simply
 * finds nothing warm and pays one short probe).
 */
import type { IpamAllocator } from '../ipam/allocator';
import { isUsable } from '../ipam/pool';
import type { PoolRecord } from '../model/ipam';
import { addressesOf, type EndpointRecord, type NetworkSpec } from '../model/network';
import { addressFromValue, formatPrefix, prefixBounds, type IpAddress } from '../net/address';

const PER_SUBNET = 4;

export async function nextCandidates(
  spec: NetworkSpec,
  endpoints: readonly EndpointRecord[],
  pools: readonly PoolRecord[],
  allocator: IpamAllocator,
  isKnownTaken: (address: IpAddress) => boolean,
): Promise<IpAddress[]> {
  // The LAN's DHCP server chooses (Docker's null IPAM hands such a network 0.0.0.0/0): nothing to guess.
  if (spec.dhcp !== null) return [];
  const perSubnet = [...spec.ipv4, ...spec.ipv6].map(async (subnet) => {
    const pool = pools.find((p) => formatPrefix(p.pool) === formatPrefix(subnet.pool));
    if (pool !== undefined) return allocator.nextFree(pool, PER_SUBNET);
    const taken = new Set<bigint>([
      ...(subnet.gateway === null ? [] : [subnet.gateway.value]),
      ...endpoints.flatMap((e) => addressesOf(e).map((a) => a.value)),
      ...[spec.hostAccess?.ipv4?.value, spec.hostAccess?.ipv6?.value].filter((v): v is bigint => v !== undefined),
    ]);
    const out: IpAddress[] = [];
    const { first, last } = prefixBounds(subnet.pool);
    for (let value = first; value <= last && out.length < PER_SUBNET; value++) {
      if (!isUsable(subnet.pool, value) || taken.has(value)) continue;
      const address = addressFromValue(subnet.pool.address.family, value);
      if (!isKnownTaken(address)) out.push(address);
    }
    return out;
  });
  return (await Promise.all(perSubnet)).flat();
}
