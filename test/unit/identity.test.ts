/**
 * A container's identity by name (`--driver-opt lanplug.identity=NAME`, or its
 * older spelling `lanplug.dhcp.id`): the option read, the values derived from
 * the name (pinned: a DHCP reservation or firewall rule made for them must
 * keep working across lanplug versions), and the driver's use of it on a
 * network whose addresses are Docker's (FakeRtnl, the real SQLite store; the
 * e2e lane runs the same with a real dockerd).
 */
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientIdFromIdentity, duidFromIdentity, endpointIdentity, macFromIdentity } from '../../src/driver/identity';
import { NetworkDriver } from '../../src/driver/network-driver';
import { LanplugError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { SqliteStore } from '../../src/state/sqlite';
import { FakeRtnl } from '../support/fake-rtnl';
import { repoRoot } from '../support/repo';

const NET_A = 'a'.repeat(64);
const NET_B = 'b'.repeat(64);
const EP_1 = '1'.repeat(64);
const EP_2 = '2'.repeat(64);

function refusal(fn: () => unknown): LanplugError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof LanplugError, String(err));
    return err;
  }
  assert.fail('expected the call to be refused');
}

test('endpointIdentity: lanplug.identity, or lanplug.dhcp.id as its other spelling; none is null', () => {
  assert.equal(endpointIdentity({ 'lanplug.identity': 'web1' })?.name, 'web1');
  assert.equal(endpointIdentity({ 'lanplug.identity': 'web1' })?.option, 'lanplug.identity');
  assert.equal(endpointIdentity({ 'lanplug.dhcp.id': 'web1' })?.name, 'web1');
  assert.equal(endpointIdentity({ 'lanplug.dhcp.id': 'web1' })?.option, 'lanplug.dhcp.id');
  assert.equal(endpointIdentity({ 'lanplug.identity': 'web1', 'lanplug.dhcp.id': 'web1' })?.name, 'web1');
  assert.equal(endpointIdentity({}), null);
  assert.equal(endpointIdentity({ 'lanplug.dhcp.hostname': 'web' }), null);
});

test('endpointIdentity refuses in one line: two different names, a name that is no label', () => {
  assert.equal(
    refusal(() => endpointIdentity({ 'lanplug.identity': 'web1', 'lanplug.dhcp.id': 'web2' })).message,
    '--driver-opt lanplug.identity=web1 and lanplug.dhcp.id=web2 name two identities; give one (lanplug.dhcp.id is the older name of lanplug.identity)',
  );
  for (const bad of ['', '-web', 'web 1', 'a'.repeat(64), 'wéb'])
    assert.match(
      refusal(() => endpointIdentity({ 'lanplug.identity': bad })).message,
      /^--driver-opt lanplug\.identity=.* is not valid; expected 1-63 letters, digits/,
    );
});

test("the values a name gives are pinned: the same as lanplug.dhcp.id's before lanplug.identity existed", () => {
  // Computed with lanplug 0.x's macFromLabel/duidFromLabel (endpoint/dhcp-endpoints.ts) before this change.
  assert.equal(macFromIdentity('web1'), '9a:ea:7f:c1:5d:5c');
  assert.equal(macFromIdentity('printer'), 'f6:48:ac:73:9d:84');
  assert.equal(duidFromIdentity('web1'), '0004b889d8419b7e832d9959a84dce316a8f');
  assert.equal(clientIdFromIdentity('web1'), '0077656231');
  // Locally administered, unicast, for any name.
  for (const name of ['a', 'web1', 'db.prod', 'x'.repeat(63)]) {
    const first = parseInt(macFromIdentity(name).slice(0, 2), 16);
    assert.equal(first & 0x03, 0x02, `${name}: locally administered unicast`);
  }
});

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-identity-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function driverWithNetworks(): NetworkDriver {
  const driver = new NetworkDriver(new FakeRtnl(), store, silentLogger);
  for (const [id, parent] of [
    [NET_A, 'eth0'],
    [NET_B, 'eth0'],
  ] as const)
    driver.createNetwork({
      networkId: id,
      driver: 'macvlan',
      options: { parent },
      ipv4: [
        { pool: parsePrefix(id === NET_A ? '172.16.86.0/24' : '172.16.87.0/24'), gateway: parseAddress('172.16.86.1') },
      ],
      ipv6: [],
      internal: false,
      auxAddresses: new Map(),
    });
  return driver;
}

function withIdentity(networkId: string, endpointId: string, address: string, name: string, mac: string | null = null) {
  return {
    networkId,
    endpointId,
    ipv4: parsePrefix(address),
    ipv6: null,
    mac,
    endpointOptions: { 'lanplug.identity': name },
  };
}

test("Docker's IPAM: an identity gives the endpoint the name's MAC whatever its address; --mac-address wins", () => {
  const driver = driverWithNetworks();
  assert.equal(
    driver.createEndpoint('macvlan', withIdentity(NET_A, EP_1, '172.16.86.2/24', 'web1')).assignedMac,
    '9a:ea:7f:c1:5d:5c',
  );
  driver.deleteEndpoint(NET_A, EP_1);
  // Re-created elsewhere in the pool (another address): the same MAC.
  assert.equal(
    driver.createEndpoint('macvlan', withIdentity(NET_A, EP_2, '172.16.86.7/24', 'web1')).assignedMac,
    '9a:ea:7f:c1:5d:5c',
  );
  driver.deleteEndpoint(NET_A, EP_2);
  const given = driver.createEndpoint(
    'macvlan',
    withIdentity(NET_A, EP_1, '172.16.86.2/24', 'web1', '02:aa:bb:cc:dd:ee'),
  );
  assert.equal(given.assignedMac, null);
  assert.equal(store.getEndpoint(NET_A, EP_1)?.mac, '02:aa:bb:cc:dd:ee');
});

test('two live endpoints with one identity: the second is refused in one line naming the first, and leaves nothing', () => {
  const driver = driverWithNetworks();
  driver.createEndpoint('macvlan', withIdentity(NET_A, EP_1, '172.16.86.2/24', 'web1'));
  const refused = refusal(() => driver.createEndpoint('macvlan', withIdentity(NET_A, EP_2, '172.16.86.3/24', 'web1')));
  assert.equal(
    refused.message,
    `--driver-opt lanplug.identity=web1 is already used by endpoint 111111111111 of network aaaaaaaaaaaa; give each container its own identity (lanplug gc drops an endpoint Docker no longer knows)`,
  );
  assert.equal(refused.message.includes('\n'), false);
  assert.equal(store.getEndpoint(NET_A, EP_2), null);
  // Its MAC is the name's: the same name on another network of the host is the same device, refused too.
  const elsewhere = refusal(() =>
    driver.createEndpoint('macvlan', withIdentity(NET_B, EP_2, '172.16.87.3/24', 'web1')),
  );
  assert.match(elsewhere.message, /already used by endpoint 111111111111 of network aaaaaaaaaaaa/);
  assert.equal(store.getEndpoint(NET_B, EP_2), null);
  // Docker retrying the first CreateEndpoint: the same answer, not a conflict with itself.
  assert.equal(
    driver.createEndpoint('macvlan', withIdentity(NET_A, EP_1, '172.16.86.2/24', 'web1')).assignedMac,
    '9a:ea:7f:c1:5d:5c',
  );
  // Once the first is gone, the name is free.
  driver.deleteEndpoint(NET_A, EP_1);
  assert.equal(
    driver.createEndpoint('macvlan', withIdentity(NET_A, EP_2, '172.16.86.3/24', 'web1')).assignedMac,
    '9a:ea:7f:c1:5d:5c',
  );
});

test('lanplug identity NAME prints what the name gives (for a DHCP reservation, or --mac-address where Docker picks the MAC); a bad name is one line and exit 1', () => {
  const lanplug = (args: string[]) =>
    spawnSync(process.execPath, [join(repoRoot(), 'bin', 'lanplug'), 'identity', ...args], { encoding: 'utf8' });
  const shown = lanplug(['web1']);
  assert.equal(shown.status, 0, shown.stderr);
  assert.equal(
    shown.stdout,
    [
      'name       web1',
      'mac        9a:ea:7f:c1:5d:5c',
      'client id  00:77:65:62:31',
      'duid       00:04:b8:89:d8:41:9b:7e:83:2d:99:59:a8:4d:ce:31:6a:8f',
      'hostname   web1',
      '',
    ].join('\n'),
  );
  // A dotted name is a fully qualified host name (DHCP option 81 sends it as one); one with '_' is none.
  assert.equal(lanplug(['db.prod']).stdout.split('\n')[4], 'hostname   db.prod');
  assert.equal(lanplug(['db_prod']).stdout.split('\n')[4], 'hostname   -');
  const bad = lanplug(['-web']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^lanplug: '-web' is not a valid identity name; expected 1-63 letters, digits[^\n]*\n$/);
  assert.equal(lanplug([]).status, 2);
});

test("ipvlan: no MAC of its own (the parent's), but one live endpoint per name all the same; the name is in the endpoint's record", () => {
  const driver = new NetworkDriver(new FakeRtnl({ vlan: false, ipvlan: true, dummy: false }), store, silentLogger);
  driver.createNetwork({
    networkId: NET_A,
    driver: 'ipvlan',
    options: { parent: 'eth0' },
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  });
  assert.equal(
    driver.createEndpoint('ipvlan', withIdentity(NET_A, EP_1, '172.16.86.2/24', 'printer')).assignedMac,
    null,
  );
  assert.equal(store.getEndpoint(NET_A, EP_1)?.identity, 'printer');
  assert.match(
    refusal(() => driver.createEndpoint('ipvlan', withIdentity(NET_A, EP_2, '172.16.86.3/24', 'printer'))).message,
    /^--driver-opt lanplug\.identity=printer is already used by endpoint 111111111111 of network aaaaaaaaaaaa/,
  );
  assert.equal(store.getEndpoint(NET_A, EP_2), null);
});

test('a name held on a network of another address source refuses the DHCP endpoint too, before any link or lease (it would be a second device with the MAC)', () => {
  const driver = driverWithNetworks();
  driver.createEndpoint('macvlan', withIdentity(NET_A, EP_1, '172.16.86.2/24', 'web1'));
  const NET_C = 'c'.repeat(64);
  driver.createNetwork({
    networkId: NET_C,
    driver: 'macvlan',
    options: { parent: 'eth0', dhcp: 'true' },
    ipv4: [{ pool: parsePrefix('0.0.0.0/0'), gateway: null }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  });
  const request = { ...withIdentity(NET_C, EP_2, '172.16.86.3/24', 'web1'), ipv4: null };
  assert.match(
    refusal(() =>
      driver.prepareDhcpEndpoint('macvlan', request, macFromIdentity('web1'), {
        name: 'web1',
        option: 'lanplug.identity',
      }),
    ).message,
    /^--driver-opt lanplug\.identity=web1 is already used by endpoint 111111111111 of network aaaaaaaaaaaa/,
  );
  assert.equal(store.getEndpoint(NET_C, EP_2), null);
});

test('a forgotten holder of a name (its sandbox gone, its link back, older than the grace) does not refuse the next container with the name', (t) => {
  const sandboxes = mkdtempSync(join(tmpdir(), 'lanplug-sb-'));
  t.after(() => rmSync(sandboxes, { recursive: true, force: true }));
  const driver = new NetworkDriver(new FakeRtnl(), store, silentLogger, { forgottenAfterMs: 0 });
  driver.createNetwork({
    networkId: NET_A,
    driver: 'macvlan',
    options: { parent: 'eth0' },
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  });
  // Forgotten by Docker: joined to a sandbox that is now gone, its link back in lanplug's namespace.
  driver.createEndpoint('macvlan', withIdentity(NET_A, EP_1, '172.16.86.2/24', 'web1'));
  driver.join('macvlan', NET_A, EP_1, { sandboxKey: join(sandboxes, 'gone') });
  // Same address (Docker handed it on): the address path would drop the forgotten row...
  const made = driver.createEndpoint('macvlan', withIdentity(NET_A, EP_2, '172.16.86.2/24', 'web1'));
  assert.equal(made.assignedMac, '9a:ea:7f:c1:5d:5c');
});

test('an address held twice in a network is refused whatever MAC each endpoint has: a named holder and an unnamed newcomer (Docker gave it out twice)', () => {
  const driver = driverWithNetworks();
  driver.createEndpoint('macvlan', withIdentity(NET_A, EP_1, '172.16.86.2/24', 'web1'));
  // Without the name, the second would be refused ("Docker gave it out twice") by its address-derived MAC.
  assert.throws(
    () =>
      driver.createEndpoint('macvlan', { ...withIdentity(NET_A, EP_2, '172.16.86.2/24', 'x'), endpointOptions: {} }),
    /already held by endpoint/,
  );
});
