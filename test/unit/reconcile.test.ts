/**
 * Teardown that never strands state, and the reconciler that finishes what a
 * crash or a refused delete left, on the in-memory link table. The kernel lane
 * runs the same paths against the real kernel.
 */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetworkDriver } from '../../src/driver/network-driver';
import { adoptLegacyLinks } from '../../src/driver/link-ownership';
import { reconcile } from '../../src/driver/reconcile';
import { PARKED_LINK_GROUP } from '../../src/link/reaper';
import type { CreateNetworkRequest } from '../../src/driver/requests';
import { LanplugError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { EBUSY } from '../../src/netlink/errno';
import { SqliteStore } from '../../src/state/sqlite';
import { FakeRtnl } from '../support/fake-rtnl';

const NET = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);
const EP1 = '1'.repeat(64);
const EP2 = '2'.repeat(64);
const ALL = { vlan: true, ipvlan: true, dummy: true };

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-reconcile-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function network(
  id: string,
  options: Record<string, string>,
  extra: Partial<CreateNetworkRequest> = {},
): CreateNetworkRequest {
  return {
    networkId: id,
    driver: 'macvlan',
    options,
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
    ...extra,
  };
}

function attach(driver: NetworkDriver, endpointId: string, address: string, networkId = NET): void {
  driver.createEndpoint('macvlan', { networkId, endpointId, ipv4: parsePrefix(address), ipv6: null, mac: null });
  driver.join('macvlan', networkId, endpointId);
}

function setup(features = ALL): { rtnl: FakeRtnl; driver: NetworkDriver } {
  const rtnl = new FakeRtnl(features);
  return { rtnl, driver: new NetworkDriver(rtnl, store, silentLogger) };
}

test('a refused endpoint delete drops the row, keeps a leftover, and the reconciler finishes it', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET, { parent: 'eth0' }));
  attach(driver, EP1, '172.16.86.2/24');
  rtnl.fail('delete', 'lp-111111111111', EBUSY);
  assert.throws(() => driver.deleteEndpoint(NET, EP1), LanplugError);
  assert.equal(store.getEndpoint(NET, EP1), null, 'Docker forgets the endpoint; so does lanplug');
  assert.deepEqual(
    store.listLeftovers().map((l) => [l.kind, l.name]),
    [['endpoint-link', 'lp-111111111111']],
  );
  rtnl.heal();
  const report = reconcile(rtnl, store, silentLogger);
  assert.deepEqual(
    report.actions.map((a) => [a.action, a.target, a.outcome]),
    [['delete-link', 'lp-111111111111', 'done']],
  );
  assert.equal(rtnl.getLink('lp-111111111111'), null);
  assert.deepEqual(store.listLeftovers(), []);
});

test('network removal tries every link and the parent, drops the rows, keeps what failed', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET, { parent: 'eth0.50' }));
  attach(driver, EP1, '172.16.86.2/24');
  attach(driver, EP2, '172.16.86.3/24');
  rtnl.fail('delete', 'lp-111111111111', EBUSY);
  rtnl.fail('delete', 'eth0.50', EBUSY);
  assert.throws(() => driver.deleteNetwork(NET), /2 steps failed/);
  assert.equal(rtnl.getLink('lp-222222222222'), null, 'the second link went although the first would not');
  assert.equal(store.getNetwork(NET), null);
  assert.deepEqual(
    store
      .listLeftovers()
      .map((l) => l.name)
      .sort(),
    ['eth0.50', 'lp-111111111111'],
  );
  // The orphaned sub-interface stays lanplug's: a new network on it adopts it and removes it at the end.
  rtnl.heal();
  driver.createNetwork(network(OTHER, { parent: 'eth0.50' }));
  assert.equal(store.getNetwork(OTHER)?.parentCreated, true);
  assert.deepEqual(
    store.listLeftovers().map((l) => l.name),
    ['lp-111111111111'],
  );
  driver.deleteNetwork(OTHER);
  assert.equal(rtnl.getLink('eth0.50'), null);
  reconcile(rtnl, store, silentLogger);
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
  assert.deepEqual(store.listLeftovers(), []);
});

test('a parent whose release failed is retried by the reconciler', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET, {}));
  rtnl.fail('delete', 'dm-aaaaaaaaaaaa', EBUSY);
  assert.throws(() => driver.deleteNetwork(NET), /delete link dm-aaaaaaaaaaaa: EBUSY/);
  rtnl.heal();
  const report = reconcile(rtnl, store, silentLogger);
  assert.deepEqual(
    report.actions.map((a) => [a.action, a.target, a.outcome]),
    [['delete-link', 'dm-aaaaaaaaaaaa', 'done']],
  );
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
});

test("reconcile: orphan endpoint links, probes and DHCP asking links go; owned links, the user's links and Docker's dm- links stay", () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET, { parent: 'eth0' }));
  driver.createEndpoint('macvlan', {
    networkId: NET,
    endpointId: EP1,
    ipv4: parsePrefix('172.16.86.2/24'),
    ipv6: null,
    mac: null,
  });
  driver.join('macvlan', NET, EP1); // a crash before Docker got the answer: the row and the link exist
  const eth0 = rtnl.getLink('eth0');
  assert.ok(eth0);
  rtnl.add({ name: 'lp-999999999999', kind: 'macvlan', mtu: 1500, mac: null, up: false, parentIndex: eth0.index });
  rtnl.add({ name: 'lpp-abcdefb', kind: 'bridge', mtu: 1500, mac: null, up: false, parentIndex: null });
  rtnl.add({ name: 'lpd-0a1b2c3d', kind: 'macvlan', mtu: 1500, mac: null, up: true, parentIndex: eth0.index });
  // An exchange is asking the DHCP server through this one right now.
  rtnl.add({ name: 'lpd-99999999', kind: 'macvlan', mtu: 1500, mac: null, up: true, parentIndex: eth0.index });
  const askingLinksInUse = new Set(['lpd-99999999']);
  rtnl.add({ name: 'eth0.77', kind: 'vlan', mtu: 1500, mac: null, up: true, parentIndex: eth0.index, vlanId: 77 });
  rtnl.add({ name: 'dm-cccccccccccc', kind: 'dummy', mtu: 1500, mac: null, up: true, parentIndex: null });
  rtnl.add({ name: 'lp-notours', kind: 'veth', mtu: 1500, mac: null, up: true, parentIndex: null });
  const dry = reconcile(rtnl, store, silentLogger, { dryRun: true, askingLinksInUse });
  assert.deepEqual(
    dry.actions.map((a) => [a.action, a.target, a.outcome]),
    [
      ['delete-link', 'lp-999999999999', 'planned'],
      ['delete-link', 'lpp-abcdefb', 'planned'],
      ['delete-link', 'lpd-0a1b2c3d', 'planned'],
    ],
  );
  assert.notEqual(rtnl.getLink('lp-999999999999'), null, 'a dry run changes nothing');
  reconcile(rtnl, store, silentLogger, { askingLinksInUse });
  assert.deepEqual(rtnl.names(), [
    'dm-cccccccccccc',
    'eth0',
    'eth0.77',
    'lo',
    'lp-111111111111',
    'lp-notours',
    'lpd-99999999',
  ]);
});

test('reconcile makes a missing parent lanplug owns again, and waits for a missing base', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET, { parent: 'eth0.50' }));
  driver.createNetwork(network(OTHER, {}));
  for (const name of ['eth0.50', 'dm-bbbbbbbbbbbb']) {
    const link = rtnl.getLink(name);
    if (link !== null) rtnl.deleteLink(link);
  }
  const report = reconcile(rtnl, store, silentLogger);
  assert.deepEqual(
    report.actions.map((a) => [a.action, a.target, a.outcome]),
    [
      ['create-parent', 'eth0.50', 'done'],
      ['create-parent', 'dm-bbbbbbbbbbbb', 'done'],
    ],
  );
  assert.equal(rtnl.getLink('eth0.50')?.vlanId, 50);
  const eth0 = rtnl.getLink('eth0');
  if (eth0 !== null) rtnl.deleteLink(eth0);
  assert.deepEqual(
    reconcile(rtnl, store, silentLogger).actions.filter((a) => a.target === 'eth0.50'),
    [],
    'no base: nothing to do until it returns',
  );
});

test("a parent's admin state is never changed: a down parent stays down, its containers still attach", () => {
  const { rtnl, driver } = setup();
  const eth0 = rtnl.getLink('eth0');
  assert.ok(eth0);
  eth0.up = false;
  driver.createNetwork(network(NET, { parent: 'eth0' }));
  attach(driver, EP1, '172.16.86.2/24');
  assert.equal(rtnl.getLink('eth0')?.up, false);
  assert.notEqual(rtnl.getLink('lp-111111111111'), null);
  driver.createNetwork(network(OTHER, { parent: 'eth0.60' }));
  assert.equal(rtnl.getLink('eth0')?.up, false, 'not even to make a sub-interface on it');
  assert.equal(rtnl.getLink('eth0.60')?.up, true, 'a sub-interface lanplug makes is made up');
});

test('a replayed CreateNetwork must ask for the same network', () => {
  const { driver } = setup();
  driver.createNetwork(network(NET, { parent: 'eth0', macvlan_mode: 'vepa' }));
  driver.createNetwork(network(NET, { parent: 'eth0', macvlan_mode: 'vepa' }));
  const cases: [CreateNetworkRequest, string][] = [
    [
      network(NET, { parent: 'eth0' }),
      'network aaaaaaaaaaaa already exists with mode vepa; this request has mode bridge',
    ],
    [
      network(NET, { parent: 'eth0.5', macvlan_mode: 'vepa' }),
      'network aaaaaaaaaaaa already exists with parent eth0; this request has parent eth0.5',
    ],
    [
      network(
        NET,
        { parent: 'eth0', macvlan_mode: 'vepa' },
        { ipv4: [{ pool: parsePrefix('10.0.0.0/8'), gateway: null }] },
      ),
      'network aaaaaaaaaaaa already exists with IPv4 subnets 172.16.86.0/24 gateway 172.16.86.1; this request has IPv4 subnets 10.0.0.0/8',
    ],
    [
      network(NET, { parent: 'eth0', macvlan_mode: 'vepa', 'com.docker.network.driver.mtu': '1400' }),
      'network aaaaaaaaaaaa already exists with mtu of the parent; this request has mtu 1400',
    ],
  ];
  for (const [request, message] of cases) {
    assert.throws(
      () => driver.createNetwork(request),
      (err: unknown) => err instanceof LanplugError && err.code === 'Conflict' && err.message === message,
    );
  }
});

test('hostile options: __proto__ is an unknown key, refused; nothing recorded', async () => {
  const { decodeCreateNetwork } = await import('../../src/api/docker/wire');
  const { parseBody } = await import('../../src/api/docker/decode');
  const body = parseBody(
    `{"NetworkID":"${NET}","Options":{"com.docker.network.generic":{"__proto__":"x","parent":"eth0"}},"IPv4Data":[],"IPv6Data":[]}`,
  );
  const request = decodeCreateNetwork('macvlan', body);
  assert.deepEqual(Object.keys(request.options).sort(), ['__proto__', 'parent']);
  const { driver } = setup();
  assert.throws(() => driver.createNetwork(request), /^LanplugError: unknown option '__proto__' for lanplug-macvlan/);
  assert.equal(store.listNetworks().length, 0);
});

/** A daemon whose links carry group 4242, as the daemon's are its state directory's. */
function ownedSetup(): { rtnl: FakeRtnl; driver: NetworkDriver } {
  const rtnl = new FakeRtnl(ALL, 4242);
  return { rtnl, driver: new NetworkDriver(rtnl, store, silentLogger) };
}

test('a VLAN parent lanplug made, lost and the OS made again (ifupdown, NetworkManager) is the user’s: never deleted', () => {
  const { rtnl, driver } = ownedSetup();
  const remake = (): void => {
    const made = rtnl.getLink('eth0.50');
    const eth0 = rtnl.getLink('eth0');
    assert.ok(made && eth0);
    rtnl.deleteLink(made);
    rtnl.add({ name: 'eth0.50', kind: 'vlan', mtu: 1500, mac: null, up: true, parentIndex: eth0.index, vlanId: 50 });
  };
  // Removed while the network exists, made again by the OS: the network goes, the OS's eth0.50 stays.
  driver.createNetwork(network(NET, { parent: 'eth0.50' }));
  assert.equal(rtnl.getLink('eth0.50')?.group, 4242, "lanplug's own carries its group");
  remake();
  driver.deleteNetwork(NET);
  assert.notEqual(rtnl.getLink('eth0.50'), null, 'network rm keeps it');
  // A removal that failed (a leftover), then the OS removed and made it again: reconcile forgets, keeps the link.
  rtnl.deleteLink(rtnl.getLink('eth0.50') ?? { index: 0, name: '' });
  driver.createNetwork(network(OTHER, { parent: 'eth0.50' }));
  rtnl.fail('delete', 'eth0.50', EBUSY);
  assert.throws(() => driver.deleteNetwork(OTHER), LanplugError);
  rtnl.heal();
  remake();
  assert.deepEqual(
    reconcile(rtnl, store, silentLogger).actions.map((a) => [a.action, a.target, a.why]),
    [['forget-leftover', 'eth0.50', 'the link of that name is no longer the one lanplug made']],
  );
  assert.notEqual(rtnl.getLink('eth0.50'), null);
});

test("reconcile leaves another daemon's links alone: lanplug's names in another link group are not its own", () => {
  const { rtnl, driver } = ownedSetup();
  driver.createNetwork(network(NET, { parent: 'eth0' }));
  const eth0 = rtnl.getLink('eth0');
  assert.ok(eth0);
  const theirs = { mtu: 1500, mac: null, up: true, group: 31337 };
  rtnl.add({ name: 'lp-999999999999', kind: 'macvlan', parentIndex: eth0.index, ...theirs });
  rtnl.add({ name: 'lh-999999999999', kind: 'macvlan', parentIndex: eth0.index, ...theirs });
  rtnl.add({ name: 'lpd-0a1b2c3d', kind: 'macvlan', parentIndex: eth0.index, ...theirs });
  rtnl.add({ name: 'lpp-abcdefb', kind: 'bridge', parentIndex: null, ...theirs });
  rtnl.add({ name: `lpe-${eth0.index}`, kind: 'macvlan', parentIndex: eth0.index, ...theirs });
  rtnl.add({ name: 'lp-888888888888', kind: 'macvlan', parentIndex: eth0.index, mtu: 1500, mac: null, up: true });
  rtnl.add({
    name: 'lp-777777777777',
    kind: 'macvlan',
    parentIndex: eth0.index,
    mtu: 1500,
    mac: null,
    up: true,
    group: 4242,
  });
  assert.deepEqual(
    reconcile(rtnl, store, silentLogger).actions.map((a) => [a.action, a.target]),
    [['delete-link', 'lp-777777777777']],
    'only its own orphan',
  );
  driver.deleteNetwork(NET);
  assert.notEqual(rtnl.getLink(`lpe-${eth0.index}`), null, "another daemon's eye stays when this one's network goes");
});

test('the first start with link groups adopts the links an earlier lanplug made and its store records, once', () => {
  const legacy = new FakeRtnl(ALL); // links made without a group, as every lanplug before made them
  const old = new NetworkDriver(legacy, store, silentLogger);
  old.createNetwork(
    network(
      NET,
      { parent: 'eth0.50', host_access: 'true' },
      { auxAddresses: new Map([['host', parseAddress('172.16.86.250')]]) },
    ),
  );
  attach(old, EP1, '172.16.86.2/24');
  const eth0 = legacy.getLink('eth0');
  assert.ok(eth0);
  legacy.add({ name: 'lp-999999999999', kind: 'macvlan', mtu: 1500, mac: null, up: false, parentIndex: eth0.index });
  legacy.add({
    name: 'lp-parked00000',
    kind: 'macvlan',
    mtu: 1500,
    mac: null,
    up: false,
    parentIndex: eth0.index,
    group: PARKED_LINK_GROUP,
  });
  legacy.add({
    name: 'lp-elsewhere00',
    kind: 'macvlan',
    mtu: 1500,
    mac: null,
    up: false,
    parentIndex: eth0.index,
    group: 31337,
  });
  // The same table, now seen by a daemon whose links carry group 4242.
  const now = legacy;
  now.ownGroup = 4242;
  // An eye under its old name on the network's parent: it answered ARP for the host's addresses.
  const vlan = now.getLink('eth0.50');
  assert.ok(vlan);
  now.add({ name: `lpe-${vlan.index}`, kind: 'macvlan', mtu: 1500, mac: null, up: true, parentIndex: vlan.index });
  assert.equal(adoptLegacyLinks(now, store, silentLogger), true, 'every link handled');
  const group = (name: string): number | undefined => now.getLink(name)?.group;
  assert.deepEqual(
    ['eth0.50', 'lp-111111111111', 'lh-aaaaaaaaaaaa'].map(group),
    [4242, 4242, 4242],
    'the parent, the endpoint link and the shim it records',
  );
  assert.equal(
    group('lp-999999999999'),
    0,
    "one no record here names is left alone: it may be another lanplug's of the version before",
  );
  assert.equal(now.getLink(`lpe-${vlan.index}`), null, 'the old eye goes');
  assert.equal(now.getLink('lp-parked00000'), null, 'the old parked group goes, as it always did');
  assert.equal(group('lp-elsewhere00'), 31337, "another daemon's link stays as it is");
  assert.deepEqual(reconcile(now, store, silentLogger).actions, [], 'nothing left to do');
  // A link the kernel refuses to move: logged, the rest handled, and the adoption tried again at the next start.
  now.setGroup(now.getLink('lp-111111111111') ?? { index: 0, name: '' }, 0);
  const refusing = Object.assign(Object.create(now) as FakeRtnl, {
    setGroup: (): boolean => {
      throw new LanplugError('Kernel', 'EBUSY');
    },
  });
  assert.equal(adoptLegacyLinks(refusing, store, silentLogger), false);
});
