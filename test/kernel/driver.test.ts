/**
 * The driver on the real kernel, in a throw-away namespace with a veth
 * parent: the paths Docker 20.10 cannot reach (an IPv6-only endpoint), and
 * the private parent on whatever link type this kernel offers.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetworkDriver } from '../../src/driver/network-driver';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { silentLogger } from '../../src/log';
import { openRtnl, type Rtnl } from '../../src/link/rtnl';
import { SqliteStore } from '../../src/state/sqlite';

const NS = `lp-k-${randomBytes(4).toString('hex')}`;
const NET = 'c'.repeat(64);
const EP = 'd'.repeat(64);
let rtnl: Rtnl;
let store: SqliteStore;
let dir: string;
let driver: NetworkDriver;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

before(() => {
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'lan0');
  ip('-n', NS, 'link', 'set', 'eth0', 'up');
  rtnl = openRtnl({ netns: `/run/netns/${NS}` });
  dir = mkdtempSync(join(tmpdir(), 'lanplug-kernel-'));
  store = SqliteStore.open(dir);
  driver = new NetworkDriver(rtnl, store, silentLogger);
});

after(() => {
  rtnl?.close();
  store?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
});

test('an IPv6-only endpoint: a random locally administered MAC on the real link, the v6 gateway answered', () => {
  driver.createNetwork({
    networkId: NET,
    driver: 'macvlan',
    options: { parent: 'eth0' },
    ipv4: [],
    ipv6: [{ pool: parsePrefix('2001:db8:6::/64'), gateway: parseAddress('2001:db8:6::1') }],
    internal: false,
    auxAddresses: new Map(),
  });
  const { assignedMac } = driver.createEndpoint('macvlan', {
    networkId: NET,
    endpointId: EP,
    ipv4: null,
    ipv6: parsePrefix('2001:db8:6::2/64'),
    mac: null,
  });
  assert.match(assignedMac ?? '', /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/);
  const joined = driver.join('macvlan', NET, EP);
  assert.equal(joined.gatewayIpv4, null);
  assert.equal(joined.gatewayIpv6?.text, '2001:db8:6::1');
  const link = rtnl.getLink(joined.linkName);
  assert.equal(link?.kind, 'macvlan');
  assert.equal(link?.mac, assignedMac);
  driver.deleteEndpoint(NET, EP);
  driver.deleteNetwork(NET);
  assert.equal(rtnl.getLink(joined.linkName), null);
});

test('no parent: a private parent of a kind this kernel has, carrying real macvlan links, removed with the network', () => {
  driver.createNetwork({
    networkId: NET,
    driver: 'macvlan',
    options: {},
    ipv4: [{ pool: parsePrefix('10.1.0.0/24'), gateway: null }],
    ipv6: [],
    internal: false,
    auxAddresses: new Map(),
  });
  const parent = rtnl.getLink('dm-cccccccccccc');
  assert.ok(parent?.kind === 'dummy' || parent?.kind === 'bridge', `private parent kind ${String(parent?.kind)}`);
  assert.equal(parent?.up, true);
  driver.createEndpoint('macvlan', {
    networkId: NET,
    endpointId: EP,
    ipv4: parsePrefix('10.1.0.2/24'),
    ipv6: null,
    mac: null,
  });
  const joined = driver.join('macvlan', NET, EP);
  assert.equal(rtnl.getLink(joined.linkName)?.parentIndex, parent?.index);
  driver.deleteNetwork(NET); // with the endpoint link still there, as after a crash of the runtime
  assert.equal(rtnl.getLink(joined.linkName), null);
  assert.equal(rtnl.getLink('dm-cccccccccccc'), null);
});
