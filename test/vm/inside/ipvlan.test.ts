/**
 * Runs inside the full-kernel VM: lanplug-ipvlan as a user sees it — the
 * seed's ipvlan example, l3 routes, the parent's MAC, and the refusals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertNoLanplugLinks, containerNetwork, useLab } from '../../e2e/helpers';

const lab = useLab({ addresses: ['192.168.210.254/24'] });

function hostMac(link: string): string {
  return /link\/ether ([0-9a-f:]{17})/.exec(lab.host.execOk(['ip', 'link', 'show', link]))?.[1] ?? 'none';
}

test("seed ipvlan example: -o ipvlan_mode=l2 -o parent=eth0 ipvlan210; containers use the parent's MAC", () => {
  const { host } = lab;
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--subnet=192.168.210.0/24',
    '--gateway=192.168.210.254',
    '-o',
    'ipvlan_mode=l2',
    '-o',
    'parent=eth0',
    'ipvlan210',
  ]);
  host.dockerOk(['run', '-dit', '--network', 'ipvlan210', '--name', 'iv1', 'alpine:latest', 'ash']);
  host.dockerOk(['run', '-dit', '--network', 'ipvlan210', '--name', 'iv2', 'alpine:latest', 'ash']);
  const net = containerNetwork(host, 'iv1', 'ipvlan210');
  assert.equal(net.IPAddress, '192.168.210.1');
  assert.equal(net.Gateway, '192.168.210.254');
  const parentMac = hostMac('eth0');
  assert.match(host.dockerOk(['exec', 'iv1', 'ip', 'link', 'show', 'eth0']), new RegExp(`link/ether ${parentMac} `));
  assert.match(host.dockerOk(['exec', 'iv1', 'ip', 'route']), /^default via 192\.168\.210\.254 dev eth0/m);
  host.dockerOk(['exec', 'iv1', 'ping', '-c', '1', '-W', '3', '192.168.210.254']);
  host.dockerOk(['exec', 'iv1', 'ping', '-c', '1', '-W', '3', '192.168.210.2']);
  // The LAN sees the container's address on the host's MAC.
  assert.match(lab.lan.execOk(['ip', 'neigh', 'show', '192.168.210.1']), new RegExp(`lladdr ${parentMac}`));
  const custom = host.docker([
    'run',
    '-dit',
    '--network',
    'ipvlan210',
    '--mac-address',
    '02:42:c0:a8:d2:99',
    '--name',
    'iv3',
    'alpine:latest',
    'ash',
  ]);
  assert.notEqual(custom.status, 0);
  assert.match(custom.stderr, /ipvlan interfaces do not support custom mac address assignment/);
  host.docker(['rm', '-f', 'iv3']);

  // The kernel keeps one ipvlan mode per parent; so does lanplug.
  const l3 = host.docker([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--subnet=10.3.0.0/24',
    '-o',
    'ipvlan_mode=l3',
    '-o',
    'parent=eth0',
    'other',
  ]);
  assert.match(
    l3.stderr,
    /ipvlan network [0-9a-f]{12} is already using parent interface eth0 in mode l2 flag bridge; the kernel keeps one ipvlan mode per parent/,
  );
  const mac = host.docker([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=10.4.0.0/24',
    '-o',
    'parent=eth0',
    'other',
  ]);
  assert.match(
    mac.stderr,
    /ipvlan network [0-9a-f]{12} is already using parent interface eth0; the kernel cannot hold macvlan and ipvlan links on one parent/,
  );
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--subnet=10.5.0.0/24',
    '-o',
    'parent=eth0',
    'same-mode',
  ]);
  host.dockerOk(['rm', '-f', 'iv1', 'iv2']);
  host.dockerOk(['network', 'rm', 'ipvlan210', 'same-mode']);
  assertNoLanplugLinks(host);
});

test('ipvlan l3: no gateway, an on-link default route, containers reach each other', () => {
  const { host } = lab;
  host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--subnet=10.33.0.0/24',
    '-o',
    'ipvlan_mode=l3',
    '-o',
    'parent=eth0',
    'l3net',
  ]);
  host.dockerOk(['run', '-dit', '--network', 'l3net', '--name', 'l3a', 'alpine:latest', 'ash']);
  host.dockerOk(['run', '-dit', '--network', 'l3net', '--name', 'l3b', 'alpine:latest', 'ash']);
  assert.equal(containerNetwork(host, 'l3a', 'l3net').Gateway, '');
  // Docker installs the connected route answered by Join; busybox prints it with its scope.
  assert.match(host.dockerOk(['exec', 'l3a', 'ip', 'route']), /^default dev eth0( scope link)?\s*$/m);
  host.dockerOk(['exec', 'l3a', 'ping', '-c', '1', '-W', '3', containerNetwork(host, 'l3b', 'l3net').IPAddress]);
  host.dockerOk(['rm', '-f', 'l3a', 'l3b']);
  host.dockerOk(['network', 'rm', 'l3net']);
  assertNoLanplugLinks(host);
});

test('ipvlan on an 802.1Q parent lanplug creates, removed with the network', () => {
  const { host } = lab;
  host.dockerOk(['network', 'create', '-d', 'lanplug-ipvlan', '--subnet=10.70.0.0/24', '-o', 'parent=eth0.70', 'iv70']);
  assert.match(host.execOk(['ip', '-d', 'link', 'show', 'eth0.70']), /vlan protocol 802\.1Q id 70 /);
  host.dockerOk(['run', '-dit', '--network', 'iv70', '--name', 'v70', 'alpine:latest', 'ash']);
  host.dockerOk(['rm', '-f', 'v70']);
  host.dockerOk(['network', 'rm', 'iv70']);
  assert.notEqual(host.exec(['ip', 'link', 'show', 'eth0.70']).status, 0);
});

test('bad ipvlan mode and flag: Docker wording, nothing created', () => {
  const { host } = lab;
  const mode = host.docker([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--subnet=10.6.0.0/24',
    '-o',
    'ipvlan_mode=l4',
    '-o',
    'parent=eth0',
    'bad',
  ]);
  assert.equal(
    mode.stderr.trim(),
    "Error response from daemon: NetworkDriver.CreateNetwork: requested ipvlan mode 'l4' is not valid, 'l2' mode is the ipvlan driver default; accepted: l2, l3, l3s",
  );
  const flag = host.docker([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--subnet=10.6.0.0/24',
    '-o',
    'ipvlan_flag=open',
    '-o',
    'parent=eth0',
    'bad',
  ]);
  assert.equal(
    flag.stderr.trim(),
    "Error response from daemon: NetworkDriver.CreateNetwork: requested ipvlan flag 'open' is not valid, 'bridge' is the ipvlan driver default; accepted: bridge, private, vepa",
  );
  assert.doesNotMatch(host.dockerOk(['network', 'ls']), /\bbad\b/);
});
