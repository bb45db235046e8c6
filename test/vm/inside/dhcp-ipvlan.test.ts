/**
 * Runs inside the full-kernel VM: DHCP on an ipvlan l2 network. Every
 * container shares the parent's MAC, so the server tells them apart by
 * client id only (lanplug.dhcp.id), and answers them by broadcast.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDhcpServer, type DhcpServer } from '../../lab/dhcp-server';
import { containerNetwork, eventually, useLab } from '../../e2e/helpers';

const lab = useLab({ addresses: ['172.16.86.1/24'] });
let server: DhcpServer;

before(async () => {
  server = await startDhcpServer(lab.lan, {
    range: ['172.16.86.100', '172.16.86.150'],
    renewSeconds: 3,
    rebindSeconds: 6,
  });
});
after(() => server?.stop());

function start(name: string, id: string): void {
  lab.host.dockerOk(['create', '--network', 'iv', '--name', name, 'alpine:latest', 'sleep', '3600']);
  lab.host.dockerOk(['network', 'disconnect', 'iv', name]);
  lab.host.dockerOk(['network', 'connect', '--driver-opt', `lanplug.dhcp.id=${id}`, 'iv', name]);
  lab.host.dockerOk(['start', name]);
}

test('ipvlan l2 with dhcp: one MAC, two client ids, two leases; renewed; released at stop', async () => {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--ipam-driver',
    'null',
    '-o',
    'parent=eth0',
    '-o',
    'dhcp=true',
    'iv',
  ]);
  start('one', 'iv-one');
  start('two', 'iv-two');
  const addresses = ['one', 'two'].map((n) => containerNetwork(lab.host, n, 'iv').IPAddress);
  assert.notEqual(addresses[0], addresses[1]);
  const leases = server.leases();
  assert.equal(leases.length, 2, JSON.stringify(leases));
  assert.equal(leases[0]?.mac, leases[1]?.mac, 'ipvlan: one MAC for both');
  assert.deepEqual(leases.map((l) => l.clientId).sort(), ['00:69:76:2d:6f:6e:65', '00:69:76:2d:74:77:6f']);
  for (const n of ['one', 'two']) lab.host.dockerOk(['exec', n, 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
  const mac = leases[0]?.mac ?? '?';
  await eventually(() => assert.ok(server.count('DHCPREQUEST', mac) >= 4, 'both renewed'), 10_000);
  assert.equal(server.count('DHCPDISCOVER', mac), 2);
  lab.host.dockerOk(['stop', '-t', '1', 'one', 'two']);
  await eventually(() => assert.deepEqual(server.leases(), []));
});
