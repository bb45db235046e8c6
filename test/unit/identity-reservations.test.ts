/**
 * Reservations by identity (ipam/reservations.ts): what a `lanplug.identity`
 * name had on a network, kept after its container goes, on the real SQLite
 * store, the `lanplug` IPAM through its API edge and the driver over FakeRtnl.
 *
 * The Docker 29 RequestAddress bodies here are constructed, not captured: no
 * lab runs Docker 29. Their shape is moby's (libnetwork network.go
 * createEndpoint, 29.x: `ep.ipamOptions = {netlabel.EndpointName: name}`,
 * plus the MAC when the driver requires it; moby#50586), and it is the one
 * faked layer of this file: the e2e lane (test/e2e/ipam.test.ts) runs the
 * same reservation with a real dockerd 20.10, whose bodies carry
 * `"Options": null`.
 */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JsonObject } from '../../src/api/docker/decode';
import { ipamRoutes } from '../../src/api/docker/ipam-routes';
import { NetworkDriver } from '../../src/driver/network-driver';
import { LanplugIpam } from '../../src/endpoint/lanplug-ipam';
import { LanplugError } from '../../src/errors';
import { IpamAllocator } from '../../src/ipam/allocator';
import { expireReservations, forgetReservation } from '../../src/ipam/reservations';
import { silentLogger } from '../../src/log';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { LocalAddressBook } from '../../src/state/address-book';
import { SqliteStore } from '../../src/state/sqlite';
import { FakeRtnl } from '../support/fake-rtnl';

const NET = 'a'.repeat(64);
const EP = (n: number): string => String(n).repeat(64);

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-reservations-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Lab {
  call: (path: string, body: JsonObject) => Promise<JsonObject>;
  driver: NetworkDriver;
  book: LocalAddressBook;
  poolId: string;
}

/** A `--ipam-driver lanplug` network as dockerd makes one: the pool, its gateway, the network. */
async function lab(): Promise<Lab> {
  const book = new LocalAddressBook(store);
  const routes = ipamRoutes(new LanplugIpam(new IpamAllocator(book, silentLogger, undefined, store)));
  const call = async (path: string, body: JsonObject): Promise<JsonObject> => {
    const handler = routes.get(path);
    assert.ok(handler, path);
    return handler(body);
  };
  const { PoolID } = await call('/IpamDriver.RequestPool', { AddressSpace: 'LocalDefault', Pool: '172.16.86.0/24' });
  const poolId = PoolID as string;
  await call('/IpamDriver.RequestAddress', {
    PoolID: poolId,
    Address: '172.16.86.1',
    Options: { RequestAddressType: 'com.docker.network.gateway' },
  });
  const rtnl = new FakeRtnl();
  // A second parent, for a second network with the same subnet (another VLAN, another IPAM).
  rtnl.add({ name: 'eth1', kind: 'veth', mtu: 1500, mac: '02:00:00:00:00:02', up: true, parentIndex: null });
  const driver = new NetworkDriver(rtnl, store, silentLogger);
  driver.createNetwork({
    networkId: NET,
    driver: 'macvlan',
    options: { parent: 'eth0' },
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  });
  return { call, driver, book, poolId };
}

/** Docker's RequestAddress: 20.10/28 send `Options: null`; Docker 29 names the container. */
async function requestAddress(l: Lab, opts: { ip?: string; container29?: string } = {}): Promise<string> {
  const answer = await l.call('/IpamDriver.RequestAddress', {
    PoolID: l.poolId,
    Address: opts.ip ?? '',
    Options: opts.container29 === undefined ? null : { 'com.docker.network.endpoint.name': opts.container29 },
  });
  return answer.Address as string;
}

function createEndpoint(l: Lab, endpointId: string, address: string, identity: string | null): void {
  l.driver.createEndpoint('macvlan', {
    networkId: NET,
    endpointId,
    ipv4: parsePrefix(address),
    ipv6: null,
    mac: null,
    endpointOptions: identity === null ? {} : { 'lanplug.identity': identity },
  });
}

/** `docker rm -f`: DeleteEndpoint, then the address back to the IPAM. */
async function remove(l: Lab, endpointId: string, address: string): Promise<void> {
  l.driver.deleteEndpoint(NET, endpointId);
  await l.call('/IpamDriver.ReleaseAddress', { PoolID: l.poolId, Address: address.split('/')[0] ?? address });
}

function refusal(fn: () => unknown): LanplugError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof LanplugError, String(err));
    return err;
  }
  assert.fail('expected a refusal');
}

test('an endpoint with an identity leaves a reservation: its MAC, address, DHCP ids; held, then idle from its DeleteEndpoint', async () => {
  const l = await lab();
  const address = await requestAddress(l);
  assert.equal(address, '172.16.86.2/24');
  createEndpoint(l, EP(1), address, 'web');
  const held = store.getReservation(NET, 'web');
  assert.deepEqual(
    { ...held, createdAt: 0, lastSeen: 0 },
    {
      networkId: NET,
      name: 'web',
      mac: store.getEndpoint(NET, EP(1))?.mac ?? null,
      ipv4: '172.16.86.2',
      ipv6: null,
      clientId: '00776562',
      duid: held?.duid,
      endpointId: EP(1),
      kept: [],
      createdAt: 0,
      lastSeen: 0,
    },
  );
  await remove(l, EP(1), address);
  const idle = store.getReservation(NET, 'web');
  assert.equal(idle?.endpointId, null);
  assert.deepEqual(idle?.kept, [{ poolId: l.poolId, address: '172.16.86.2' }]);
  // It survives a restart of the daemon (the store reopened).
  store.close();
  store = SqliteStore.open(dir);
  assert.equal(store.getReservation(NET, 'web')?.ipv4, '172.16.86.2');
});

test('Docker 29 (constructed body): an automatic request naming the container gets its reserved address back; others never get it', async () => {
  const l = await lab();
  const first = await requestAddress(l, { container29: 'web' });
  createEndpoint(l, EP(1), first, 'web');
  await remove(l, EP(1), first);
  // Another container's automatic allocation, with a 20.10 body and with a Docker 29 one: not .2.
  assert.equal(await requestAddress(l), '172.16.86.3/24');
  assert.equal(await requestAddress(l, { container29: 'db' }), '172.16.86.4/24');
  // The container named web again: its address back.
  const again = await requestAddress(l, { container29: 'web' });
  assert.equal(again, first);
  createEndpoint(l, EP(2), again, 'web');
  assert.equal(store.getReservation(NET, 'web')?.endpointId, EP(2));
});

test('20.10: docker run --ip of the reserved address works under its name, and is refused in one line under another', async () => {
  const l = await lab();
  const first = await requestAddress(l);
  createEndpoint(l, EP(1), first, 'web');
  await remove(l, EP(1), first);
  assert.equal(await requestAddress(l), '172.16.86.3/24', 'automatic allocation skips it');
  // `--ip 172.16.86.2` under another name: the IPAM cannot tell (no name in its request), CreateEndpoint refuses.
  assert.equal(await requestAddress(l, { ip: '172.16.86.2' }), first);
  const refused = refusal(() => createEndpoint(l, EP(2), first, 'other'));
  assert.equal(
    refused.message.split('\n').length === 1 &&
      refused.message.startsWith('address 172.16.86.2 is reserved for lanplug.identity=web on network aaaaaaaaaaaa'),
    true,
    refused.message,
  );
  assert.match(refused.message, /lanplug forget aaaaaaaaaaaa web$/);
  assert.equal(store.getEndpoint(NET, EP(2)), null, 'nothing recorded');
  await l.call('/IpamDriver.ReleaseAddress', { PoolID: l.poolId, Address: '172.16.86.2' });
  assert.match(refusal(() => createEndpoint(l, EP(2), first, null)).message, /reserved for lanplug\.identity=web/);
  await l.call('/IpamDriver.ReleaseAddress', { PoolID: l.poolId, Address: '172.16.86.2' });
  assert.equal(await requestAddress(l), '172.16.86.4/24', 'still kept after the refused attempts');
  // Under its own name: the address, and the reservation held again.
  assert.equal(await requestAddress(l, { ip: '172.16.86.2' }), first);
  createEndpoint(l, EP(3), first, 'web');
  assert.equal(store.getReservation(NET, 'web')?.endpointId, EP(3));
});

test('lanplug forget: refused while a container holds it; then the address is free for anyone', async () => {
  const l = await lab();
  const first = await requestAddress(l);
  createEndpoint(l, EP(1), first, 'web');
  await assert.rejects(forgetReservation(store, l.book, NET, 'web'), (err: Error) => {
    assert.equal(
      err.message,
      `lanplug.identity=web on network aaaaaaaaaaaa is held by endpoint 111111111111: remove its container first (docker rm -f), then forget it`,
    );
    return true;
  });
  await remove(l, EP(1), first);
  await assert.rejects(
    forgetReservation(store, l.book, NET, 'nobody'),
    /has no reservation for lanplug\.identity=nobody/,
  );
  await forgetReservation(store, l.book, NET, 'web');
  assert.equal(store.getReservation(NET, 'web'), null);
  assert.equal(await requestAddress(l), first, 'the first free address again');
});

test('expiry: a reservation idle for --identity-expire goes with its kept claim; a held one is seen, not expired', async () => {
  const l = await lab();
  const a = await requestAddress(l);
  createEndpoint(l, EP(1), a, 'web');
  const b = await requestAddress(l);
  createEndpoint(l, EP(2), b, 'db');
  await remove(l, EP(1), a);
  const idleSince = store.getReservation(NET, 'web')?.lastSeen ?? 0;
  const hour = 3_600_000;
  const early = await expireReservations(store, l.book, silentLogger, {
    now: idleSince + hour - 1,
    expireMs: hour,
    dryRun: false,
  });
  assert.deepEqual(early.expired, []);
  const dry = await expireReservations(store, l.book, silentLogger, {
    now: idleSince + hour,
    expireMs: hour,
    dryRun: true,
  });
  assert.deepEqual(dry.expired, ['aaaaaaaaaaaa/web']);
  assert.notEqual(store.getReservation(NET, 'web'), null, 'a dry run changes nothing');
  const late = await expireReservations(store, l.book, silentLogger, {
    now: idleSince + 2 * hour,
    expireMs: hour,
    dryRun: false,
  });
  assert.deepEqual(late.expired, ['aaaaaaaaaaaa/web']);
  assert.equal(store.getReservation(NET, 'web'), null);
  assert.equal(store.getReservation(NET, 'db')?.lastSeen, idleSince + 2 * hour, 'held: seen now');
  assert.equal(await requestAddress(l), a, 'its address free again');
});

test('docker network rm drops the reservations of its identities with it: those keeping a claim at the ReleasePool that follows, the claim freed', async () => {
  const l = await lab();
  const a = await requestAddress(l);
  createEndpoint(l, EP(1), a, 'web');
  await remove(l, EP(1), a);
  createEndpoint(l, EP(2), await requestAddress(l), 'cam');
  l.driver.deleteEndpoint(NET, EP(2));
  assert.notEqual(store.getReservation(NET, 'web'), null);
  // Docker's order: the driver's DeleteNetwork, then the IPAM's ReleasePool.
  l.driver.deleteNetwork(NET);
  assert.deepEqual(
    store.listReservations().map((r) => r.name),
    ['web'],
  );
  await l.call('/IpamDriver.ReleasePool', { PoolID: l.poolId });
  assert.deepEqual(store.listReservations(), []);
});

test('the IPAM ReleasePool before the driver DeleteNetwork: the reservation keeping a claim in the pool goes all the same', async () => {
  const l = await lab();
  const a = await requestAddress(l);
  createEndpoint(l, EP(1), a, 'web');
  await remove(l, EP(1), a);
  await l.call('/IpamDriver.ReleasePool', { PoolID: l.poolId });
  l.driver.deleteNetwork(NET);
  assert.deepEqual(store.listReservations(), []);
});

test("the same address released in another network's pool (overlapping subnets, one on Docker's default IPAM) is not kept for a reservation a live container holds there", async () => {
  const l = await lab();
  // Network 2: the lanplug driver on Docker's own IPAM, the same subnet on another parent; its container
  // "cam" holds 172.16.86.9 with an identity, so its reservation names that address.
  const NET2 = 'b'.repeat(64);
  l.driver.createNetwork({
    networkId: NET2,
    driver: 'macvlan',
    options: { parent: 'eth1' },
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  });
  l.driver.createEndpoint('macvlan', {
    networkId: NET2,
    endpointId: EP(2),
    ipv4: parsePrefix('172.16.86.9/24'),
    ipv6: null,
    mac: null,
    endpointOptions: { 'lanplug.identity': 'cam' },
  });
  // On the lanplug IPAM's network, a container without an identity has 172.16.86.9, then goes.
  const address = await requestAddress(l, { ip: '172.16.86.9' });
  createEndpoint(l, EP(3), address, null);
  await remove(l, EP(3), address);
  assert.deepEqual(store.getReservation(NET2, 'cam')?.kept, []);
  assert.equal(await requestAddress(l, { ip: '172.16.86.9' }), '172.16.86.9/24');
});

test('lanplug forget of a name no identity can have (terminal escapes, 10,000 characters): a one-line refusal that shows it escaped and short', async () => {
  await lab();
  for (const name of ['\u001b]0;owned\u0007\u001b[2J', 'x'.repeat(10_000), 'two\nlines']) {
    await assert.rejects(forgetReservation(store, null, NET, name), (err: Error) => {
      assert.ok(err instanceof LanplugError && err.code === 'InvalidArgument', String(err));
      assert.ok(
        [...err.message].every((c) => c >= ' ' && c !== '\u007f'),
        `control characters in ${JSON.stringify(err.message)}`,
      );
      assert.ok(err.message.length < 300, `${err.message.length} characters`);
      return true;
    });
  }
});

test('a pool whose free addresses reservations keep: the refusal says how many they keep and where to see them', async () => {
  const l = await lab();
  const first = await requestAddress(l);
  createEndpoint(l, EP(1), first, 'web');
  await remove(l, EP(1), first);
  for (let n = 3; n <= 254; n++) assert.equal(await requestAddress(l), `172.16.86.${n}/24`);
  await assert.rejects(
    requestAddress(l),
    /^LanplugError: No available addresses on this pool \(1 of its addresses kept for lanplug\.identity reservations no container holds: lanplug ls --identities lists them/,
  );
});
