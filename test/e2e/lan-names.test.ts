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
import { join } from 'node:path';
import { dhcpNetworkArgs, dualStackDhcpNetworkArgs, startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import type { LanHost } from '../lab/lan';
import { MdnsResponderPeer, mdnsQuery } from '../lab/mdns-peer';
import { runOk } from '../lab/proc';
import { repoRoot } from '../support/repo';
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

function lanplugEvents(): string {
  return runOk([process.execPath, join(repoRoot(), 'bin', 'lanplug'), 'events', '--state-dir', lab.plugin.stateDir]);
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

function mdnsNetwork(): void {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet',
    '172.16.86.0/24',
    '--gateway',
    '172.16.86.1',
    '--ip-range',
    '172.16.86.64/28',
    '-o',
    'parent=eth0',
    '-o',
    'lanplug.mdns=true',
    'mdns',
  ]);
}

test('mDNS: a LAN host asking for <name>.local gets the container address; a device that claims the name later makes lanplug withdraw', async () => {
  mdnsNetwork();
  runNamed('cam1', 'mdns', 'cam1');
  const address = containerNetwork(lab.host, 'cam1', 'mdns').IPAddress;
  const peer = lab.lan.addLanHost('peer', '172.16.86.10/24');
  const rival = lab.lan.addLanHost('rival', '172.16.86.11/24');
  let claimer: MdnsResponderPeer | null = null;
  try {
    await eventually(() => assert.deepEqual(mdnsQuery(peer, 'cam1.local', 1_500), [address]), 15_000);
    // A name nobody has is not answered.
    assert.deepEqual(mdnsQuery(peer, 'nobody.local', 1_000), []);
    claimer = await MdnsResponderPeer.start(rival, 'cam1.local');
    await eventually(
      () =>
        assert.match(
          lab.plugin.stderr(),
          /"mdns: withdrawing a name a LAN device now answers for"[^\n]*"device":"172\.16\.86\.11"/,
        ),
      10_000,
    );
    await eventually(() => assert.deepEqual(mdnsQuery(peer, 'cam1.local', 1_500), ['172.16.86.11']), 10_000);
    assert.equal(lab.host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'cam1']).trim(), 'true');
  } finally {
    claimer?.stop();
    peer.destroy();
    rival.destroy();
  }
});

test('mDNS: a name a LAN device already answers for is refused, not stolen: a log line and an event name the device; the container runs', async () => {
  mdnsNetwork();
  const owner = lab.lan.addLanHost('owner', '172.16.86.12/24');
  const peer = lab.lan.addLanHost('peer2', '172.16.86.13/24');
  const claimer = await MdnsResponderPeer.start(owner, 'cam2.local');
  try {
    runNamed('cam2', 'mdns', 'cam2');
    await eventually(
      () =>
        assert.match(
          lab.plugin.stderr(),
          /"mdns: refusing a name a LAN device already answers for"[^\n]*"device":"172\.16\.86\.12"/,
        ),
      15_000,
    );
    assert.match(lanplugEvents(), /mdns\.refused[^\n]*cam2\.local[^\n]*172\.16\.86\.12/);
    assert.deepEqual(mdnsQuery(peer, 'cam2.local', 2_000), ['172.16.86.12']);
    assert.equal(lab.host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'cam2']).trim(), 'true');
  } finally {
    claimer.stop();
    owner.destroy();
    peer.destroy();
  }
});

test('mDNS: a bad lanplug.mdns value is refused at network create in one line', () => {
  const r = lab.host.docker([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '-o',
    'parent=eth0',
    '-o',
    'lanplug.mdns=yes',
    'bad',
  ]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /lanplug\.mdns=yes[^\n]*(true|false)/);
  assert.equal(lab.host.docker(['network', 'inspect', 'bad']).status, 1);
});
