/**
 * Address arithmetic for the IPAM driver, as Docker's default IPAM does it:
 * a pool never gives out its network address (nor, on IPv4 pools larger than
 * /31, its broadcast address), and automatic allocation takes the first free
 * address of the range (`--ip-range`, else the whole pool). Pure: no store.
 */
import { createHash } from 'node:crypto';
import { addressFromValue, prefixBounds, type IpAddress, type IpPrefix } from '../net/address';

/** The lowest and highest address a pool hands out: all of a /31 or /127, else not its network (nor IPv4 broadcast) address. */
export function usableBounds(pool: IpPrefix): { lowest: bigint; highest: bigint } {
  const { first, last } = prefixBounds(pool);
  const family = pool.address.family;
  const small = pool.prefixLength >= (family === 4 ? 31 : 127);
  return { lowest: small ? first : first + 1n, highest: small || family === 6 ? last : last - 1n };
}

/** Whether a pool hands `value` out at all. */
export function isUsable(pool: IpPrefix, value: bigint): boolean {
  const { lowest, highest } = usableBounds(pool);
  return value >= lowest && value <= highest;
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
  start: bigint | null = null,
): IpAddress | null {
  const { first, last } = prefixBounds(range);
  const from = start !== null && start >= first && start <= last ? start : first;
  // From `from` to the end of the range, then from its beginning up to `from`.
  for (const [low, high] of [
    [from, last],
    [first, from - 1n],
  ] as const) {
    for (let value = low; value <= high; value++) {
      if (isUsable(pool, value) && !used.has(value) && !skip(value))
        return addressFromValue(pool.address.family, value);
    }
  }
  return null;
}

/**
 * A host's own starting place in a shared range: a hash of its id spread over
 * the range, so that two hosts allocating at once start apart (whereabouts'
 * lowest-free-first made every node race for one address). Within the
 * first 65,536 addresses of a larger (IPv6) range: plenty of room apart, and
 * close to the start an operator reads addresses from.
 */
export function spreadStart(range: IpPrefix, hostId: string): bigint {
  const { first, last } = prefixBounds(range);
  const size = last - first + 1n;
  const span = size < 0x1_0000n ? size : 0x1_0000n;
  const digest = createHash('sha256').update(hostId).digest();
  return first + (BigInt(digest.readUInt32BE(0)) % span);
}
