/**
 * Address arithmetic for the IPAM driver, as Docker's default IPAM does it:
 * a pool never gives out its network address (nor, on IPv4 pools larger than
 * /31, its broadcast address), and automatic allocation takes the first free
 * address of the range (`--ip-range`, else the whole pool). Pure: no store.
 */
import { addressFromValue, prefixBounds, type IpAddress, type IpPrefix } from '../net/address';

/** Whether a pool hands `value` out at all. */
export function isUsable(pool: IpPrefix, value: bigint): boolean {
  const { first, last } = prefixBounds(pool);
  if (value < first || value > last) return false;
  if (pool.prefixLength >= (pool.address.family === 4 ? 31 : 127)) return true;
  if (value === first) return false;
  return !(pool.address.family === 4 && value === last);
}

/**
 * The first address of `range` (inside `pool`) that is usable, not in `used`,
 * and not refused by `skip` (addresses the LAN answered for); null when none.
 */
export function firstFree(
  pool: IpPrefix,
  range: IpPrefix,
  used: ReadonlySet<bigint>,
  skip: (value: bigint) => boolean = () => false,
): IpAddress | null {
  const { first, last } = prefixBounds(range);
  for (let value = first; value <= last; value++) {
    if (isUsable(pool, value) && !used.has(value) && !skip(value)) return addressFromValue(pool.address.family, value);
  }
  return null;
}
