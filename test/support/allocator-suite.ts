/**
 * The `lanplug` IPAM driver's allocator tests, run on each address book: the
 * SQLite one (test/unit/ipam.test.ts) and etcd's (test/etcd/shared-pools.test.ts).
 * Docker's default IPAM's addresses for the same flags, its error wording, a
 * second claim refused, released addresses and pools coming back.
 *
 * A shared book starts automatic allocation at a place of the host's own; the
 * etcd run uses SPREAD_ZERO_HOST, whose place is a range's first address, so
 * that Docker's order holds on both.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LanplugError } from '../../src/errors';
import { IpamAllocator, type AddressFilter } from '../../src/ipam/allocator';
import { silentLogger } from '../../src/log';
import { formatPrefix, parseAddress, parsePrefix } from '../../src/net/address';
import type { AddressBook } from '../../src/state/address-book';

/** sha256("host-34485") has two zero bytes where the spread reads its offset (modulo up to 65,536). */
export const SPREAD_ZERO_HOST = 'host-34485';

export async function pool(
  allocator: IpamAllocator,
  subnet: string,
  range: string | null = null,
  v6 = false,
): Promise<string> {
  const record = await allocator.requestPool({
    addressSpace: 'LocalDefault',
    pool: parsePrefix(subnet),
    range: range === null ? null : parsePrefix(range),
    v6,
  });
  return record.poolId;
}

/** An address as Docker would ask: a gateway, an --aux-address (no MAC) or an endpoint (`mac`). */
export async function take(
  allocator: IpamAllocator,
  poolId: string,
  preferred: string | null = null,
  gateway = false,
  mac: string | null = null,
): Promise<string> {
  const address = await allocator.requestAddress({
    poolId,
    preferred: preferred === null ? null : parseAddress(preferred),
    gateway,
    mac,
  });
  return formatPrefix(address);
}

export async function refusal(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof LanplugError, String(err));
    return err.message;
  }
  assert.fail('expected a refusal');
}

/** `openBook` gives a fresh, empty book for each test. */
export function allocatorSuite(label: string, openBook: () => AddressBook): void {
  test(`${label}: the seed's addresses: gateway .1, then .2 and .3; Docker's pool id and prefix form`, async () => {
    const allocator = new IpamAllocator(openBook(), silentLogger);
    const id = await pool(allocator, '172.16.86.0/24');
    assert.equal(id, 'LocalDefault/172.16.86.0/24');
    assert.equal(await take(allocator, id, '172.16.86.1', true), '172.16.86.1/24');
    assert.equal(await take(allocator, id), '172.16.86.2/24');
    assert.equal(await take(allocator, id), '172.16.86.3/24');
  });

  test(`${label}: the seed's macnet32: --ip-range .128/25, aux .129, gateway .254 give .128 then .130`, async () => {
    const allocator = new IpamAllocator(openBook(), silentLogger);
    const id = await pool(allocator, '192.168.32.0/24', '192.168.32.128/25');
    assert.equal(await take(allocator, id, '192.168.32.254', true), '192.168.32.254/24');
    assert.equal(await take(allocator, id, '192.168.32.129'), '192.168.32.129/24');
    assert.equal(await take(allocator, id), '192.168.32.128/24');
    assert.equal(await take(allocator, id), '192.168.32.130/24');
  });

  test(`${label}: a gateway asked for without an address is the pool's first; IPv6 starts at ::2 after ::1`, async () => {
    const allocator = new IpamAllocator(openBook(), silentLogger);
    const v4 = await pool(allocator, '10.9.0.0/16', '10.9.8.0/24');
    assert.equal(await take(allocator, v4, null, true), '10.9.0.1/16');
    assert.equal(
      await take(allocator, v4),
      '10.9.8.0/16',
      "a range's first address is usable when it is not the pool's",
    );
    const v6 = await pool(allocator, '2001:db8:86::/64', null, true);
    assert.equal(await take(allocator, v6, null, true), '2001:db8:86::1/64');
    assert.equal(await take(allocator, v6), '2001:db8:86::2/64');
  });

  test(`${label}: Docker's wording: an address in use, a full pool, overlapping pools, outside the pool`, async () => {
    const allocator = new IpamAllocator(openBook(), silentLogger);
    const id = await pool(allocator, '172.16.86.0/30');
    await take(allocator, id, '172.16.86.1', true);
    assert.equal(await take(allocator, id), '172.16.86.2/30');
    assert.equal(await refusal(() => take(allocator, id)), 'No available addresses on this pool');
    assert.equal(
      await refusal(() => take(allocator, id, '172.16.86.2', false, '02:00:00:00:00:01')),
      'Address already in use',
    );
    assert.equal(
      await refusal(() => take(allocator, id, '172.16.86.3')),
      'requested address 172.16.86.3 is out of range of pool 172.16.86.0/30',
    );
    assert.equal(
      await refusal(() => pool(allocator, '172.16.0.0/16')),
      'Pool overlaps with other one on this address space',
    );
    assert.match(
      await refusal(() => allocator.requestPool({ addressSpace: 'LocalDefault', pool: null, range: null, v6: false })),
      /does not choose subnets: give --subnet/,
    );
  });

  test(`${label}: released addresses come back; a released pool frees everything`, async () => {
    const allocator = new IpamAllocator(openBook(), silentLogger);
    const id = await pool(allocator, '172.16.86.0/24');
    await take(allocator, id, '172.16.86.1', true);
    await take(allocator, id);
    await take(allocator, id);
    await allocator.releaseAddress(id, parseAddress('172.16.86.2'));
    await allocator.releaseAddress(id, parseAddress('172.16.86.2'));
    assert.equal(await take(allocator, id), '172.16.86.2/24');
    assert.equal(await take(allocator, id), '172.16.86.4/24');
    await allocator.releasePool(id);
    await assert.rejects(allocator.pool(id), /is not one the lanplug IPAM driver knows/);
    const again = await pool(allocator, '172.16.86.0/24');
    assert.equal(await take(allocator, again), '172.16.86.1/24');
  });

  test(`${label}: automatic allocation skips what the LAN uses and this host holds, never for the gateway`, async () => {
    const lan: AddressFilter = {
      takenIn: () => (address) => ['172.16.86.1', '172.16.86.2', '172.16.86.3'].includes(address.text),
    };
    const allocator = new IpamAllocator(openBook(), silentLogger, lan);
    const id = await pool(allocator, '172.16.86.0/24');
    // The router answers for .1 (or this host is the router): it is the gateway all the same.
    assert.equal(await take(allocator, id, null, true), '172.16.86.1/24');
    assert.equal(await take(allocator, id), '172.16.86.4/24');
  });
}
