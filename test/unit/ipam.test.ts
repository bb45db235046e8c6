/**
 * The `lanplug` IPAM driver's allocator on the real SQLite store: Docker's
 * default IPAM's addresses for the same flags, its error wording, the store
 * refusing a second claim, pools surviving a restart.
 */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LanplugError } from '../../src/errors';
import { IpamAllocator, type AddressFilter } from '../../src/ipam/allocator';
import { silentLogger } from '../../src/log';
import { formatPrefix, parseAddress, parsePrefix } from '../../src/net/address';
import { SqliteStore } from '../../src/state/sqlite';

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-ipam-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function pool(allocator: IpamAllocator, subnet: string, range: string | null = null, v6 = false): string {
  return allocator.requestPool({
    addressSpace: 'LocalDefault',
    pool: parsePrefix(subnet),
    range: range === null ? null : parsePrefix(range),
    v6,
  }).poolId;
}

function take(allocator: IpamAllocator, poolId: string, preferred: string | null = null, gateway = false): string {
  return formatPrefix(
    allocator.requestAddress({ poolId, preferred: preferred === null ? null : parseAddress(preferred), gateway }),
  );
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof LanplugError);
    return err.message;
  }
  assert.fail('expected a refusal');
}

test("the seed's addresses: gateway .1, then .2 and .3; Docker's pool id and prefix form", () => {
  const allocator = new IpamAllocator(store, silentLogger);
  const id = pool(allocator, '172.16.86.0/24');
  assert.equal(id, 'LocalDefault/172.16.86.0/24');
  assert.equal(take(allocator, id, '172.16.86.1', true), '172.16.86.1/24');
  assert.equal(take(allocator, id), '172.16.86.2/24');
  assert.equal(take(allocator, id), '172.16.86.3/24');
});

test("the seed's macnet32: --ip-range .128/25, aux .129, gateway .254 give .128 then .130", () => {
  const allocator = new IpamAllocator(store, silentLogger);
  const id = pool(allocator, '192.168.32.0/24', '192.168.32.128/25');
  assert.equal(take(allocator, id, '192.168.32.254', true), '192.168.32.254/24');
  assert.equal(take(allocator, id, '192.168.32.129'), '192.168.32.129/24');
  assert.equal(take(allocator, id), '192.168.32.128/24');
  assert.equal(take(allocator, id), '192.168.32.130/24');
});

test('a gateway asked for without an address is the first of the pool; IPv6 pools start at ::2 after ::1', () => {
  const allocator = new IpamAllocator(store, silentLogger);
  const v4 = pool(allocator, '10.9.0.0/16', '10.9.8.0/24');
  assert.equal(take(allocator, v4, null, true), '10.9.0.1/16');
  assert.equal(take(allocator, v4), '10.9.8.0/16', "a range's first address is usable when it is not the pool's");
  const v6 = pool(allocator, '2001:db8:86::/64', null, true);
  assert.equal(take(allocator, v6, null, true), '2001:db8:86::1/64');
  assert.equal(take(allocator, v6), '2001:db8:86::2/64');
});

test("Docker's wording: an address in use, a full pool, overlapping pools; an address outside the pool", () => {
  const allocator = new IpamAllocator(store, silentLogger);
  const id = pool(allocator, '172.16.86.0/30');
  take(allocator, id, '172.16.86.1', true);
  assert.equal(take(allocator, id), '172.16.86.2/30');
  assert.equal(
    refusal(() => take(allocator, id)),
    'No available addresses on this pool',
  );
  assert.equal(
    refusal(() => take(allocator, id, '172.16.86.2')),
    'Address already in use',
  );
  assert.equal(
    refusal(() => take(allocator, id, '172.16.86.3')),
    'requested address 172.16.86.3 is out of range of pool 172.16.86.0/30',
  );
  assert.equal(
    refusal(() => pool(allocator, '172.16.0.0/16')),
    'Pool overlaps with other one on this address space',
  );
  assert.match(
    refusal(() => allocator.requestPool({ addressSpace: 'LocalDefault', pool: null, range: null, v6: false })),
    /does not choose subnets: give --subnet/,
  );
});

test('released addresses come back; a released pool frees everything; claims survive a restart', () => {
  let allocator = new IpamAllocator(store, silentLogger);
  const id = pool(allocator, '172.16.86.0/24');
  take(allocator, id, '172.16.86.1', true);
  take(allocator, id);
  take(allocator, id);
  allocator.releaseAddress(id, parseAddress('172.16.86.2'));
  allocator.releaseAddress(id, parseAddress('172.16.86.2'));
  store.close();
  store = SqliteStore.open(dir);
  allocator = new IpamAllocator(store, silentLogger);
  assert.equal(take(allocator, id), '172.16.86.2/24');
  assert.equal(take(allocator, id), '172.16.86.4/24');
  assert.equal(
    store.claimAddress(id, parseAddress('172.16.86.4'), 'allocated'),
    false,
    'the store refuses a second claim',
  );
  allocator.releasePool(id);
  assert.equal(store.getPool(id), null);
  const again = pool(allocator, '172.16.86.0/24');
  assert.equal(take(allocator, again), '172.16.86.1/24');
});

test('automatic allocation skips what the LAN uses', () => {
  const lan: AddressFilter = {
    isTaken: (_pool, address) => address.text === '172.16.86.2' || address.text === '172.16.86.3',
  };
  const allocator = new IpamAllocator(store, silentLogger, lan);
  const id = pool(allocator, '172.16.86.0/24');
  take(allocator, id, '172.16.86.1', true);
  assert.equal(take(allocator, id), '172.16.86.4/24');
});
