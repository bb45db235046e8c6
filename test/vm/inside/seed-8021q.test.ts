/**
 * Runs inside the full-kernel VM (test/vm/full-kernel.test.ts): the seed's
 * 802.1Q trunk bridge tutorial word for word with -d lanplug-macvlan, the
 * seed's dual-stack example on eth0.218, and moby's own sub-interface
 * scenarios. The LAN carries VLANs: its side of each VLAN is a VLAN link
 * on the LAN bridge holding the gateway addresses.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertNoLanplugLinks, containerNetwork, eventually, lines, useLab } from '../../e2e/helpers';

const lab = useLab({ addresses: [] });

/** The LAN's end of VLAN `id`: br0.<id> with these addresses. */
function lanVlan(id: number, addresses: string[]): void {
  const name = `br0.${id}`;
  lab.lan.execOk(['ip', 'link', 'add', 'link', 'br0', 'name', name, 'type', 'vlan', 'id', String(id)]);
  for (const address of addresses) {
    lab.lan.execOk(['ip', 'addr', 'add', address, 'dev', name, ...(address.includes(':') ? ['nodad'] : [])]);
  }
  lab.lan.execOk(['ip', 'link', 'set', name, 'up']);
}

function hostHasLink(name: string): boolean {
  return lab.host.exec(['ip', 'link', 'show', name]).status === 0;
}

before(() => {
  lanVlan(10, ['172.16.86.1/24']);
  lanVlan(218, ['192.168.216.1/24', '192.168.218.1/24', '2001:db8:abc8::10/64']);
});

test('seed 802.1Q trunk bridge tutorial, word for word with -d lanplug-macvlan', () => {
  const { host } = lab;
  assert.equal(hostHasLink('eth0.10'), false, 'eth0.10 must not exist before the tutorial');
  // 1. Create the network; eth0.10 now exists on the host.
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0.10',
    'my-8021q-macvlan-net',
  ]);
  assert.match(host.dockerOk(['network', 'ls']), /^[0-9a-f]{12}\s+my-8021q-macvlan-net\s+lanplug-macvlan\s+local\s*$/m);
  const [inspected] = JSON.parse(host.dockerOk(['network', 'inspect', 'my-8021q-macvlan-net'])) as {
    Options: Record<string, string>;
  }[];
  assert.deepEqual(inspected?.Options, { parent: 'eth0.10' });
  assert.match(host.execOk(['ip', '-d', 'link', 'show', 'eth0.10']), /vlan protocol 802\.1Q id 10 /);
  assert.match(host.execOk(['ip', 'addr', 'show', 'eth0.10']), /^\d+: eth0\.10@eth0: <[^>]*\bUP\b/m);
  // 2. Start the container.
  host.dockerOk([
    'run',
    '--rm',
    '-itd',
    '--network',
    'my-8021q-macvlan-net',
    '--name',
    'my-second-macvlan-alpine',
    'alpine:latest',
    'ash',
  ]);
  // 3. Inspect: the seed's Networks section.
  const net = containerNetwork(host, 'my-second-macvlan-alpine', 'my-8021q-macvlan-net');
  assert.equal(net.MacAddress, '02:42:ac:10:56:02');
  assert.equal(net.IPAddress, '172.16.86.2');
  assert.equal(net.IPPrefixLen, 24);
  assert.equal(net.Gateway, '172.16.86.1');
  // 4. The container's view.
  const addr = host.dockerOk(['exec', 'my-second-macvlan-alpine', 'ip', 'addr', 'show', 'eth0']);
  assert.match(addr, /^\d+: eth0@if\d+: <BROADCAST,MULTICAST,UP,LOWER_UP(,M-DOWN)?> mtu 1500/m);
  assert.match(addr, /link\/ether 02:42:ac:10:56:02 brd ff:ff:ff:ff:ff:ff/);
  assert.match(addr, /inet 172\.16\.86\.2\/24 brd 172\.16\.86\.255 scope global eth0/);
  assert.deepEqual(lines(host.dockerOk(['exec', 'my-second-macvlan-alpine', 'ip', 'route'])), [
    'default via 172.16.86.1 dev eth0',
    '172.16.86.0/24 dev eth0 scope link  src 172.16.86.2',
  ]);
  // Tagged frames reach the LAN's VLAN 10 and come back.
  host.dockerOk(['exec', 'my-second-macvlan-alpine', 'ping', '-c', '1', '-W', '3', '172.16.86.1']);
  // 5. Stop and remove: eth0.10, which lanplug created, is gone.
  host.dockerOk(['container', 'stop', '-t', '1', 'my-second-macvlan-alpine']);
  host.dockerOk(['network', 'rm', 'my-8021q-macvlan-net']);
  assert.equal(hostHasLink('eth0.10'), false, 'eth0.10 must be gone after docker network rm');
  assertNoLanplugLinks(host);
});

test('seed dual-stack example on eth0.218 (with --ipv6): both families over the VLAN', async () => {
  const { host } = lab;
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipv6',
    '--subnet=192.168.216.0/24',
    '--subnet=192.168.218.0/24',
    '--gateway=192.168.216.1',
    '--gateway=192.168.218.1',
    '--subnet=2001:db8:abc8::/64',
    '--gateway=2001:db8:abc8::10',
    '-o',
    'parent=eth0.218',
    '-o',
    'macvlan_mode=bridge',
    'macvlan216',
  ]);
  host.dockerOk(['run', '-dit', '--network', 'macvlan216', '--name', 'ds1', 'alpine:latest', 'ash']);
  const net = containerNetwork(host, 'ds1', 'macvlan216');
  assert.equal(net.IPv6Gateway, '2001:db8:abc8::10');
  assert.match(net.GlobalIPv6Address, /^2001:db8:abc8::/);
  assert.equal(net.Gateway, `192.168.${net.IPAddress.split('.')[2] ?? '?'}.1`);
  assert.match(host.dockerOk(['exec', 'ds1', 'ip', '-6', 'route']), /^default via 2001:db8:abc8::10 dev eth0/m);
  await eventually(
    () => host.dockerOk(['exec', 'ds1', 'ping', '-6', '-c', '1', '-W', '2', '2001:db8:abc8::10']),
    30_000,
  );
  host.dockerOk(['exec', 'ds1', 'ping', '-c', '1', '-W', '3', net.Gateway]);
  host.dockerOk(['rm', '-f', 'ds1']);
  host.dockerOk(['network', 'rm', 'macvlan216']);
  assert.equal(hostHasLink('eth0.218'), false);
});

test('a sub-interface that existed before is used and kept after docker network rm', () => {
  const { host } = lab;
  host.execOk(['ip', 'link', 'add', 'link', 'eth0', 'name', 'eth0.30', 'type', 'vlan', 'id', '30']);
  host.dockerOk(['network', 'create', '-d', 'lanplug-macvlan', '--subnet=10.30.0.0/24', '-o', 'parent=eth0.30', 'pre']);
  host.dockerOk(['network', 'rm', 'pre']);
  assert.equal(hostHasLink('eth0.30'), true, "the user's eth0.30 must survive");
  host.execOk(['ip', 'link', 'del', 'eth0.30']);
});

test('two networks on one sub-interface lanplug created: removed with the last, in either order', () => {
  const { host } = lab;
  for (const [first, second] of [
    ['n1', 'n2'],
    ['n2', 'n1'],
  ] as const) {
    host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=10.40.1.0/24',
      '-o',
      'parent=eth0.40',
      'n1',
    ]);
    host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=10.40.2.0/24',
      '-o',
      'parent=eth0.40',
      'n2',
    ]);
    host.dockerOk(['network', 'rm', first]);
    assert.equal(hostHasLink('eth0.40'), true, `eth0.40 still used by ${second}`);
    host.dockerOk(['network', 'rm', second]);
    assert.equal(hostHasLink('eth0.40'), false, 'eth0.40 removed with the last network');
  }
});

test('passthru on a dummy parent: first network and container take it; a second of either is refused', () => {
  const { host } = lab;
  host.execOk(['ip', 'link', 'add', 'dum0', 'type', 'dummy']);
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=10.50.0.0/24',
    '-o',
    'parent=dum0',
    '-o',
    'macvlan_mode=passthru',
    'pt',
  ]);
  const again = host.docker([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=10.51.0.0/24',
    '-o',
    'parent=dum0',
    'pt2',
  ]);
  assert.match(again.stderr, /macvlan network [0-9a-f]{12} is already using parent interface dum0 in mode passthru/);
  host.dockerOk(['run', '-dit', '--network', 'pt', '--name', 'pt-a', 'alpine:latest', 'ash']);
  const second = host.docker(['run', '-dit', '--network', 'pt', '--name', 'pt-b', 'alpine:latest', 'ash']);
  assert.match(second.stderr, /passthru allows one container per parent/);
  host.docker(['rm', '-f', 'pt-b']);
  host.dockerOk(['rm', '-f', 'pt-a']);
  host.dockerOk(['network', 'rm', 'pt']);
  assert.equal(hostHasLink('dum0'), true);
  host.execOk(['ip', 'link', 'del', 'dum0']);
  assertNoLanplugLinks(host);
});

test('no parent: the private parent is a dummy link on a kernel that has one, removed with the network', () => {
  const { host } = lab;
  host.dockerOk(['network', 'create', '-d', 'lanplug-macvlan', '--subnet=10.60.0.0/24', 'island']);
  const parent = `dm-${host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'island']).trim().slice(0, 12)}`;
  assert.match(host.execOk(['ip', '-d', 'link', 'show', parent]), /\bdummy\b/);
  host.dockerOk(['network', 'rm', 'island']);
  assert.equal(hostHasLink(parent), false);
});
