/**
 * The address-range side of CNI attachments: which range sets a configuration
 * may have, which gateway a route without one takes, and what is in use beside
 * the pools' claims when a range chooses an address. Pure rules over the store
 * and the LAN's view, apart from the class that makes attachments
 * (sandbox-attachments.ts) so that they can be read, and changed, on their own.
 */
import { invalidArgument } from '../errors';
import type { AddressRange } from '../model/ipam';
import { addressesOf } from '../model/network';
import type { IpAddress } from '../net/address';
import { ADVICE_EXPLICIT, inUseMessage } from '../lan/conflicts';
import { hostAddressMessage } from '../lan/host-addresses';
import { sharedPoolOf, type RangeAllocation } from '../ipam/ranges';
import type { Store } from '../state/store';
import type { AttachNetwork } from './attach-request';
import type { KnownTaken } from './attachment-hooks';

/**
 * The store keeps one IPv4 and one IPv6 address per endpoint, as Docker's endpoints have; a shared
 * network's range set is one range that names a pool (ipam/ranges.ts sharedPoolOf).
 */
export function checkRangeSets(request: AttachNetwork): void {
  const sets: readonly (readonly AddressRange[])[] = request.rangeSets;
  for (const family of [4, 6] as const) {
    const count = sets.filter((set) => set[0]?.subnet.address.family === family).length;
    if (count > 1)
      throw invalidArgument(`ipam has ${count} IPv${family} range sets; lanplug gives one address per family`);
  }
  if (!request.shared) return;
  if (request.dhcp) throw invalidArgument('a shared pool is for addresses from ranges; with DHCP the server chooses');
  if (sets.length === 0) throw invalidArgument('a shared pool needs a subnet');
  for (const set of sets) {
    const [range] = set;
    if (range === undefined || set.length > 1)
      throw invalidArgument('a shared pool is one range per family (one subnet, one --ip-range)');
    sharedPoolOf(range);
  }
}

/** The gateway a route with none takes: that of the claimed address of its family. */
export function gatewayOfFamily(claims: readonly RangeAllocation[], family: 4 | 6): IpAddress | null {
  return claims.find((c) => c.address.address.family === family)?.gateway ?? null;
}

/**
 * Addresses lanplug knows to be in use beside the pools' claims, with why: every
 * endpoint's (Docker's default IPAM hands those out), every network's gateway and
 * host-access address, this host's own, and what the LAN was seen using. Read once per
 * CNI allocation.
 */
export function addressesInUse(store: Store, lan: KnownTaken | null): (address: IpAddress) => string | null {
  const held = new Set<string>();
  for (const endpoint of store.listAllEndpoints()) for (const address of addressesOf(endpoint)) held.add(address.text);
  for (const { spec } of store.listNetworks()) {
    for (const subnet of [...spec.ipv4, ...spec.ipv6]) if (subnet.gateway !== null) held.add(subnet.gateway.text);
    for (const own of [spec.hostAccess?.ipv4, spec.hostAccess?.ipv6]) if (own) held.add(own.text);
  }
  return (address) => {
    if (held.has(address.text)) return `Address already in use: ${address.text}`;
    const link = lan?.hostHolder(address) ?? null;
    if (link !== null) return hostAddressMessage(address, link, 'ask for another address');
    const device = lan?.knownHolder(null, address) ?? null;
    return device !== null ? inUseMessage(address, device, ADVICE_EXPLICIT) : null;
  };
}
