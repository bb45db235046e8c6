/**
 * The seed's macvlan bridge tutorial, word for word with -d lanplug-macvlan,
 * against a real dockerd in a lab namespace whose eth0 is a veth into a LAN
 * bridge. What is asserted is what a user sees: docker's output, the
 * container's addresses and routes, pings that get through, links that are
 * gone afterwards.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LanHost } from '../lab/lan';
import { assertNoLanplugLinks, containerNetwork, lanplugStatus, lines, useLab } from './helpers';

const lab = useLab({ addresses: ['172.16.86.1/24', '192.168.32.254/24'], daemonArgs: ['--log-level', 'debug'] });
let lanHost: LanHost;
before(() => {
  lanHost = lab.lan.addLanHost('peer', ['172.16.86.10/24']);
});

test('seed bridge tutorial, word for word with -d lanplug-macvlan [engine:seed-tutorial] [engine:mac-from-ipv4]', () => {
  // 1. Create the network and verify it.
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    'my-macvlan-net',
  ]);
  const ls = lab.host.dockerOk(['network', 'ls']);
  assert.match(ls, /^[0-9a-f]{12}\s+my-macvlan-net\s+lanplug-macvlan\s+local\s*$/m);
  const [inspected] = JSON.parse(lab.host.dockerOk(['network', 'inspect', 'my-macvlan-net'])) as NetworkInspect[];
  assert.equal(inspected?.Driver, 'lanplug-macvlan');
  assert.deepEqual(inspected?.IPAM.Config, [{ Subnet: '172.16.86.0/24', Gateway: '172.16.86.1' }]);
  assert.deepEqual(inspected?.Options, { parent: 'eth0' });

  // 2. Start an alpine container on it.
  lab.host.dockerOk([
    'run',
    '--rm',
    '-dit',
    '--network',
    'my-macvlan-net',
    '--name',
    'my-macvlan-alpine',
    'alpine:latest',
    'ash',
  ]);

  // 3. docker container inspect: the seed's Networks section.
  const net = containerNetwork(lab.host, 'my-macvlan-alpine', 'my-macvlan-net');
  assert.equal(net.Gateway, '172.16.86.1');
  assert.equal(net.IPAddress, '172.16.86.2');
  assert.equal(net.IPPrefixLen, 24);
  assert.equal(net.MacAddress, '02:42:ac:10:56:02');
  assert.equal(net.IPv6Gateway, '');
  assert.equal(net.GlobalIPv6Address, '');
  assert.equal(net.GlobalIPv6PrefixLen, 0);

  // 4. How the container sees its interface and routes.
  const addr = lab.host.dockerOk(['exec', 'my-macvlan-alpine', 'ip', 'addr', 'show', 'eth0']);
  assert.match(
    addr,
    /^\d+: eth0@if\d+: <BROADCAST,MULTICAST,UP,LOWER_UP(,M-DOWN)?> mtu 1500 qdisc noqueue( state UP)?/m,
  );
  assert.match(addr, /^\s+link\/ether 02:42:ac:10:56:02 brd ff:ff:ff:ff:ff:ff$/m);
  assert.match(addr, /^\s+inet 172\.16\.86\.2\/24 brd 172\.16\.86\.255 scope global eth0$/m);
  // busybox ends some lines with a space; the seed's text does not.
  assert.deepEqual(lines(lab.host.dockerOk(['exec', 'my-macvlan-alpine', 'ip', 'route'])), [
    'default via 172.16.86.1 dev eth0',
    '172.16.86.0/24 dev eth0 scope link  src 172.16.86.2',
  ]);

  // On the LAN: the container reaches the gateway and another LAN host, and is reached back.
  lab.host.dockerOk(['exec', 'my-macvlan-alpine', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
  lab.host.dockerOk(['exec', 'my-macvlan-alpine', 'ping', '-c', '1', '-W', '2', '172.16.86.10']);
  lanHost.execOk(['/bin/busybox', 'ping', '-c', '1', '-W', '2', '172.16.86.2']);
  // The LAN saw the container's own MAC (macvlan: a machine of its own).
  assert.match(lanHost.execOk(['ip', 'neigh', 'show', '172.16.86.2']), /lladdr 02:42:ac:10:56:02/);

  // 5. Stop the container (--rm removes it) and remove the network: nothing left behind.
  lab.host.dockerOk(['container', 'stop', 'my-macvlan-alpine']);
  lab.host.dockerOk(['network', 'rm', 'my-macvlan-net']);
  assert.doesNotMatch(lab.host.dockerOk(['network', 'ls']), /my-macvlan-net/);
  assertNoLanplugLinks(lab.host);
  assert.equal(lanplugStatus(lab.plugin), 'no lanplug networks');
});

test("the seed's pub_net and macnet32: --ip-range and --aux-address give .128 then .130", () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    'pub_net',
  ]);
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=192.168.32.0/24',
    '--ip-range=192.168.32.128/25',
    '--gateway=192.168.32.254',
    '--aux-address=my-router=192.168.32.129',
    '-o',
    'parent=eth0',
    'macnet32',
  ]);
  lab.host.dockerOk(['run', '--rm', '-dit', '--network', 'macnet32', '--name', 'm1', 'alpine:latest', 'ash']);
  lab.host.dockerOk(['run', '--rm', '-dit', '--network', 'macnet32', '--name', 'm2', 'alpine:latest', 'ash']);
  assert.equal(containerNetwork(lab.host, 'm1', 'macnet32').IPAddress, '192.168.32.128');
  assert.equal(containerNetwork(lab.host, 'm2', 'macnet32').IPAddress, '192.168.32.130');
  assert.equal(containerNetwork(lab.host, 'm2', 'macnet32').MacAddress, '02:42:c0:a8:20:82');
  assert.equal(containerNetwork(lab.host, 'm1', 'macnet32').Gateway, '192.168.32.254');
  lab.host.dockerOk(['exec', 'm2', 'ping', '-c', '1', '-W', '2', '192.168.32.254']);
  lab.host.dockerOk(['container', 'stop', 'm1', 'm2']);
  lab.host.dockerOk(['network', 'rm', 'macnet32', 'pub_net']);
  assertNoLanplugLinks(lab.host);
});

interface NetworkInspect {
  Driver: string;
  IPAM: { Config: { Subnet: string; Gateway?: string }[] };
  Options: Record<string, string>;
}
