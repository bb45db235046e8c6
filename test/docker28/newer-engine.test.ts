/**
 * What only Docker 28 offers, with lanplug: IPv6-only networks (`--ipv4=false`, API 1.48), with
 * Docker's IPAM, lanplug's and lanplug-dhcp (DHCPv6 only, from the LAN's dnsmasq); and the MACs
 * of Docker's own macvlan, random on 28, beside lanplug's, which are derived from the IPv4
 * address on every engine.
 */
import './engine';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import { assertNoLanplugLinks, containerNetwork, eventually, lines, useLab } from '../e2e/helpers';

const lab = useLab({ addresses: ['172.16.86.1/24', 'fd86::1/64'] });
let server: DhcpServer;
before(async () => {
  server = await startDhcpServer(lab.lan, {
    range: ['172.16.86.100', '172.16.86.150'],
    range6: ['fd86::100', 'fd86::1ff'],
  });
});
after(() => server?.stop());

const LOCAL_UNICAST = /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/;

test('--ipv4=false: an IPv6-only network with Docker’s IPAM and with lanplug’s; the container has IPv6 only, reaches the LAN; its MAC is its own [engine:ipv6-only]', async () => {
  const macs: string[] = [];
  for (const [name, ipam] of [
    ['six', []],
    ['six-ipam', ['--ipam-driver', 'lanplug']],
  ] as const) {
    lab.host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      ...ipam,
      '--ipv4=false',
      '--ipv6',
      '--subnet=fd86::/64',
      '--gateway=fd86::1',
      '-o',
      'parent=eth0',
      name,
    ]);
    assert.equal(lab.host.dockerOk(['network', 'inspect', name, '--format', '{{.EnableIPv4}}']).trim(), 'false');
    lab.host.dockerOk(['run', '-d', '--network', name, '--name', name, 'alpine:latest', 'sleep', '3600']);
    const net = containerNetwork(lab.host, name, name);
    assert.equal(net.IPAddress, '');
    assert.equal(net.Gateway, '');
    assert.equal(net.GlobalIPv6Address, 'fd86::2');
    assert.equal(net.IPv6Gateway, 'fd86::1');
    // no IPv4 address to derive the MAC from: a random locally administered one
    assert.match(net.MacAddress, LOCAL_UNICAST);
    macs.push(net.MacAddress);
    assert.deepEqual(lines(lab.host.dockerOk(['exec', name, 'ip', '-4', 'addr', 'show', 'eth0'])), []);
    assert.match(lab.host.dockerOk(['exec', name, 'ip', '-6', 'route']), /default via fd86::1 dev eth0/);
    // the address may be tentative (duplicate address detection) for a moment
    await eventually(() => lab.host.dockerOk(['exec', name, 'ping', '-6', '-c', '1', '-W', '1', 'fd86::1']), 10_000);
    lab.host.dockerOk(['rm', '-f', name]);
    lab.host.dockerOk(['network', 'rm', name]);
  }
  assert.notEqual(macs[0], macs[1]);
  assertNoLanplugLinks(lab.host);
});

test("Docker 28's own macvlan gives random MACs; lanplug's beside it derive theirs from the IPv4 address, as on 20.10 [engine:mac-from-ipv4]", () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'macvlan',
    '--subnet=172.16.86.0/25',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    'builtin',
  ]);
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '--ip-range=172.16.86.128/25',
    '-o',
    'parent=eth0',
    'ours',
  ]);
  lab.host.dockerOk(['run', '-d', '--network', 'builtin', '--name', 'theirs', 'alpine:latest', 'sleep', '3600']);
  lab.host.dockerOk(['run', '-d', '--network', 'ours', '--name', 'mine', 'alpine:latest', 'sleep', '3600']);
  const theirs = containerNetwork(lab.host, 'theirs', 'builtin');
  assert.equal(theirs.IPAddress, '172.16.86.2');
  assert.match(theirs.MacAddress, LOCAL_UNICAST);
  assert.notEqual(theirs.MacAddress, '02:42:ac:10:56:02', 'Docker 20.10 would have derived this one');
  const mine = containerNetwork(lab.host, 'mine', 'ours');
  assert.equal(mine.IPAddress, '172.16.86.128');
  assert.equal(mine.MacAddress, '02:42:ac:10:56:80');
  lab.host.dockerOk(['exec', 'mine', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
  lab.host.dockerOk(['rm', '-f', 'theirs', 'mine']);
  lab.host.dockerOk(['network', 'rm', 'builtin', 'ours']);
  assertNoLanplugLinks(lab.host);
});

test('--ipv4=false with --ipam-driver lanplug-dhcp: the address comes from DHCPv6 alone, no DHCPv4 asked; released at rm [engine:ipv6-only]', async () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug-dhcp',
    '--ipv4=false',
    '--ipv6',
    '--subnet=fd86::/64',
    '-o',
    'parent=eth0',
    'dhcp6',
  ]);
  const mac = '02:00:00:00:06:66';
  lab.host.dockerOk([
    'run',
    '-d',
    '--network',
    'dhcp6',
    '--mac-address',
    mac,
    '--name',
    'v6',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
  const net = containerNetwork(lab.host, 'v6', 'dhcp6');
  assert.equal(net.IPAddress, '');
  assert.match(net.GlobalIPv6Address, /^fd86::1[0-9a-f]{2}$/);
  const duid = `00:03:00:01:${mac}`;
  assert.equal(server.leases().find((l) => l.clientId === duid)?.address, net.GlobalIPv6Address);
  assert.equal(server.count('DHCPDISCOVER', mac), 0, 'no DHCPv4 on an IPv6-only network');
  assert.deepEqual(lines(lab.host.dockerOk(['exec', 'v6', 'ip', '-4', 'addr', 'show', 'eth0'])), []);
  await eventually(() => lab.host.dockerOk(['exec', 'v6', 'ping', '-6', '-c', '1', '-W', '1', 'fd86::1']), 10_000);
  lab.host.dockerOk(['rm', '-f', 'v6']);
  await eventually(() => assert.equal(server.count('DHCPRELEASE', duid), 1, 'a DHCPv6 Release'));
  lab.host.dockerOk(['network', 'rm', 'dhcp6']);
  assertNoLanplugLinks(lab.host);
});

test('gw-priority between two lanplug networks: the default route follows the higher one, either way round; GwAllocCheck keeps 28’s gateway without --gateway [engine:gw-priority] [engine:gateway-without-flag]', () => {
  // No --gateway on the second: Docker 28 reserves the subnet's first address (lanplug's GwAllocCheck answer on 28).
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    'first',
  ]);
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=10.86.0.0/24',
    '-o',
    'parent=eth0',
    'second',
  ]);
  // Docker 28.5's `network inspect` lists only the --subnet (IPAM.Config has no gateway it chose itself):
  // what the containers get says whether it reserved one.
  for (const [high, via] of [
    ['first', '172.16.86.1'],
    ['second', '10.86.0.1'],
  ] as const) {
    const low = high === 'first' ? 'second' : 'first';
    lab.host.dockerOk([
      'run',
      '-d',
      '--network',
      `name=${high},gw-priority=10`,
      '--network',
      `name=${low},gw-priority=1`,
      '--name',
      `prio-${high}`,
      'alpine:latest',
      'sleep',
      '3600',
    ]);
    assert.equal(containerNetwork(lab.host, `prio-${high}`, 'second').Gateway, '10.86.0.1');
    assert.match(
      lab.host.dockerOk(['exec', `prio-${high}`, 'ip', 'route', 'show', 'default']),
      new RegExp(`default via ${via.replace(/\./g, '\\.')} `),
    );
    lab.host.dockerOk(['rm', '-f', `prio-${high}`]);
  }
  lab.host.dockerOk(['network', 'rm', 'first', 'second']);
});
