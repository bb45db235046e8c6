/**
 * Host access on the in-memory link table: the shim, its addresses and the
 * per-container routes through it, every refusal, and what reconcile repairs.
 * The Docker lane proves the same with real pings and a real dockerd.
 */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetworkDriver } from '../../src/driver/network-driver';
import { reconcile } from '../../src/driver/reconcile';
import type { CreateNetworkRequest } from '../../src/driver/requests';
import { LanplugError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { formatPrefix, parseAddress, parsePrefix } from '../../src/net/address';
import { SqliteStore } from '../../src/state/sqlite';
import { FakeRtnl } from '../support/fake-rtnl';

const NET = 'a'.repeat(64);
const EP1 = '1'.repeat(64);
const EP2 = '2'.repeat(64);
const SHIM = 'lh-aaaaaaaaaaaa';

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-host-access-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function network(
  options: Record<string, string>,
  aux: Record<string, string> = { host: '172.16.86.254' },
  v6 = false,
): CreateNetworkRequest {
  return {
    networkId: NET,
    driver: 'macvlan',
    options: { parent: 'eth0', host_access: 'true', ...options },
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: v6 ? [{ pool: parsePrefix('2001:db8:86::/64'), gateway: parseAddress('2001:db8:86::1') }] : [],
    internal: false,
    auxAddresses: new Map(Object.entries(aux).map(([k, v]) => [k, parseAddress(v)])),
  };
}

function setup(): { rtnl: FakeRtnl; driver: NetworkDriver } {
  const rtnl = new FakeRtnl();
  return { rtnl, driver: new NetworkDriver(rtnl, store, silentLogger) };
}

function attach(driver: NetworkDriver, id: string, v4: string, v6: string | null = null): void {
  driver.createEndpoint('macvlan', {
    networkId: NET,
    endpointId: id,
    ipv4: parsePrefix(v4),
    ipv6: v6 === null ? null : parsePrefix(v6),
    mac: null,
  });
  driver.join('macvlan', NET, id);
}

function routes(rtnl: FakeRtnl): string[] {
  return rtnl.routes
    .map(
      (r) =>
        `${formatPrefix(r.destination)} dev ${rtnl.getLinkByIndex(r.oifIndex ?? 0)?.name ?? '?'} src ${r.preferredSource?.text ?? '-'}`,
    )
    .sort();
}

function addresses(rtnl: FakeRtnl, name: string): string[] {
  const link = rtnl.getLink(name);
  return rtnl.addresses
    .filter((a) => a.index === link?.index)
    .map((a) => formatPrefix(a.prefix))
    .sort();
}

test('a shim beside the containers: macvlan bridge on the parent, the host address as /32, up; a route per container', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network({}));
  const shim = rtnl.getLink(SHIM);
  assert.equal(shim?.kind, 'macvlan');
  assert.equal(shim?.macvlanMode, 'bridge');
  assert.equal(shim?.parentIndex, rtnl.getLink('eth0')?.index);
  assert.equal(shim?.up, true);
  assert.deepEqual(addresses(rtnl, SHIM), ['172.16.86.254/32']);
  attach(driver, EP1, '172.16.86.2/24');
  attach(driver, EP2, '172.16.86.3/24');
  assert.deepEqual(routes(rtnl), [
    `172.16.86.2/32 dev ${SHIM} src 172.16.86.254`,
    `172.16.86.3/32 dev ${SHIM} src 172.16.86.254`,
  ]);
  driver.deleteEndpoint(NET, EP1);
  assert.deepEqual(routes(rtnl), [`172.16.86.3/32 dev ${SHIM} src 172.16.86.254`]);
  driver.deleteEndpoint(NET, EP2);
  driver.deleteNetwork(NET);
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
  assert.deepEqual(rtnl.routes, []);
});

test('dual stack: host6 on the shim as /128, a v6 route per container', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network({}, { host: '172.16.86.254', host6: '2001:db8:86::fe' }, true));
  assert.deepEqual(addresses(rtnl, SHIM), ['172.16.86.254/32', '2001:db8:86::fe/128']);
  attach(driver, EP1, '172.16.86.2/24', '2001:db8:86::2/64');
  assert.deepEqual(routes(rtnl), [
    `172.16.86.2/32 dev ${SHIM} src 172.16.86.254`,
    `2001:db8:86::2/128 dev ${SHIM} src 2001:db8:86::fe`,
  ]);
});

test('bad host access input: one line each, nothing created', () => {
  const { rtnl, driver } = setup();
  const cases: [CreateNetworkRequest, string][] = [
    [
      network({}, {}),
      "-o host_access=true needs the host's own IPv4 address on this network: add --aux-address host=<an unused address in 172.16.86.0/24>",
    ],
    [
      network({}, { host: '172.16.86.254' }, true),
      "-o host_access=true needs the host's own IPv6 address on this network: add --aux-address host6=<an unused address in 2001:db8:86::/64> (IPv6 networks need host6 beside host)",
    ],
    [
      network({}, { host: '10.0.0.5' }),
      "--aux-address host=10.0.0.5 is not in the network's IPv4 subnets (172.16.86.0/24)",
    ],
    [
      network({}, { host: '172.16.86.1' }),
      '--aux-address host=172.16.86.1 is the gateway; the host needs an address of its own on the network',
    ],
    [
      network({ macvlan_mode: 'vepa' }),
      '-o host_access=true needs macvlan_mode=bridge: in vepa mode siblings reach each other only through an external switch that hairpins, so the shim would not reach the containers',
    ],
    [
      network({ macvlan_mode: 'private' }),
      '-o host_access=true needs macvlan_mode=bridge: in private mode siblings never reach each other, so the shim would not reach the containers',
    ],
    [
      network({ macvlan_mode: 'passthru' }),
      '-o host_access=true needs macvlan_mode=bridge: in passthru mode the parent belongs to one container, with no room for a shim beside it',
    ],
    [network({ host_access: 'yes' }), '-o host_access=yes is not valid; expected true or false'],
  ];
  for (const [request, message] of cases) {
    assert.throws(
      () => driver.createNetwork(request),
      (err: unknown) => err instanceof LanplugError && err.message === message,
      message,
    );
  }
  assert.deepEqual(rtnl.names(), ['eth0', 'lo']);
  assert.equal(store.listNetworks().length, 0);
});

test('reconcile: a lost shim is made again with its routes, a stray route goes, nothing is ever doubled', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network({}));
  attach(driver, EP1, '172.16.86.2/24');
  const shim = rtnl.getLink(SHIM);
  assert.ok(shim);
  rtnl.deleteLink(shim);
  const first = reconcile(rtnl, store, silentLogger);
  assert.deepEqual(
    first.actions.map((a) => [a.action, a.target]),
    [
      ['create-shim', SHIM],
      ['add-route', `172.16.86.2/32 via ${SHIM}`],
    ],
  );
  const remade = rtnl.getLink(SHIM);
  assert.ok(remade);
  rtnl.replaceRoute(parsePrefix('172.16.86.77/32'), remade, parseAddress('172.16.86.254'));
  const second = reconcile(rtnl, store, silentLogger);
  assert.deepEqual(
    second.actions.map((a) => [a.action, a.target]),
    [['delete-route', `172.16.86.77/32 via ${SHIM}`]],
  );
  assert.deepEqual(reconcile(rtnl, store, silentLogger).actions, [], 'a third run has nothing to do');
  assert.deepEqual(routes(rtnl), [`172.16.86.2/32 dev ${SHIM} src 172.16.86.254`]);
  assert.deepEqual(addresses(rtnl, SHIM), ['172.16.86.254/32']);
});

test('the parent deleted and made again: the next Join makes the shim again on the new parent', () => {
  const { rtnl, driver } = setup();
  driver.createNetwork(network({}));
  attach(driver, EP1, '172.16.86.2/24');
  const eth0 = rtnl.getLink('eth0');
  assert.ok(eth0);
  rtnl.deleteLink(eth0); // the kernel takes the shim and the endpoint link with it
  assert.equal(rtnl.getLink(SHIM), null);
  rtnl.add({ name: 'eth0', kind: 'veth', mtu: 1500, mac: '02:00:00:00:00:01', up: true, parentIndex: null });
  attach(driver, EP2, '172.16.86.3/24');
  assert.equal(rtnl.getLink(SHIM)?.parentIndex, rtnl.getLink('eth0')?.index);
  assert.deepEqual(routes(rtnl), [`172.16.86.3/32 dev ${SHIM} src 172.16.86.254`]);
  // The first container's route comes back with reconcile (its own link is Docker's to restore).
  reconcile(rtnl, store, silentLogger);
  assert.deepEqual(routes(rtnl), [
    `172.16.86.2/32 dev ${SHIM} src 172.16.86.254`,
    `172.16.86.3/32 dev ${SHIM} src 172.16.86.254`,
  ]);
});
