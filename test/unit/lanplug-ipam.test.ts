/**
 * The `lanplug` IPAM driver's RequestAddress (endpoint/lanplug-ipam.ts): the
 * allocator's claim on the real SQLite store, then the LAN asked through the
 * real conflict checks and guard, with a stand-in prober in place of the
 * probes (the Docker lane asks a real LAN: test/e2e/ipam.test.ts and
 * lan-citizen.test.ts). An address the allocator chose that the LAN uses is
 * skipped for the next; one asked for by value is refused in one line (or
 * given under `warn`); the gateway and pools no lanplug network uses are
 * never probed.
 */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LanplugIpam, type IpamLan } from '../../src/endpoint/lanplug-ipam';
import { IpamAllocator } from '../../src/ipam/allocator';
import { LanConflicts, type LanCheck } from '../../src/lan/conflicts';
import { LanGuard, type Prober } from '../../src/lan/guard';
import type { ProbeLink } from '../../src/lan/probe';
import { silentLogger } from '../../src/log';
import { parseAddress } from '../../src/net/address';
import { LocalAddressBook } from '../../src/state/address-book';
import { SqliteStore } from '../../src/state/sqlite';
import { recordHeld, releaseHolder } from '../../src/ipam/reservations';
import { pool, refusal, take } from '../support/allocator-suite';

const LINK: ProbeLink = { index: 7, name: 'eth0', mac: '02:00:00:00:00:07', listenAll: false };
const DEVICE = '06:85:e9:52:4e:de';

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-ipam-driver-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The driver as the daemon composes it, the LAN using `inUse`; `rules`: what applies to the pool. */
function driverWith(
  inUse: readonly string[],
  rules: { lan: LanCheck | null } | null,
): { ipam: LanplugIpam; allocator: IpamAllocator; asked: string[] } {
  const asked: string[] = [];
  const prober: Prober = (_link, candidate) => {
    asked.push(candidate.text);
    return Promise.resolve(
      inUse.includes(candidate.text) ? { inUse: true, mac: DEVICE, how: 'it answered an ARP probe' } : { inUse: false },
    );
  };
  const conflicts = new LanConflicts(new LanGuard(silentLogger, prober), store, silentLogger, null);
  const allocator = new IpamAllocator(
    new LocalAddressBook(store),
    silentLogger,
    { takenIn: () => conflicts.takenOn(rules?.lan?.link ?? null) },
    store,
  );
  const lan: IpamLan = { conflicts, rulesForPool: () => rules };
  return { ipam: new LanplugIpam(allocator, lan), allocator, asked };
}

const refuse = (policy: LanCheck['policy'] = 'refuse'): { lan: LanCheck } => ({
  lan: { link: LINK, policy, networkId: 'n'.repeat(64) },
});

test('lanplug IPAM: an address the allocator chose that the LAN uses is skipped for the next, and its claim released', async () => {
  const { ipam, allocator, asked } = driverWith(['172.16.86.2', '172.16.86.3'], refuse());
  const id = await pool(allocator, '172.16.86.0/24');
  assert.equal(await take(allocator, id, null, true), '172.16.86.1/24');
  const given = await ipam.requestAddress({ poolId: id, preferred: null, gateway: false, mac: null });
  assert.equal(given.address.text, '172.16.86.4');
  assert.deepEqual(asked, ['172.16.86.2', '172.16.86.3', '172.16.86.4']);
  // The two the LAN uses are not claimed: the allocator gives them by value.
  assert.match(await refusal(() => take(allocator, id, '172.16.86.4')), /already/, 'the address given stays claimed');
  for (const text of ['172.16.86.2', '172.16.86.3'])
    assert.equal(await take(allocator, id, text), `${text}/24`, `${text} was released after the LAN was seen using it`);
});

test('lanplug IPAM: an address asked for by value that the LAN uses is refused in one line, and left unclaimed; given under warn', async () => {
  const { ipam, allocator } = driverWith(['172.16.86.50'], refuse());
  const id = await pool(allocator, '172.16.86.0/24');
  const request = { poolId: id, preferred: parseAddress('172.16.86.50') };
  assert.equal(
    await refusal(() => ipam.requestAddress({ ...request, gateway: false, mac: null })),
    `address 172.16.86.50 is in use on the LAN by ${DEVICE} (it answered an ARP probe); choose another --ip, or free that device`,
  );
  assert.equal(await take(allocator, id, '172.16.86.50'), '172.16.86.50/24', 'the refused address is not claimed');
  await allocator.releaseAddress(id, request.preferred);

  const warned = driverWith(['172.16.86.50'], refuse('warn'));
  assert.equal(
    (await warned.ipam.requestAddress({ ...request, gateway: false, mac: null })).address.text,
    '172.16.86.50',
  );
});

test('lanplug IPAM: the gateway, and pools no lanplug network on a LAN uses, are never asked of the LAN', async () => {
  const { ipam, allocator, asked } = driverWith(['172.16.86.1', '172.16.86.2'], refuse());
  const id = await pool(allocator, '172.16.86.0/24');
  const gateway = await ipam.requestAddress({ poolId: id, preferred: null, gateway: true, mac: null });
  assert.equal(gateway.address.text, '172.16.86.1');
  const unused = driverWith(['172.16.86.2'], null);
  const other = await pool(unused.allocator, '172.16.87.0/24');
  assert.equal(
    (await unused.ipam.requestAddress({ poolId: other, preferred: null, gateway: false, mac: null })).address.text,
    '172.16.87.1',
  );
  assert.deepEqual([...asked, ...unused.asked], []);
});

test("lanplug IPAM: an identity's reserved address the LAN now uses is not given back to its name (Docker 29), and stays reserved; the container gets the next free one", async () => {
  const { ipam, allocator, asked } = driverWith(['172.16.86.2'], refuse());
  const id = await pool(allocator, '172.16.86.0/24');
  assert.equal(await take(allocator, id, null, true), '172.16.86.1/24');
  // web held .2 (claimed before the LAN device came), then went: its reservation keeps .2.
  assert.equal(await take(allocator, id), '172.16.86.2/24');
  const network = 'n'.repeat(64);
  const endpointId = 'e'.repeat(64);
  recordHeld(
    store,
    {
      networkId: network,
      endpointId,
      name: 'web',
      mac: null,
      ipv4: '172.16.86.2',
      ipv6: null,
      clientId: '00',
      duid: '0004',
    },
    1,
  );
  releaseHolder(store, network, endpointId, 2);
  await allocator.releaseAddress(id, parseAddress('172.16.86.2'));
  const given = await ipam.requestAddress({ poolId: id, preferred: null, gateway: false, mac: null, name: 'web' });
  assert.equal(given.address.text, '172.16.86.3');
  assert.deepEqual(asked, ['172.16.86.2', '172.16.86.3']);
  assert.deepEqual(store.getReservation(network, 'web')?.kept, [{ poolId: id, address: '172.16.86.2' }]);
});
