/**
 * The driver's decisions against an in-memory link table (FakeRtnl) and the
 * real SQLite store. The kernel lane and the Docker lane run the same paths
 * against the real kernel.
 */
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetworkDriver } from '../../src/driver/network-driver';
import type { CreateNetworkRequest } from '../../src/driver/requests';
import type { Lease } from '../../src/model/lease';
import type { DriverKind } from '../../src/model/network';
import { LanplugError } from '../../src/errors';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { silentLogger } from '../../src/log';
import { SqliteStore } from '../../src/state/sqlite';
import { FakeRtnl, type FakeKernelFeatures } from '../support/fake-rtnl';

const NET_A = 'a'.repeat(64);
const NET_B = 'b'.repeat(64);
const EP_1 = '1'.repeat(64);
const EP_2 = '2'.repeat(64);

let dir: string;
let store: SqliteStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-unit-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function setup(features?: FakeKernelFeatures): { rtnl: FakeRtnl; driver: NetworkDriver } {
  const rtnl = new FakeRtnl(features);
  return { rtnl, driver: new NetworkDriver(rtnl, store, silentLogger) };
}

function network(
  id: string,
  options: Record<string, string>,
  extra: Partial<CreateNetworkRequest> = {},
  driver: DriverKind = 'macvlan',
): CreateNetworkRequest {
  return {
    networkId: id,
    driver,
    options,
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
    ...extra,
  };
}

function endpoint(networkId: string, endpointId: string, address = '172.16.86.2/24', mac: string | null = null) {
  return { networkId, endpointId, ipv4: parsePrefix(address), ipv6: null, mac };
}

function refusal(fn: () => unknown): LanplugError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof LanplugError);
    return err;
  }
  assert.fail('expected the call to be refused');
}

async function refusalAsync(promise: Promise<unknown>): Promise<LanplugError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof LanplugError);
    return err;
  }
  assert.fail('expected the call to be refused');
}

test('seed bridge tutorial: MAC derived and returned, link created in the network mode, gateway answered', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  const created = driver.createEndpoint('macvlan', endpoint(NET_A, EP_1));
  assert.equal(created.assignedMac, '02:42:ac:10:56:02');
  const joined = driver.join('macvlan', NET_A, EP_1);
  assert.equal(joined.linkName, 'lp-111111111111');
  assert.equal(joined.gatewayIpv4?.text, '172.16.86.1');
  const link = rtnl.getLink('lp-111111111111');
  assert.equal(link?.mac, '02:42:ac:10:56:02');
  assert.equal(link?.macvlanMode, 'bridge');
  assert.equal(link?.parentIndex, rtnl.getLink('eth0')?.index);
  driver.leave(NET_A, EP_1);
  driver.deleteEndpoint(NET_A, EP_1);
  assert.equal(rtnl.getLink('lp-111111111111'), null);
  driver.deleteEndpoint(NET_A, EP_1); // twice: still success
  driver.deleteNetwork(NET_A);
  driver.deleteNetwork(NET_A);
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
  assert.equal(store.getNetwork(NET_A), null);
});

test('a user MAC is used as given and not echoed back', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  assert.equal(
    driver.createEndpoint('macvlan', endpoint(NET_A, EP_1, '172.16.86.9/24', '02:AA:bb:cc:dd:ee')).assignedMac,
    null,
  );
  driver.join('macvlan', NET_A, EP_1);
  assert.equal(rtnl.getLink('lp-111111111111')?.mac, '02:aa:bb:cc:dd:ee');
});

test('a replayed CreateNetwork succeeds and changes nothing', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  assert.equal(store.listNetworks().length, 1);
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
});

test('bad input leaves no state row and no link', () => {
  const { rtnl, driver } = setup();
  const cases: [Record<string, string>, string][] = [
    [{ parent: 'nosuch0' }, '-o parent interface was not found on the host: nosuch0'],
    [{ parent: 'eth9.10' }, '-o parent interface was not found on the host: eth9'],
    [
      { parent: 'eth0', macvlan_mode: 'bogus' },
      "requested macvlan mode 'bogus' is not valid, 'bridge' mode is the macvlan driver default; accepted: bridge, vepa, private, passthru",
    ],
    [
      { parent: 'eth0', 'com.docker.network.driver.mtu': '9000' },
      '-o com.docker.network.driver.mtu=9000 is larger than the MTU of parent eth0 (1500)',
    ],
    [
      { parent: 'eth0', 'com.docker.network.driver.mtu': '60' },
      '-o com.docker.network.driver.mtu=60 is below the minimum of 68 for IPv4',
    ],
  ];
  for (const [options, message] of cases) {
    assert.equal(refusal(() => driver.createNetwork(network(NET_A, options))).message, message);
  }
  assert.equal(store.listNetworks().length, 0);
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
});

test('passthru is exclusive both ways, in Docker wording', () => {
  const { driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  assert.equal(
    refusal(() => driver.createNetwork(network(NET_B, { parent: 'eth0', macvlan_mode: 'passthru' }))).message,
    'cannot use mode passthru, macvlan network aaaaaaaaaaaa is already using parent interface eth0',
  );
  driver.deleteNetwork(NET_A);
  driver.createNetwork(network(NET_A, { parent: 'eth0', macvlan_mode: 'passthru' }));
  assert.equal(
    refusal(() => driver.createNetwork(network(NET_B, { parent: 'eth0' }))).message,
    'macvlan network aaaaaaaaaaaa is already using parent interface eth0 in mode passthru',
  );
  driver.createEndpoint('macvlan', endpoint(NET_A, EP_1));
  const second = refusal(() => driver.createEndpoint('macvlan', endpoint(NET_A, EP_2, '172.16.86.3/24')));
  assert.equal(second.code, 'Conflict');
  assert.match(second.message, /passthru allows one container per parent/);
});

test('several networks share a parent in non-passthru modes', () => {
  const { driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  driver.createNetwork(network(NET_B, { parent: 'eth0', macvlan_mode: 'private' }));
  assert.equal(store.listNetworks().length, 2);
});

test('802.1Q parent on a kernel without 8021q: plain error, nothing left', () => {
  const { rtnl, driver } = setup();
  const err = refusal(() => driver.createNetwork(network(NET_A, { parent: 'eth0.50' })));
  assert.equal(err.code, 'Unsupported');
  assert.match(err.message, /^cannot create 802\.1Q sub-interface eth0\.50: this kernel has no 802\.1Q VLAN support/);
  assert.equal(store.listNetworks().length, 0);
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
});

test('802.1Q parent: created once, kept while used, removed by the last network in either order', () => {
  for (const order of [
    [NET_A, NET_B],
    [NET_B, NET_A],
  ]) {
    const { rtnl, driver } = setup({ vlan: true, ipvlan: true, dummy: true });
    driver.createNetwork(network(NET_A, { parent: 'eth0.50' }));
    assert.equal(rtnl.getLink('eth0.50')?.vlanId, 50);
    assert.equal(rtnl.getLink('eth0.50')?.up, true);
    driver.createNetwork(network(NET_B, { parent: 'eth0.50' }));
    driver.deleteNetwork(order[0] ?? '');
    assert.notEqual(rtnl.getLink('eth0.50'), null);
    driver.deleteNetwork(order[1] ?? '');
    assert.equal(rtnl.getLink('eth0.50'), null);
  }
});

test('a sub-interface the user made is used and never deleted', () => {
  const { rtnl, driver } = setup({ vlan: true, ipvlan: true, dummy: true });
  const eth0 = rtnl.getLink('eth0');
  rtnl.add({
    name: 'eth0.60',
    kind: 'vlan',
    mtu: 1500,
    mac: null,
    up: true,
    parentIndex: eth0?.index ?? 0,
    vlanId: 60,
  });
  driver.createNetwork(network(NET_A, { parent: 'eth0.60' }));
  driver.deleteNetwork(NET_A);
  assert.notEqual(rtnl.getLink('eth0.60'), null);
});

test('a sub-interface replaced by something else is not deleted', () => {
  const { rtnl, driver } = setup({ vlan: true, ipvlan: true, dummy: true });
  driver.createNetwork(network(NET_A, { parent: 'eth0.50' }));
  const made = rtnl.getLink('eth0.50');
  if (made !== null) rtnl.deleteLink(made);
  rtnl.add({ name: 'eth0.50', kind: 'bridge', mtu: 1500, mac: null, up: true, parentIndex: null });
  driver.deleteNetwork(NET_A);
  assert.equal(rtnl.getLink('eth0.50')?.kind, 'bridge');
});

test('no parent: a private parent (bridge where the kernel lacks dummy), internal, removed with the network', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET_A, {}));
  assert.equal(rtnl.getLink('dm-aaaaaaaaaaaa')?.kind, 'bridge');
  driver.createEndpoint('macvlan', endpoint(NET_A, EP_1));
  const joined = driver.join('macvlan', NET_A, EP_1);
  assert.equal(joined.gatewayIpv4, null, 'internal networks answer no gateway');
  driver.deleteEndpoint(NET_A, EP_1);
  driver.deleteNetwork(NET_A);
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
  const withDummy = setup({ vlan: true, ipvlan: true, dummy: true });
  withDummy.driver.createNetwork(network(NET_B, {}));
  assert.equal(withDummy.rtnl.getLink('dm-bbbbbbbbbbbb')?.kind, 'dummy');
});

test('an address Docker gives out twice in one network (seen after dockerd or lanplug was killed) is refused, naming the endpoint that holds it; that endpoint is kept', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  driver.createEndpoint('macvlan', endpoint(NET_A, EP_1));
  driver.join('macvlan', NET_A, EP_1);
  assert.equal(
    refusal(() => driver.createEndpoint('macvlan', endpoint(NET_A, EP_2))).message,
    'address 172.16.86.2 of this network is already held by endpoint 111111111111 (MAC 02:42:ac:10:56:02): Docker gave it out twice (as it can after dockerd was killed while starting containers), or forgot that endpoint (lanplug was killed while answering it; lanplug gc drops it once Docker no longer knows it); remove this container and run it again for another address',
  );
  assert.notEqual(store.getEndpoint(NET_A, EP_1), null);
  assert.notEqual(rtnl.getLink('lp-111111111111'), null);
  // The same MAC for another address: a user's --mac-address given twice.
  assert.match(
    refusal(() => driver.createEndpoint('macvlan', endpoint(NET_A, EP_2, '172.16.86.9/24', '02:42:ac:10:56:02')))
      .message,
    /^MAC address 02:42:ac:10:56:02 is already used by endpoint 111111111111; give each container its own --mac-address$/,
  );
});

test("the LAN check's frame that found no link because the parent was deleted meanwhile is said as Join says it", () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  const enxio = new LanplugError('Kernel', 'send a frame on lpe1-2: ENXIO (No such device or address)', { errno: 6 });
  assert.equal(driver.explainLanCheckFailure(NET_A, enxio), enxio, 'the parent is there: as it is');
  rtnl.deleteLink(rtnl.getLink('eth0') ?? assert.fail('no eth0'));
  const explained = driver.explainLanCheckFailure(NET_A, enxio);
  assert.ok(explained instanceof LanplugError);
  assert.equal(
    explained.message,
    'network aaaaaaaaaaaa on parent eth0: -o parent interface was not found on the host: eth0',
  );
  const other = new LanplugError('Conflict', '172.16.86.2 is in use');
  assert.equal(driver.explainLanCheckFailure(NET_A, other), other);
});

test('DeleteNetwork removes endpoint links Docker left behind', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  driver.createEndpoint('macvlan', endpoint(NET_A, EP_1));
  driver.join('macvlan', NET_A, EP_1);
  driver.deleteNetwork(NET_A);
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
});

test('MTU is applied to endpoint links', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0', 'com.docker.network.driver.mtu': '1400' }));
  driver.createEndpoint('macvlan', endpoint(NET_A, EP_1));
  driver.join('macvlan', NET_A, EP_1);
  assert.equal(rtnl.getLink('lp-111111111111')?.mtu, 1400);
});

test('dual stack: the gateway of the subnet holding each address; none for gateway-less subnets', () => {
  const { driver } = setup();
  driver.createNetwork(
    network(
      NET_A,
      { parent: 'eth0' },
      {
        ipv4: [
          { pool: parsePrefix('192.168.216.0/24'), gateway: parseAddress('192.168.216.1') },
          { pool: parsePrefix('192.168.218.0/24'), gateway: null },
        ],
        ipv6: [{ pool: parsePrefix('2001:db8:abc8::/64'), gateway: parseAddress('2001:db8:abc8::10') }],
      },
    ),
  );
  driver.createEndpoint('macvlan', {
    networkId: NET_A,
    endpointId: EP_1,
    ipv4: parsePrefix('192.168.216.2/24'),
    ipv6: parsePrefix('2001:db8:abc8::2/64'),
    mac: null,
  });
  const first = driver.join('macvlan', NET_A, EP_1);
  assert.equal(first.gatewayIpv4?.text, '192.168.216.1');
  assert.equal(first.gatewayIpv6?.text, '2001:db8:abc8::10');
  driver.createEndpoint('macvlan', {
    networkId: NET_A,
    endpointId: EP_2,
    ipv4: parsePrefix('192.168.218.2/24'),
    ipv6: null,
    mac: null,
  });
  const second = driver.join('macvlan', NET_A, EP_2);
  assert.equal(second.gatewayIpv4, null);
  assert.equal(second.gatewayIpv6, null);
});

test('IPv6-only endpoint gets a random locally administered MAC', () => {
  const { driver } = setup();
  driver.createNetwork(
    network(NET_A, { parent: 'eth0' }, { ipv4: [], ipv6: [{ pool: parsePrefix('2001:db8::/64'), gateway: null }] }),
  );
  const { assignedMac } = driver.createEndpoint('macvlan', {
    networkId: NET_A,
    endpointId: EP_1,
    ipv4: null,
    ipv6: parsePrefix('2001:db8::2/64'),
    mac: null,
  });
  assert.match(assignedMac ?? '', /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/);
});

test('ipvlan: no MAC, custom MAC refused, l3 answers connected default routes and no gateway', () => {
  const { rtnl, driver } = setup({ vlan: true, ipvlan: true, dummy: true });
  driver.createNetwork(network(NET_A, { parent: 'eth0', ipvlan_mode: 'l3' }, {}, 'ipvlan'));
  assert.equal(
    refusal(() => driver.createEndpoint('ipvlan', endpoint(NET_A, EP_2, '172.16.86.3/24', '02:42:ac:10:56:03')))
      .message,
    'ipvlan interfaces do not support custom mac address assignment',
  );
  assert.equal(driver.createEndpoint('ipvlan', endpoint(NET_A, EP_1)).assignedMac, null);
  const joined = driver.join('ipvlan', NET_A, EP_1);
  assert.equal(joined.gatewayIpv4, null);
  assert.deepEqual(
    joined.staticRoutes.map((r) => [r.destination.address.text, r.destination.prefixLength, r.kind]),
    [['0.0.0.0', 0, 'connected']],
  );
  assert.equal(rtnl.getLink('lp-111111111111')?.ipvlanMode, 'l3');
});

test('ipvlan sharing: same mode shares a parent; another mode or macvlan is refused', () => {
  const { driver } = setup({ vlan: true, ipvlan: true, dummy: true });
  driver.createNetwork(network(NET_A, { parent: 'eth0', ipvlan_mode: 'l2' }, {}, 'ipvlan'));
  driver.createNetwork(network('c'.repeat(64), { parent: 'eth0', ipvlan_mode: 'l2' }, {}, 'ipvlan'));
  assert.match(
    refusal(() => driver.createNetwork(network(NET_B, { parent: 'eth0', ipvlan_mode: 'l3' }, {}, 'ipvlan'))).message,
    /^ipvlan network aaaaaaaaaaaa is already using parent interface eth0 in mode l2 flag bridge/,
  );
  assert.match(
    refusal(() => driver.createNetwork(network(NET_B, { parent: 'eth0' }))).message,
    /^ipvlan network aaaaaaaaaaaa is already using parent interface eth0; the kernel cannot hold macvlan and ipvlan links on one parent/,
  );
});

test('ipvlan on a kernel without ipvlan: a plain error at network create, probe links gone', () => {
  const { rtnl, driver } = setup();
  const err = refusal(() => driver.createNetwork(network(NET_A, { parent: 'eth0' }, {}, 'ipvlan')));
  assert.equal(err.code, 'Unsupported');
  assert.match(err.message, /^this kernel has no ipvlan support/);
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
  assert.equal(store.listNetworks().length, 0);
});

test('a network of one driver is not visible through the other', () => {
  const { driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0' }));
  assert.equal(refusal(() => driver.createEndpoint('ipvlan', endpoint(NET_A, EP_1))).code, 'NotFound');
  assert.equal(refusal(() => driver.createNetwork(network(NET_A, { parent: 'eth0' }, {}, 'ipvlan'))).code, 'Conflict');
});

test('state survives reopening the store', () => {
  const { driver } = setup();
  driver.createNetwork(network(NET_A, { parent: 'eth0', macvlan_mode: 'vepa' }));
  driver.createEndpoint('macvlan', endpoint(NET_A, EP_1));
  store.close();
  store = SqliteStore.open(dir);
  assert.deepEqual(store.getNetwork(NET_A)?.spec.mode, { kind: 'macvlan', mode: 'vepa' });
  assert.equal(store.getEndpoint(NET_A, EP_1)?.mac, '02:42:ac:10:56:02');
});

test('-o dhcp=true: only with --ipam-driver null, a parent, and a layer-2 mode; nothing recorded when refused', () => {
  const { driver } = setup();
  const nullIpam = { ipv4: [{ pool: parsePrefix('0.0.0.0/0'), gateway: null }] };
  assert.equal(
    refusal(() => driver.createNetwork(network(NET_A, { parent: 'eth0', dhcp: 'true' }))).message,
    "-o dhcp=true takes IPv4 addresses from the LAN's DHCP server; create the network with --ipam-driver null and without --subnet (got 172.16.86.0/24)",
  );
  assert.equal(
    refusal(() => driver.createNetwork(network(NET_A, { dhcp: 'true' }, nullIpam))).message,
    '-o dhcp=true needs -o parent: the DHCP server is on the LAN behind a parent interface',
  );
  assert.equal(
    refusal(() =>
      driver.createNetwork(network(NET_A, { parent: 'eth0', dhcp: 'true', ipvlan_mode: 'l3' }, nullIpam, 'ipvlan')),
    ).message,
    '-o dhcp=true needs ipvlan_mode=l2: in mode l3 the containers get no broadcasts, so no DHCP answers',
  );
  assert.deepEqual(store.listNetworks(), []);
  driver.createNetwork(network(NET_A, { parent: 'eth0', dhcp: 'true', 'dhcp.timeout': '4s' }, nullIpam));
  assert.deepEqual(store.getNetwork(NET_A)?.spec.dhcp, { ipv4: true, ipv6: false, timeoutMs: 4000, askedBy: 'driver' });
});

test('-o ipv6=slaac: only with a parent, a layer-2 mode, no IPv6 pool and not --internal; nothing recorded when refused', () => {
  const { driver } = setup();
  const slaac = { parent: 'eth0', ipv6: 'slaac' };
  const v6 = { ipv6: [{ pool: parsePrefix('2001:db8:1::/64'), gateway: null }] };
  const refused: [CreateNetworkRequest, string][] = [
    [
      network(NET_A, slaac, v6),
      "-o ipv6=slaac takes IPv6 from the LAN router's advertisements; create the network without --ipv6 and without an IPv6 --subnet (got 2001:db8:1::/64)",
    ],
    [
      network(NET_A, { ipv6: 'slaac' }),
      '-o ipv6=slaac needs -o parent: the router that advertises the prefix is on the LAN behind it',
    ],
    [
      network(NET_A, { ...slaac, ipvlan_mode: 'l3s' }, {}, 'ipvlan'),
      "-o ipv6=slaac needs ipvlan_mode=l2: in mode l3s the router's advertisements do not reach the containers",
    ],
    [
      network(NET_A, slaac, { internal: true }),
      "-o ipv6=slaac takes the LAN router's default route; an --internal network has none",
    ],
    [network(NET_A, slaac, { cniName: 'podman:x' }), '-o ipv6=slaac is for Docker networks; CNI has no support yet'],
  ];
  for (const [request, message] of refused) assert.equal(refusal(() => driver.createNetwork(request)).message, message);
  assert.deepEqual(store.listNetworks(), []);
  driver.createNetwork(network(NET_A, { ...slaac, 'ipv6.rt_info_max_plen': '64' }));
  assert.deepEqual(store.getNetwork(NET_A)?.spec.slaac, { rtInfoMaxPlen: 64 });
  // An identity is the address's: one per container on the network.
  const withId = (id: string, address: string) => ({
    ...endpoint(NET_A, id, address),
    endpointOptions: { 'lanplug.dhcp.id': 'web' },
  });
  driver.createEndpoint('macvlan', withId(EP_1, '172.16.86.2/24'));
  assert.equal(store.getEndpoint(NET_A, EP_1)?.identity, 'web');
  assert.equal(
    refusal(() => driver.createEndpoint('macvlan', withId(EP_2, '172.16.86.3/24'))).message,
    `--driver-opt lanplug.dhcp.id=web is already used by endpoint 111111111111 of network aaaaaaaaaaaa; give each container its own identity (lanplug gc drops an endpoint Docker no longer knows)`,
  );
});

test('a DHCP endpoint whose lease is gone is refused at Join: its address may be someone else’s now', async () => {
  const { DhcpEndpoints } = await import('../../src/endpoint/dhcp-endpoints');
  const { LeaseKeeper, NO_LEASE_NETWORKS } = await import('../../src/dhcp/keeper');
  const { driver } = setup();
  driver.createNetwork(
    network(NET_A, { parent: 'eth0', dhcp: 'true' }, { ipv4: [{ pool: parsePrefix('0.0.0.0/0'), gateway: null }] }),
  );
  store.putEndpoint({
    networkId: NET_A,
    endpointId: EP_1,
    linkName: 'lp-111111111111',
    mac: '02:00:00:00:00:09',
    ipv4: parsePrefix('172.16.86.120/24'),
    ipv6: null,
  });
  const dhcp = new DhcpEndpoints(driver, new LeaseKeeper(store, silentLogger, NO_LEASE_NETWORKS), silentLogger);
  const answer = { linkName: 'lp-111111111111', gatewayIpv4: null, gatewayIpv6: null, staticRoutes: [] };
  const err = refusal(() => dhcp.joined('macvlan', { networkId: NET_A, endpointId: EP_1, sandboxKey: '/x' }, answer));
  assert.equal(err.code, 'NotFound');
  assert.match(
    err.message,
    /holds no DHCP lease any more \(released before its container joined\); start the container again$/,
  );
});

test('lanplug-dhcp: leases taken for a MAC become the endpoint’s; ReleaseAddress ends one family only, and never an address Leave gave back', async () => {
  const { DhcpEndpoints } = await import('../../src/endpoint/dhcp-endpoints');
  const { DhcpAddresses, comingEndpointId } = await import('../../src/endpoint/dhcp-addresses');
  const { LeaseKeeper, NO_LEASE_NETWORKS } = await import('../../src/dhcp/keeper');
  const { AskingLinks } = await import('../../src/driver/asking-links');
  const { rtnl, driver } = setup();
  const pools = {
    addressSpace: 'LanplugDhcp',
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.0') }],
    ipv6: [{ pool: parsePrefix('fd77::/64'), gateway: parseAddress('fd77::') }],
  };
  driver.createNetwork(network(NET_A, { parent: 'eth0' }, pools));
  assert.deepEqual(store.getNetwork(NET_A)?.spec.dhcp, { ipv4: true, ipv6: true, timeoutMs: 10_000, askedBy: 'ipam' });
  // Docker 28's --ipv4=false: IPv6 pools only, still a lanplug-dhcp network.
  driver.createNetwork(
    network(
      NET_B,
      { parent: 'eth0' },
      { ...pools, ipv4: [], ipv6: [{ pool: parsePrefix('fd78::/64'), gateway: null }] },
    ),
  );
  assert.deepEqual(store.getNetwork(NET_B)?.spec.dhcp, { ipv4: false, ipv6: true, timeoutMs: 10_000, askedBy: 'ipam' });

  const keeper = new LeaseKeeper(store, silentLogger, NO_LEASE_NETWORKS);
  const mac = '02:00:00:00:06:01';
  const lease = (text: string): Lease => ({
    family: text.includes(':') ? 6 : 4,
    address: parsePrefix(text),
    router: null,
    dns: [],
    serverId: parseAddress('172.16.86.1'),
    serverMac: '02:00:00:00:00:01',
    serverDuid: null,
    leaseSeconds: 120,
    renewSeconds: 60,
    rebindSeconds: 105,
    boundAt: Date.now(),
    state: 'bound',
  });
  const identity = {
    mac,
    clientId: '01020000000601',
    duid: '00030001020000000601',
    iaid: 1,
    stable: false,
    hostname: null,
    broadcast: false,
  };
  keeper.hold({
    networkId: NET_A,
    endpointId: comingEndpointId(mac),
    identity,
    leases: [lease('172.16.86.120/24'), lease('fd77::120/64')],
    dockerAddresses: [parseAddress('172.16.86.120'), parseAddress('fd77::120')],
    sandboxKey: null,
    renewedAt: null,
    failures: 0,
    lastError: null,
  });
  const dhcp = new DhcpEndpoints(driver, keeper, silentLogger);
  const request = {
    networkId: NET_A,
    endpointId: EP_1,
    ipv4: parsePrefix('172.16.86.120/24'),
    ipv6: parsePrefix('fd77::120/64'),
    mac,
  };
  assert.equal(
    (await refusalAsync(dhcp.createEndpoint('macvlan', { ...request, ipv4: parsePrefix('172.16.86.121/24') }))).message,
    `endpoint ${EP_1.slice(0, 12)} was given 172.16.86.121, which is not the address DHCP leased for MAC ${mac}`,
  );
  assert.equal(store.getEndpoint(NET_A, EP_1), null, 'a refused takeover leaves no endpoint');
  await dhcp.createEndpoint('macvlan', request);
  assert.equal(keeper.get(NET_A, comingEndpointId(mac)), null);
  assert.equal(keeper.get(NET_A, EP_1)?.leases.length, 2, 'the endpoint holds both leases');

  const addresses = new DhcpAddresses(driver, keeper, new AskingLinks(rtnl, silentLogger));
  // The container turned IPv6 off: Docker releases that address, the IPv4 lease stays.
  addresses.release(parsePrefix('fd77::/64'), parseAddress('fd77::120'));
  assert.deepEqual(
    keeper.get(NET_A, EP_1)?.leases.map((l) => l.address.address.text),
    ['172.16.86.120'],
  );
  // Leave gives the rest back; Docker's ReleaseAddress after it must not end whoever holds the address next.
  dhcp.release(NET_A, EP_1, 'container stopped');
  keeper.hold({
    networkId: NET_A,
    endpointId: EP_2,
    identity: { ...identity, mac: '02:00:00:00:06:02' },
    leases: [lease('172.16.86.120/24')],
    dockerAddresses: [parseAddress('172.16.86.120')],
    sandboxKey: null,
    renewedAt: null,
    failures: 0,
    lastError: null,
  });
  addresses.release(parsePrefix('172.16.86.0/24'), parseAddress('172.16.86.120'));
  assert.notEqual(keeper.get(NET_A, EP_2), null, 'the next holder keeps its lease');
});
