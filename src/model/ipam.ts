/**
 * What the IPAM driver keeps: pools (a network's subnet, and its --ip-range)
 * and the addresses in use in each. One row per address: the store refuses a
 * second claim of the same address, whoever makes it.
 */
import type { IpAddress, IpPrefix } from '../net/address';

export interface PoolRecord {
  /** What Docker gets back from RequestPool and passes to every later call. */
  poolId: string;
  addressSpace: string;
  pool: IpPrefix;
  /** `--ip-range`: where automatic allocation takes addresses from; null for the whole pool. */
  range: IpPrefix | null;
}

/**
 * Why an address is taken: the gateway, one Docker asked for by value (--ip, and --aux-address on a
 * single host), an --aux-address on a shared pool (told apart there by the MAC only endpoints
 * carry), or one lanplug chose.
 */
export type AddressKind = 'gateway' | 'requested' | 'aux' | 'allocated';

/** A claim a container's endpoint holds (not the pool's gateway or aux entries). */
export function isEndpointKind(kind: AddressKind): boolean {
  return kind === 'requested' || kind === 'allocated';
}

/** A CNI (host-local style) range: where addresses are taken from, inclusive at both ends. */
export interface AddressRange {
  subnet: IpPrefix;
  start: IpAddress;
  end: IpAddress;
  /** host-local's default: the subnet's first address. */
  gateway: IpAddress;
}
