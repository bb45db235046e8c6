/**
 * A container's name on the LAN (docs/identity.md, "The name on the LAN"):
 * the LAN's DHCP server (dnsmasq, its DNS on, domain lab.test) registers the
 * name a container's DHCP client sends (DHCPv4 option 81, DHCPv6 option 39)
 * and a LAN host resolves it; on `-o lanplug.mdns=true` networks lanplug
 * answers `<name>.local` over mDNS from its own link, after probing, and
 * refuses a name a LAN device already answers for. One lab for all.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { dhcpNetworkArgs, dualStackDhcpNetworkArgs, startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import type { LanHost } from '../lab/lan';
import { containerNetwork, eventually, useLab } from './helpers';

const lab = useLab({ addresses: ['172.16.86.1/24', 'fd77::1/64'] });
let server: DhcpServer;
let asker: LanHost;

before(async () => {
  server = await startDhcpServer(lab.lan, {
    range: ['172.16.86.200', '172.16.86.250'],
    range6: ['fd77::200', 'fd77::2ff'],
    renewSeconds: 3,
    rebindSeconds: 6,
    domain: 'lab.test',
  });
  asker = lab.lan.addLanHost('asker', '172.16.86.9/24');
});
after(() => server?.stop());

/** What the LAN's DNS server answers for `name` (`type` A or AAAA), asked from a LAN host with busybox nslookup. */
function resolve(name: string, type: 'A' | 'AAAA'): string {
  return asker.exec(['busybox', 'nslookup', `-type=${type}`, name, '172.16.86.1']).stdout;
}

/** `address` as an answer line of nslookup's output (not the server's own "Address: 172.16.86.1:53"). */
function answers(output: string, address: string): boolean {
  return output.split('\n').some((l) => /^Address/.test(l) && l.replace(/^Address( \d+)?:\s*/, '').trim() === address);
}

function runNamed(container: string, network: string, identity: string): void {
  lab.host.dockerOk([
    'run',
    '-d',
    '--network',
    `name=${network},driver-opt=lanplug.identity=${identity}`,
    '--name',
    container,
    'alpine:latest',
    'sleep',
    '3600',
  ]);
}

test('DHCPv4: the server registers the name the client sends (option 81, a full name too): a LAN host resolves it to the lease', async () => {
  lab.host.dockerOk(dhcpNetworkArgs('dhcp'));
  runNamed('web1', 'dhcp', 'web1');
  runNamed('web2', 'dhcp', 'web2.lab.test');
  for (const [container, name] of [
    ['web1', 'web1.lab.test'],
    ['web2', 'web2.lab.test'],
  ] as const) {
    const address = containerNetwork(lab.host, container, 'dhcp').IPAddress;
    await eventually(() => {
      const answered = resolve(name, 'A');
      assert.ok(answers(answered, address), `${name} (${address}): ${answered}`);
    }, 10_000);
  }
  assert.match(server.log(), /client provides name: web2\.lab\.test/);
});

test('DHCPv6 (lanplug-dhcp): the name given at CreateEndpoint (after the lease) reaches the server at a renewal soon after Join: both families resolve', async () => {
  lab.host.dockerOk(dualStackDhcpNetworkArgs('dual'));
  runNamed('web6', 'dual', 'web6');
  const net = containerNetwork(lab.host, 'web6', 'dual');
  await eventually(() => {
    assert.ok(answers(resolve('web6.lab.test', 'A'), net.IPAddress), resolve('web6.lab.test', 'A'));
    assert.ok(answers(resolve('web6.lab.test', 'AAAA'), net.GlobalIPv6Address), resolve('web6.lab.test', 'AAAA'));
  }, 20_000);
});
