/**
 * The everyday docker commands on lanplug networks, on whichever engine the lab runs (Debian's
 * 20.10 here, sid's 28.5 in the Docker 28 lane): `network connect`/`disconnect` of a running
 * container, `docker restart` and stop/start, the per-endpoint options of `--network
 * name=…,driver-opt=…` and `--mac-address`, and the announcements the LAN hears when a container
 * joins. Where the engines differ, each test says what it expects of each.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { countFramesFrom } from '../lab/frame-count';
import { assertNoLanplugLinks, containerNetwork, lanplugStatus, lines, useLab } from './helpers';

const lab = useLab({ addresses: ['172.16.86.1/24', '192.168.32.254/24', 'fd86::1/64'] });

function network(name: string, subnet: string, gateway: string, extra: readonly string[] = []): void {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    `--subnet=${subnet}`,
    `--gateway=${gateway}`,
    '-o',
    'parent=eth0',
    ...extra,
    name,
  ]);
}

function sleeper(name: string, args: readonly string[]): void {
  lab.host.dockerOk(['run', '-d', ...args, '--name', name, 'alpine:latest', 'sleep', '3600']);
}

function ping(container: string, address: string): void {
  lab.host.dockerOk(['exec', container, 'ping', '-c', '1', '-W', '2', address]);
}

/** The container's interface names, as it sees them (lo left out). */
function interfaces(container: string): string[] {
  return lines(lab.host.dockerOk(['exec', container, 'ip', '-o', 'link', 'show']))
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '?')
    .filter((n) => n !== 'lo');
}

test('network connect and disconnect of a running container: a second interface with its address reaches that LAN; disconnect takes it away and frees the address [engine:connect-disconnect]', () => {
  network('front', '172.16.86.0/24', '172.16.86.1');
  network('back', '192.168.32.0/24', '192.168.32.254');
  sleeper('web', ['--network', 'front']);
  lab.host.dockerOk(['network', 'connect', 'back', 'web']);
  const back = containerNetwork(lab.host, 'web', 'back');
  assert.equal(back.IPAddress, '192.168.32.1');
  assert.equal(back.MacAddress, '02:42:c0:a8:20:01');
  assert.deepEqual(interfaces('web'), ['eth0', 'eth1']);
  assert.match(lab.host.dockerOk(['exec', 'web', 'ip', 'addr', 'show', 'eth1']), /inet 192\.168\.32\.1\/24 /);
  ping('web', '192.168.32.254');
  ping('web', '172.16.86.1');

  // A pinned address on connect, then both disconnected: the links go, the addresses are free again.
  sleeper('db', ['--network', 'front']);
  lab.host.dockerOk(['network', 'connect', '--ip', '192.168.32.77', 'back', 'db']);
  assert.equal(containerNetwork(lab.host, 'db', 'back').IPAddress, '192.168.32.77');
  ping('db', '192.168.32.254');
  lab.host.dockerOk(['network', 'disconnect', 'back', 'web']);
  lab.host.dockerOk(['network', 'disconnect', 'back', 'db']);
  assert.deepEqual(interfaces('web'), ['eth0']);
  ping('web', '172.16.86.1');
  sleeper('again', ['--network', 'back', '--ip', '192.168.32.77']);
  ping('again', '192.168.32.254');
  lab.host.dockerOk(['rm', '-f', 'web', 'db', 'again']);
  lab.host.dockerOk(['network', 'rm', 'front', 'back']);
  assertNoLanplugLinks(lab.host);
  assert.equal(lanplugStatus(lab.plugin), 'no lanplug networks');
});

test('docker restart, and stop then start: the same address and MAC each time, the LAN reached again, no link left behind [engine:container-restart]', () => {
  network('lan', '172.16.86.0/24', '172.16.86.1', ['--ipv6', '--subnet=fd86::/64', '--gateway=fd86::1']);
  sleeper('svc', ['--network', 'lan']);
  const first = containerNetwork(lab.host, 'svc', 'lan');
  assert.deepEqual(
    [first.IPAddress, first.GlobalIPv6Address, first.MacAddress],
    ['172.16.86.2', 'fd86::2', '02:42:ac:10:56:02'],
  );
  for (const step of [
    ['restart', '-t', '1', 'svc'],
    ['stop', '-t', '1', 'svc'],
    ['start', 'svc'],
  ]) {
    lab.host.dockerOk(step);
    if (step[0] === 'stop') continue;
    const now = containerNetwork(lab.host, 'svc', 'lan');
    assert.deepEqual(
      [now.IPAddress, now.GlobalIPv6Address, now.MacAddress],
      [first.IPAddress, first.GlobalIPv6Address, first.MacAddress],
      `after docker ${step[0]}`,
    );
    ping('svc', '172.16.86.1');
    assert.deepEqual(interfaces('svc'), ['eth0']);
  }
  lab.host.dockerOk(['rm', '-f', 'svc']);
  lab.host.dockerOk(['network', 'rm', 'lan']);
  assertNoLanplugLinks(lab.host);
});

test('per-endpoint options: --mac-address is the MAC; endpoint sysctls apply on Docker 28 (20.10 passes them on only); the ifname option names no interface on either [engine:mac-address] [engine:endpoint-sysctls] [engine:endpoint-ifname]', () => {
  network('lan', '172.16.86.0/24', '172.16.86.1');
  sleeper('opts', [
    '--network',
    // driver-opt values reach the driver lower-cased by the CLI; dockerd ≥ 27 reads IFNAME in any case
    'name=lan,driver-opt=com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.arp_notify=1,driver-opt=com.docker.network.endpoint.ifname=lan0',
    '--mac-address',
    '02:11:22:33:44:55',
  ]);
  assert.equal(containerNetwork(lab.host, 'opts', 'lan').MacAddress, '02:11:22:33:44:55');
  assert.match(lab.host.dockerOk(['exec', 'opts', 'ip', 'link', 'show', 'eth0']), /link\/ether 02:11:22:33:44:55 /);
  // Docker 28 applies per-endpoint sysctls itself, to whatever interface the driver gave.
  const arpNotify = lab.host.dockerOk(['exec', 'opts', 'cat', '/proc/sys/net/ipv4/conf/eth0/arp_notify']).trim();
  assert.equal(arpNotify, lab.host.engine.name === 'docker28' ? '1' : '0');
  // Docker 28 passes the asked name to CreateEndpoint, but its remote-driver client drops the name a
  // plugin answers (moby v28.5.2 libnetwork/drivers/remote/driver.go: SetNames(src, prefix, "")): eth0.
  assert.deepEqual(interfaces('opts'), ['eth0']);
  ping('opts', '172.16.86.1');
  lab.host.dockerOk(['rm', '-f', 'opts']);
  lab.host.dockerOk(['network', 'rm', 'lan']);
});

test("announcements on attach: the LAN hears lanplug's 3 ARP and 3 NA on 20.10, and Docker 28's own 3 of each besides [engine:announcements]", async () => {
  network('lan', '172.16.86.0/24', '172.16.86.1', ['--ipv6', '--subnet=fd86::/64', '--gateway=fd86::1']);
  // 3 messages 1 s apart from each sender: the first at attach, the last 2 s later
  const counting = countFramesFrom(lab.lan, '02:42:ac:10:56:02', 4);
  await counting.ready;
  sleeper('loud', ['--network', 'lan']);
  const heard = await counting.result;
  const senders = lab.host.engine.name === 'docker28' ? 2 : 1;
  assert.deepEqual({ arp: heard.arp, na: heard.na }, { arp: 3 * senders, na: 3 * senders });
  lab.host.dockerOk(['rm', '-f', 'loud']);
  lab.host.dockerOk(['network', 'rm', 'lan']);
});

test("an identity by name (--network name=lan,driver-opt=lanplug.identity=web1): the same MAC across docker rm -f + docker run and docker restart, whatever address Docker's IPAM gives; a second live container with it is refused in one line and leaves no link [engine:identity]", () => {
  network('lan', '172.16.86.0/24', '172.16.86.1');
  const named = (name: string): string[] => ['--network', 'name=lan,driver-opt=lanplug.identity=web1', '--name', name];
  const nameMac = '9a:ea:7f:c1:5d:5c'; // macFromIdentity('web1'), the same as lanplug.dhcp.id=web1's
  lab.host.dockerOk(['run', '-d', ...named('web'), 'alpine:latest', 'sleep', '3600']);
  const first = containerNetwork(lab.host, 'web', 'lan');
  assert.deepEqual([first.IPAddress, first.MacAddress], ['172.16.86.2', nameMac]);
  assert.match(lab.host.dockerOk(['exec', 'web', 'ip', 'link', 'show', 'eth0']), new RegExp(`link/ether ${nameMac} `));
  lab.host.dockerOk(['restart', '-t', '1', 'web']);
  assert.equal(containerNetwork(lab.host, 'web', 'lan').MacAddress, nameMac, 'after docker restart');

  // Another container on the network meanwhile: the same name comes back at another address, with its MAC.
  lab.host.dockerOk(['rm', '-f', 'web']);
  sleeper('filler', ['--network', 'lan']);
  lab.host.dockerOk(['run', '-d', ...named('web'), 'alpine:latest', 'sleep', '3600']);
  const again = containerNetwork(lab.host, 'web', 'lan');
  assert.deepEqual([again.IPAddress, again.MacAddress], ['172.16.86.3', nameMac]);
  ping('web', '172.16.86.1');

  const second = lab.host.docker(['run', '-d', ...named('twin'), 'alpine:latest', 'sleep', '3600']);
  assert.notEqual(second.status, 0);
  const refusal = lines(second.stderr).filter((l) => l.includes('lanplug.identity'));
  assert.equal(refusal.length, 1, second.stderr);
  assert.match(
    refusal[0] ?? '',
    /--driver-opt lanplug\.identity=web1 is already used by endpoint [0-9a-f]{12} of network [0-9a-f]{12}; give each container its own identity/,
  );
  const links = lab.host
    .execOk(['ip', '-o', 'link', 'show'])
    .split('\n')
    .filter((l) => /^\d+: lp-/.test(l));
  assert.deepEqual(links, [], 'the refused container left no link (the running ones are in their namespaces)');
  assert.equal(containerNetwork(lab.host, 'web', 'lan').MacAddress, nameMac, 'the holder is untouched');
  lab.host.dockerOk(['rm', '-f', 'web', 'filler', 'twin']);
  lab.host.dockerOk(['network', 'rm', 'lan']);
  assertNoLanplugLinks(lab.host);
});
