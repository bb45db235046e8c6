/**
 * DHCP from the LAN's own server: a real dnsmasq on the lab's LAN, a real
 * dockerd, `-o dhcp=true` networks. Containers get an address from the
 * server's range with its router, keep it renewed (T1 = 3 s here), give it
 * back at stop, get the same one again after every kind of restart, follow
 * the server when it moves them, and a start with no server fails cleanly.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDhcp, encodeDhcp, OPT } from '../../src/dhcp/message';
import { composeOk } from '../lab/compose';
import { dhcpNetworkArgs, startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import { labEngine } from '../lab/engine';
import { restrictLanplugTo, startLanplug } from '../lab/lanplug';
import { run, runOk, sleep } from '../lab/proc';
import { RogueDhcpServer, type RogueClient, type RogueDhcpOptions } from '../lab/rogue-dhcp';
import {
  assertNoLanplugLinks,
  containerNetwork,
  eventually,
  lanplugStatus,
  removeNetworkAfterBurst,
  runAllAtOnce,
  useLab,
} from './helpers';
import { SERVICE_CAPABILITIES } from '../../src/install/units';
import { clientIdFromIdentity, macFromIdentity } from '../../src/driver/identity';
import type { EndpointRow } from '../../src/observe/listing';
import { repoRoot } from '../support/repo';
import { unixHttp } from '../../src/api/unix-http';
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';

// The daemon holds only what the service's unit gives it: this file proves that is enough.
restrictLanplugTo(SERVICE_CAPABILITIES);
// Metrics over TCP too, in the Docker host's namespace (read with its busybox wget).
const METRICS_AT = '127.0.0.1:9464';
const DAEMON_ARGS = ['--metrics-listen', METRICS_AT];
const lab = useLab({ addresses: ['172.16.86.1/24'], daemonArgs: DAEMON_ARGS });
const RANGE: [string, string] = ['172.16.86.100', '172.16.86.150'];
let server: DhcpServer;

before(async () => {
  server = await startDhcpServer(lab.lan, {
    range: RANGE,
    renewSeconds: 3,
    rebindSeconds: 6,
  });
});
after(() => server?.stop());
beforeEach(async () => {
  // Each test starts from the server as configured above (a test may have stopped or changed it).
  await server.restart({ range: RANGE, hosts: [] });
});

function dhcpNetwork(name = 'lan', extra: string[] = []): void {
  lab.host.dockerOk(dhcpNetworkArgs(name, extra));
}

/** `docker run` of a container on network `lan` with a MAC of its own: the DHCP server knows it by that MAC. */
function runArgsWithMac(name: string, mac: string): string[] {
  return ['run', '-d', '--network', 'lan', '--mac-address', mac, '--name', name, 'alpine:latest', 'sleep', '3600'];
}

function runWithMac(name: string, mac: string): void {
  lab.host.dockerOk(runArgsWithMac(name, mac));
}

/**
 * A container on network `lan` with a per-endpoint option given by `docker network connect
 * --driver-opt`, which keeps the value's case (`docker run --network name=lan,driver-opt=...`
 * lower-cases it).
 */
function startWithDriverOpt(name: string, option: string): void {
  lab.host.dockerOk(['create', '--network', 'lan', '--name', name, 'alpine:latest', 'sleep', '3600']);
  lab.host.dockerOk(['network', 'disconnect', 'lan', name]);
  lab.host.dockerOk(['network', 'connect', '--driver-opt', option, 'lan', name]);
  lab.host.dockerOk(['start', name]);
}

function inRange(address: string): boolean {
  const last = Number(address.split('.')[3]);
  return address.startsWith('172.16.86.') && last >= 100 && last <= 150;
}

/** The IPv4 address on the container's eth0, as the container sees it. */
function addressInContainer(name: string): string {
  const out = lab.host.dockerOk(['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
  return /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out)?.[1] ?? '?';
}

function leaseOf(mac: string): { address: string; hostname: string; clientId: string } {
  const found = server.leases().filter((l) => l.mac === mac);
  assert.equal(
    found.length,
    1,
    `one lease line for ${mac} in dnsmasq's lease file: ${JSON.stringify(server.leases())}`,
  );
  return found[0] ?? { address: '', hostname: '', clientId: '' };
}

test('docker run gets an address from the server: in range, its router as gateway, reaches the LAN; inspect and the lease file agree [engine:dhcp-network]', () => {
  dhcpNetwork();
  const mac = '02:00:00:00:00:09';
  runWithMac('first', mac);
  const net = containerNetwork(lab.host, 'first', 'lan');
  assert.ok(inRange(net.IPAddress), `address ${net.IPAddress} is from the server's range`);
  assert.equal(net.IPPrefixLen, 24);
  assert.equal(net.Gateway, '172.16.86.1');
  assert.equal(net.MacAddress, mac);
  assert.equal(addressInContainer('first'), net.IPAddress);
  assert.match(lab.host.dockerOk(['exec', 'first', 'ip', 'route']), /default via 172\.16\.86\.1 dev eth0/);
  lab.host.dockerOk(['exec', 'first', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
  // Quiet while it asked in the host's namespace, the link has IPv6 in the container as on any other network.
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet',
    '172.16.86.0/24',
    '-o',
    'parent=eth0',
    'plain',
  ]);
  lab.host.dockerOk(['run', '-d', '--network', 'plain', '--name', 'plain', 'alpine:latest', 'sleep', '3600']);
  const ipv6Of = (name: string): string => {
    const sysctls = lab.host.dockerOk([
      'exec',
      name,
      'sh',
      '-c',
      'cd /proc/sys/net/ipv6/conf/eth0 && echo disable_ipv6=$(cat disable_ipv6) accept_ra=$(cat accept_ra) autoconf=$(cat autoconf) accept_dad=$(cat accept_dad)',
    ]);
    const linkLocal = /inet6 fe80::/.test(lab.host.dockerOk(['exec', name, 'ip', '-6', '-o', 'addr', 'show', 'eth0']));
    return `${sysctls.trim()} link-local=${String(linkLocal)}`;
  };
  assert.equal(ipv6Of('first'), ipv6Of('plain'));
  const lease = leaseOf(mac);
  assert.equal(lease.address, net.IPAddress);
  assert.equal(lease.clientId, '01:02:00:00:00:00:09', 'client id 01+MAC');
  const status = lanplugStatus(lab.plugin);
  assert.match(
    status,
    new RegExp(
      `dhcp lease ${net.IPAddress.replace(/\./g, '\\.')}/24 +server=172\\.16\\.86\\.1 +router=172\\.16\\.86\\.1 +dns=172\\.16\\.86\\.53`,
    ),
  );
});

test('lanplug.dhcp.id gives a client id and hostname the server records, and a MAC that follows the name; docker run --network name=lan,driver-opt=… passes it too (20.10 included), lower-cased [engine:dhcp-id]', async () => {
  dhcpNetwork();
  startWithDriverOpt('named', 'lanplug.dhcp.id=web1');
  const net = containerNetwork(lab.host, 'named', 'lan');
  const lease = leaseOf(net.MacAddress);
  assert.equal(lease.address, net.IPAddress);
  assert.equal(lease.hostname, 'web1');
  assert.equal(lease.clientId, '00:77:65:62:31', 'client id 00+"web1"');
  // Same name, same MAC: a second start elsewhere would be the same machine to the LAN.
  lab.host.dockerOk(['rm', '-f', 'named']);
  await eventually(() => assert.equal(server.count('DHCPRELEASE', net.MacAddress), 1));
  // docker run's own per-endpoint options (the CLI lower-cases their values: WEB1 reaches lanplug as web1).
  lab.host.dockerOk([
    'run',
    '-d',
    '--network',
    'name=lan,driver-opt=lanplug.dhcp.id=WEB1',
    '--name',
    'again',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
  assert.equal(containerNetwork(lab.host, 'again', 'lan').MacAddress, net.MacAddress);
  assert.equal(containerNetwork(lab.host, 'again', 'lan').IPAddress, net.IPAddress);
});

test('a container with an identity keeps its MAC, lease and address across docker restart, docker stop/start and lanplug restarts; no other container gets its MAC', async () => {
  dhcpNetwork();
  startWithDriverOpt('keeper', 'lanplug.dhcp.id=keeper1');
  const first = containerNetwork(lab.host, 'keeper', 'lan');
  assert.ok(inRange(first.IPAddress), `address ${first.IPAddress} is from the server's range`);
  const same = (when: string): void => {
    const now = containerNetwork(lab.host, 'keeper', 'lan');
    assert.equal(now.MacAddress, first.MacAddress, `same MAC after ${when}`);
    assert.equal(now.IPAddress, first.IPAddress, `same address after ${when}`);
    assert.equal(addressInContainer('keeper'), first.IPAddress, `the container has it after ${when}`);
    // One client to the server: one lease line for the MAC, on the same address.
    assert.equal(leaseOf(first.MacAddress).address, first.IPAddress, `one lease, the same, after ${when}`);
  };
  same('the first start');

  lab.host.dockerOk(['restart', '-t', '1', 'keeper']);
  same('docker restart');

  lab.host.dockerOk(['stop', '-t', '1', 'keeper']);
  await eventually(() => assert.equal(server.count('DHCPRELEASE', first.MacAddress), 2, 'released at each stop'));
  lab.host.dockerOk(['start', 'keeper']);
  same('docker stop and start');

  // The daemon restarted while the container runs, then while it is stopped.
  await lab.plugin.stop();
  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  lab.host.dockerOk(['restart', '-t', '1', 'keeper']);
  same('a lanplug restart, then docker restart');
  lab.host.dockerOk(['stop', '-t', '1', 'keeper']);
  await lab.plugin.stop();
  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  lab.host.dockerOk(['start', 'keeper']);
  same('docker stop, a lanplug restart, docker start');

  // Others never get its MAC or address: one with an identity of its own, one with none.
  startWithDriverOpt('other', 'lanplug.dhcp.id=other1');
  lab.host.dockerOk(['run', '-d', '--network', 'lan', '--name', 'plain', 'alpine:latest', 'sleep', '3600']);
  for (const name of ['other', 'plain']) {
    const net = containerNetwork(lab.host, name, 'lan');
    assert.notEqual(net.MacAddress, first.MacAddress, `${name} has a MAC of its own`);
    assert.notEqual(net.IPAddress, first.IPAddress, `${name} has an address of its own`);
  }
  same('two other containers started');
});

test("docker compose up --force-recreate, with lanplug.identity in the service's network driver_opts, keeps the MAC, address and lease, across a lanplug restart too: the server sees one client", async () => {
  dhcpNetwork();
  const dir = join(lab.host.dir, 'compose-identity');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'compose.yaml'),
    [
      'services:',
      '  web:',
      '    image: alpine:latest',
      '    command: ["sleep", "3600"]',
      '    networks:',
      '      lan:',
      '        driver_opts:',
      '          lanplug.identity: compose-web',
      'networks:',
      '  lan:',
      '    external: true',
      '',
    ].join('\n'),
  );
  const container = 'idc-web-1';
  const upRecreated = (): string => {
    composeOk(lab.host, dir, 'idc', ['up', '-d', '--force-recreate', '-t', '1']);
    return lab.host.dockerOk(['container', 'inspect', '-f', '{{.Id}}', container]).trim();
  };
  const ids = [upRecreated()];
  const first = containerNetwork(lab.host, container, 'lan');
  // compose's driver_opts reached CreateEndpoint: the MAC is the name's.
  assert.equal(first.MacAddress, macFromIdentity('compose-web'), 'the MAC lanplug.identity=compose-web gives');
  assert.ok(inRange(first.IPAddress), `address ${first.IPAddress} is from the server's range`);
  const clientId = clientIdFromIdentity('compose-web').replace(/(..)(?!$)/g, '$1:');
  const same = (when: string): void => {
    const now = containerNetwork(lab.host, container, 'lan');
    assert.equal(now.MacAddress, first.MacAddress, `same MAC after ${when}`);
    assert.equal(now.IPAddress, first.IPAddress, `same address after ${when}`);
    const link = lab.host.dockerOk(['exec', container, 'ip', '-o', 'link', 'show', 'eth0']);
    assert.ok(
      link.includes(`link/ether ${first.MacAddress} `),
      `the container's eth0 has the MAC after ${when}: ${link}`,
    );
    assert.equal(addressInContainer(container), first.IPAddress, `the container has the address after ${when}`);
    // One client to the server: one lease line for the MAC and for the client id, on the same address.
    assert.equal(leaseOf(first.MacAddress).address, first.IPAddress, `one lease, the same, after ${when}`);
    const byClientId = server.leases().filter((l) => l.clientId === clientId);
    assert.equal(byClientId.length, 1, `one lease line for client id ${clientId} after ${when}`);
    // Every lease the server gave this client was the same address.
    const acked = server
      .log()
      .split('\n')
      .filter((l) => l.includes('DHCPACK(') && l.includes(first.MacAddress))
      .map((l) => /DHCPACK\(\S+\) (\S+)/.exec(l)?.[1]);
    assert.deepEqual(new Set(acked), new Set([first.IPAddress]), `no other lease for the client after ${when}`);
  };
  same('the first up');

  ids.push(upRecreated());
  same('up --force-recreate');

  await lab.plugin.stop();
  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  ids.push(upRecreated());
  same('a lanplug restart, then up --force-recreate');
  ids.push(upRecreated());
  same('another up --force-recreate');
  assert.equal(new Set(ids).size, ids.length, `each up made a new container: ${ids.join(', ')}`);
  composeOk(lab.host, dir, 'idc', ['down', '-t', '1']);
  await eventually(() =>
    assert.equal(server.leases().filter((l) => l.mac === first.MacAddress).length, 0, 'released at down'),
  );
});

test('renewed at T1 without a new DISCOVER; released at docker stop; the same address after docker restart [engine:dhcp-network]', async () => {
  dhcpNetwork();
  const mac = '02:00:00:00:00:0a';
  runWithMac('renewed', mac);
  const first = containerNetwork(lab.host, 'renewed', 'lan').IPAddress;
  assert.equal(server.count('DHCPDISCOVER', mac), 1);
  // T1 is 3 s: two renewals (REQUEST + ACK each) within 8 s, and still one DISCOVER.
  await eventually(() => assert.ok(server.count('DHCPREQUEST', mac) >= 3, 'renewal requests seen'), 10_000);
  assert.equal(server.count('DHCPDISCOVER', mac), 1, 'renewals never start over');
  assert.match(lanplugStatus(lab.plugin), /renewed=\d{4}-/);
  lab.host.dockerOk(['stop', '-t', '1', 'renewed']);
  await eventually(() => assert.equal(server.count('DHCPRELEASE', mac), 1, 'DHCPRELEASE at stop'));
  // dnsmasq writes its lease file after it logs the exchange.
  await eventually(() =>
    assert.deepEqual(
      server.leases().filter((l) => l.mac === mac),
      [],
      'the server freed the lease',
    ),
  );
  lab.host.dockerOk(['start', 'renewed']);
  assert.equal(containerNetwork(lab.host, 'renewed', 'lan').IPAddress, first, 'same address after a restart');
  assert.equal(addressInContainer('renewed'), first);
});

// What lanplug's DHCP client and the LAN's server do once the container runs (renewals, declines, bounds,
// malformed answers), and lanplug's own pages: nothing of it is Docker's, so the Docker 28 lane, which runs
// this file again, leaves it to the 20.10 run.
const ENGINE_INDEPENDENT_ONCE =
  labEngine() === 'docker20' ? {} : { skip: 'engine-independent: run on Docker 20.10 only' };

test(
  'daemon kill -9 and start: the lease renews on (no DISCOVER); the dnsmasq restarted with its lease file keeps it too',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    dhcpNetwork();
    const mac = '02:00:00:00:00:0b';
    runWithMac('killed', mac);
    const address = containerNetwork(lab.host, 'killed', 'lan').IPAddress;
    process.kill(lab.plugin.daemonPid ?? lab.plugin.pid, 'SIGKILL');
    await lab.plugin.stop();
    const requestsBefore = server.count('DHCPREQUEST', mac);
    lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir, args: DAEMON_ARGS });
    await eventually(() => assert.ok(server.count('DHCPREQUEST', mac) > requestsBefore, 'renewing again'), 10_000);
    assert.equal(server.count('DHCPDISCOVER', mac), 1, 'no new DISCOVER after the daemon restart');
    // dnsmasq writes its lease file after it logs the exchange.
    await eventually(() => assert.equal(leaseOf(mac).address, address));

    await server.restart();
    const afterServer = server.count('DHCPREQUEST', mac);
    await eventually(
      () => assert.ok(server.count('DHCPREQUEST', mac) > afterServer, 'renewed with the restarted server'),
      10_000,
    );
    await eventually(() => assert.equal(leaseOf(mac).address, address));
    assert.equal(addressInContainer('killed'), address);
  },
);

test('reservations by MAC and by client id are honoured', () => {
  dhcpNetwork();
  return server.restart({ hosts: ['02:00:00:00:00:0c,172.16.86.140', 'id:00:64:62:31,172.16.86.141'] }).then(() => {
    runWithMac('bymac', '02:00:00:00:00:0c');
    assert.equal(containerNetwork(lab.host, 'bymac', 'lan').IPAddress, '172.16.86.140');
    startWithDriverOpt('byid', 'lanplug.dhcp.id=db1');
    assert.equal(containerNetwork(lab.host, 'byid', 'lan').IPAddress, '172.16.86.141');
  });
});

test(
  'the server moves the container (its range changed): the new address and route are applied in the container and logged',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    dhcpNetwork();
    const mac = '02:00:00:00:00:0d';
    runWithMac('moved', mac);
    const first = addressInContainer('moved');
    await server.restart({ range: ['172.16.86.200', '172.16.86.210'] });
    const moved = await eventually(() => {
      const now = addressInContainer('moved');
      assert.match(now, /^172\.16\.86\.2(0\d|10)$/, `moved from ${first} to the new range`);
      return now;
    }, 15_000);
    assert.match(lab.host.dockerOk(['exec', 'moved', 'ip', 'route']), /default via 172\.16\.86\.1 dev eth0/);
    lab.host.dockerOk(['exec', 'moved', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
    assert.match(
      lab.plugin.stderr(),
      new RegExp(
        `"dhcp lease moved the container[^\\n]*"from":"${first.replace(/\./g, '\\.')}/24","to":"${moved.replace(/\./g, '\\.')}/24"`,
      ),
    );
  },
);

test(
  'a server killed mid-renewal and away longer than the lease: the containers start over, are given their own addresses back and keep them (no DHCPDECLINE)',
  ENGINE_INDEPENDENT_ONCE,
  async (t) => {
    dhcpNetwork();
    const containers = [
      { name: 'outage1', mac: '02:00:00:00:00:21' },
      { name: 'outage2', mac: '02:00:00:00:00:22' },
    ];
    for (const c of containers) runWithMac(c.name, c.mac);
    const first = containers.map((c) => addressInContainer(c.name));
    const acked = containers.map((c) => server.count('DHCPACK', c.mac));
    // Killed mid-renewal: the server stops answering, each container's next renewal (T1 = 3 s) reaches it and
    // waits unanswered, and then the server dies (SIGKILL: it writes nothing more).
    server.signal('SIGSTOP');
    await sleep(4_000);
    server.signal('SIGKILL');
    server.stop();
    // The lease is 120 s. Past it, each container's next retry (RFC 2131: at least 60 s after the last failed
    // rebind) starts over with a DISCOVER asking for its address, which the server, free of it, gives back;
    // the conflict probe before use is answered by the container itself, its link still holding the address.
    await sleep(125_000);
    await server.restart();
    await eventually(() => {
      for (const [i, c] of containers.entries()) {
        assert.ok(server.count('DHCPDISCOVER', c.mac) >= 2, `${c.name} started over`);
        assert.ok(server.count('DHCPACK', c.mac) > (acked[i] ?? 0), `${c.name} was given an address`);
      }
    }, 45_000);
    // A decline would follow its ACK within the probe's 200 ms, and its next DISCOVER a second later.
    await sleep(3_000);
    for (const [i, c] of containers.entries()) {
      assert.equal(server.count('DHCPDECLINE', c.mac), 0, `${c.name} declined nothing: ${server.log()}`);
      assert.equal(addressInContainer(c.name), first[i], `${c.name} kept its address`);
      assert.equal(leaseOf(c.mac).address, first[i]);
    }
    assert.doesNotMatch(lab.plugin.stderr(), /declining a DHCP address/);
    assert.equal(new Set(first).size, containers.length, 'no address on two containers');
    t.diagnostic(
      `server killed mid-renewal, away 125 s: ${containers.length} containers, each its own address back (${first.join(', ')}), 0 DHCPDECLINE`,
    );
  },
);

test(
  'an address a LAN device already uses is declined: the server hears DHCPDECLINE, the container gets another, the log names the device',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    dhcpNetwork();
    const mac = '02:00:00:00:00:0e';
    // The server reserves an address for this MAC; a device holds it, answering ARP but not ping (a firewalled
    // one): a server's ping before it offers would miss it (the lab's dnsmasq does not ping at all).
    const taken = '172.16.86.142';
    await server.restart({ hosts: [`${mac},${taken}`] });
    const squatter = lab.lan.addLanHost('squat', `${taken}/24`);
    try {
      squatter.execOk(['/bin/busybox', 'sysctl', '-qw', 'net.ipv4.icmp_echo_ignore_all=1']);
      const squatterMac = /link\/ether ([0-9a-f:]{17})/.exec(
        squatter.execOk(['ip', '-o', 'link', 'show', 'eth0']),
      )?.[1];
      assert.ok(squatterMac !== undefined);
      runWithMac('after', mac);
      const got = containerNetwork(lab.host, 'after', 'lan').IPAddress;
      assert.notEqual(got, taken, 'the address the device holds is not used');
      assert.ok(inRange(got), got);
      assert.equal(addressInContainer('after'), got);
      assert.equal(leaseOf(mac).address, got);
      assert.equal(server.count('DHCPDECLINE', mac), 1);
      assert.match(
        lab.plugin.stderr(),
        new RegExp(
          `"declining a DHCP address the LAN already uses"[^\\n]*"address":"${taken.replace(/\./g, '\\.')}","mac":"${squatterMac}"`,
        ),
      );
      lab.host.dockerOk(['exec', 'after', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
      // What an operator sees of it: the conflict in the events, the device among those heard.
      const found = lanplugEvents(['--json', '--since', '1m'])
        .split('\n')
        .filter((l) => l.includes('"kind":"conflict.found"'));
      assert.ok(
        found.some((l) => l.includes(`"address":"${taken}"`) && l.includes(`"mac":"${squatterMac}"`)),
        found.join('\n'),
      );
      assert.match(lanplugLs(['--lan']), new RegExp(`^${taken.replace(/\./g, '\\.')} +${squatterMac} `, 'm'));
      assert.ok(metric(await metricsPage(), 'lanplug_conflicts_total{kind="probe"}') >= 1, 'the conflict is counted');
    } finally {
      squatter.destroy();
    }
  },
);

test(
  "an offer of this host's own address is declined (whatever the LAN says): the server hears DHCPDECLINE, the container gets another",
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    dhcpNetwork();
    const mac = '02:00:00:00:00:0f';
    // The server reserves for this MAC the address the Docker host itself holds on its eth0 (the parent).
    const own = '172.16.86.143';
    await server.restart({ hosts: [`${mac},${own}`] });
    runOk(['ip', '-n', lab.host.ns, 'addr', 'add', `${own}/24`, 'dev', 'eth0']);
    try {
      runWithMac('beside', mac);
      const got = containerNetwork(lab.host, 'beside', 'lan').IPAddress;
      assert.notEqual(got, own, "the host's own address is not used");
      assert.ok(inRange(got), got);
      assert.equal(server.count('DHCPDECLINE', mac), 1);
      assert.match(
        lab.plugin.stderr(),
        new RegExp(
          `"declining a DHCP address: it is this host's own"[^\\n]*"address":"${own.replace(/\./g, '\\.')}","link":"eth0"`,
        ),
      );
    } finally {
      runOk(['ip', '-n', lab.host.ns, 'addr', 'del', `${own}/24`, 'dev', 'eth0']);
    }
  },
);

test(
  "a renewal ACK that moves the container onto this host's own address is declined: the container never takes it, starts over with DISCOVER and gets a checked address",
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    dhcpNetwork();
    const mac = '02:00:00:00:00:24';
    runWithMac('renewing', mac);
    const first = addressInContainer('renewing');
    // The host holds .145 on its eth0 (the parent). A server that answered the first DISCOVER honestly now
    // answers the renewal (T1: 3 s) with an ACK of .145: dnsmasq never does that, a rogue server on the LAN can.
    const own = '172.16.86.145';
    const fresh = '172.16.86.146';
    runOk(['ip', '-n', lab.host.ns, 'addr', 'add', `${own}/24`, 'dev', 'eth0']);
    server.stop();
    const rogue = RogueDhcpServer.start(lab.lan, { moveTo: own, offer: fresh });
    try {
      const seen = new Set<string>();
      const moved = await eventually(() => {
        const now = addressInContainer('renewing');
        seen.add(now);
        assert.equal(now, fresh, `moved from ${first} to the address offered after the decline`);
        return now;
      }, 20_000);
      assert.ok(!seen.has(own), `the container never held ${own}: ${[...seen].join(' ')}`);
      const declines = rogue.heardFrom('decline', mac);
      assert.equal(declines.length, 1, 'one DHCPDECLINE');
      assert.deepEqual([...(declines[0]?.options.get(OPT.requestedAddress) ?? [])], own.split('.').map(Number));
      const order = rogue.heard.filter((m) => m.chaddr === mac).map((m) => m.type);
      assert.deepEqual(order.slice(order.indexOf('decline'), order.indexOf('decline') + 3), [
        'decline',
        'discover',
        'request',
      ]);
      assert.match(
        lab.plugin.stderr(),
        new RegExp(`"declining a DHCP address: it is this host's own"[^\\n]*"address":"${own.replace(/\./g, '\\.')}"`),
      );
      assert.match(
        lab.plugin.stderr(),
        new RegExp(`"dhcp lease moved the container[^\\n]*"to":"${moved.replace(/\./g, '\\.')}/24"`),
      );
      assert.doesNotMatch(lab.plugin.stderr(), new RegExp(`"to":"${own.replace(/\./g, '\\.')}/24"`));
      lab.host.dockerOk(['exec', 'renewing', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
    } finally {
      await rogue.stop();
      runOk(['ip', '-n', lab.host.ns, 'addr', 'del', `${own}/24`, 'dev', 'eth0']);
    }
  },
);

// ---- A hostile server (issue 31, item 3): the rogue answers in dnsmasq's place, as a LAN device could ----

/** Runs `body` with the rogue server answering instead of dnsmasq (beforeEach brings dnsmasq back). */
async function withRogue<T>(options: RogueDhcpOptions, body: (rogue: RogueDhcpServer) => Promise<T> | T): Promise<T> {
  server.stop();
  const rogue = RogueDhcpServer.start(lab.lan, options);
  try {
    return await body(rogue);
  } finally {
    await rogue.stop();
  }
}

/**
 * `docker run` of a container with `mac` on network `lan`, waited for without blocking this process: the
 * rogue server answers from it (runWithMac's synchronous client would keep it from answering).
 */
function runBesideRogue(name: string, mac: string): Promise<{ code: number | null; stderr: string }> {
  return lab.host.dockerAsync(runArgsWithMac(name, mac));
}

async function runOkBesideRogue(name: string, mac: string): Promise<void> {
  const r = await runBesideRogue(name, mac);
  assert.equal(r.code, 0, r.stderr);
}

const escaped = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test(
  "offers lanplug may never use are declined whatever the network's policy (outside the subnet, the router, another container's address): DHCPDECLINE, one line naming the server and why, and the container takes the next offer",
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    // lanplug.conflict=off: nothing is asked of the LAN, so only these rules stand between the offer and the container.
    dhcpNetwork('lan', ['-o', 'lanplug.conflict=off']);
    // The subnet lanplug knows the LAN by on an -o dhcp=true network: the host's own on the parent.
    const hostAddress = '172.16.86.5/24';
    runOk(['ip', '-n', lab.host.ns, 'addr', 'add', hostAddress, 'dev', 'eth0']);
    const cases = [
      {
        name: 'outside',
        mac: '02:00:00:00:00:32',
        bad: '10.99.0.5',
        good: '172.16.86.121',
        why: 'outside the network',
      },
      { name: 'router', mac: '02:00:00:00:00:33', bad: '172.16.86.1', good: '172.16.86.122', why: 'the router' },
      {
        name: 'taken',
        mac: '02:00:00:00:00:34',
        bad: '172.16.86.120',
        good: '172.16.86.123',
        why: "another container's",
      },
    ];
    const first = '02:00:00:00:00:31';
    try {
      await withRogue(
        {
          offer: '172.16.86.149',
          clients: Object.fromEntries<RogueClient>([
            [first, { offers: ['172.16.86.120'] }],
            ...cases.map((c): [string, RogueClient] => [c.mac, { offers: [c.bad, c.good] }]),
          ]),
        },
        async (rogue) => {
          await runOkBesideRogue('first', first);
          assert.equal(addressInContainer('first'), '172.16.86.120');
          const seen: { name: string; address: string; declined: string[]; logged: boolean }[] = [];
          for (const c of cases) {
            const r = await runBesideRogue(c.name, c.mac);
            seen.push({
              name: c.name,
              address: r.code === 0 ? addressInContainer(c.name) : `refused: ${r.stderr.trim()}`,
              declined: rogue
                .heardFrom('decline', c.mac)
                .map((m) => [...(m.options.get(OPT.requestedAddress) ?? [])].join('.')),
              logged: new RegExp(
                `"declining a DHCP address: it is ${escaped(c.why)}[^"]*"[^\\n]*"address":"${escaped(c.bad)}"[^\\n]*"server":"172\\.16\\.86\\.1"`,
              ).test(lab.plugin.stderr()),
            });
          }
          assert.deepEqual(
            seen,
            cases.map((c) => ({ name: c.name, address: c.good, declined: [c.bad], logged: true })),
          );
          assert.equal(addressInContainer('first'), '172.16.86.120', 'the first container keeps its address');
        },
      );
    } finally {
      runOk(['ip', '-n', lab.host.ns, 'addr', 'del', hostAddress, 'dev', 'eth0']);
    }
  },
);

/** `lanplug status`'s lease line of the container at `address`: how long the lease is counted for, in seconds. */
function countedLeaseSeconds(address: string): number {
  const line = lanplugStatus(lab.plugin)
    .split('\n')
    .find((l) => l.includes(`dhcp lease ${address}/`));
  const m = /bound=(\S+) +expires=(\S+)/.exec(line ?? '');
  assert.ok(m !== null, `a lease line for ${address}`);
  return (Date.parse(m[2] ?? '') - Date.parse(m[1] ?? '')) / 1000;
}

test(
  'a lease time of 0 and one of 136 years are counted within bounds (60 s, 7 days), logged once: no DISCOVER storm, no renewal left for a century',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    dhcpNetwork();
    const zero = '02:00:00:00:00:35';
    const huge = '02:00:00:00:00:36';
    const untimed = { renewSeconds: null, rebindSeconds: null };
    await withRogue(
      {
        offer: '172.16.86.149',
        clients: {
          [zero]: { offers: ['172.16.86.124'], leaseSeconds: 0, ...untimed },
          [huge]: { offers: ['172.16.86.125'], leaseSeconds: 0xfffffffe, ...untimed },
        },
      },
      async (rogue) => {
        await runOkBesideRogue('zero', zero);
        await runOkBesideRogue('huge', huge);
        assert.equal(addressInContainer('zero'), '172.16.86.124');
        assert.equal(addressInContainer('huge'), '172.16.86.125');
        // Counted as given, a lease of 0 has ended when it begins: the keeper would start over at once, and again.
        await sleep(4_500);
        assert.deepEqual(
          [zero, huge].map((mac) => rogue.heard.filter((m) => m.chaddr === mac).map((m) => m.type)),
          [
            ['discover', 'request'],
            ['discover', 'request'],
          ],
          'one exchange each, nothing since',
        );
        assert.equal(addressInContainer('zero'), '172.16.86.124');
        assert.equal(countedLeaseSeconds('172.16.86.124'), 60);
        assert.equal(countedLeaseSeconds('172.16.86.125'), 7 * 86_400);
        for (const [address, given, counted] of [
          ['172.16.86.124', 0, 60],
          ['172.16.86.125', 0xfffffffe, 604_800],
        ] as const) {
          const lines = lab.plugin
            .stderr()
            .split('\n')
            .filter((l) => l.includes('"dhcp lease time out of bounds') && l.includes(`"address":"${address}"`));
          assert.equal(lines.length, 1, `one line for ${address}: ${lines.join('\n')}`);
          assert.match(
            lines[0] ?? '',
            new RegExp(`"server":"172\\.16\\.86\\.1","given":${given},"counted":${counted}`),
          );
        }
      },
    );
  },
);

test(
  'a server that NAKs every REQUEST: three tries, then one line naming the server, long before dhcp.timeout; nothing left behind',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    dhcpNetwork('lan', ['-o', 'dhcp.timeout=20s']);
    const mac = '02:00:00:00:00:37';
    await withRogue({ offer: '172.16.86.126', clients: { [mac]: { nak: true } } }, async (rogue) => {
      const started = Date.now();
      const r = await runBesideRogue('refused', mac);
      const tookMs = Date.now() - started;
      assert.notEqual(r.code, 0);
      assert.match(
        r.stderr,
        /network [0-9a-f]{12} on parent eth0: the DHCP server 172\.16\.86\.1 refused the address it offered \(172\.16\.86\.126\) 3 times on eth0 \(DHCPNAK: no\)/,
      );
      assert.equal(rogue.heardFrom('request', mac).length, 3, 'three REQUESTs');
      assert.ok(tookMs < 10_000, `refused after ${tookMs} ms`);
      assert.doesNotMatch(lanplugStatus(lab.plugin), /endpoint|dhcp lease/);
    });
  },
);

test(
  'malformed answers: a truncated one is ignored (one line naming the server and the fault) and the next taken; an option of the wrong length is ignored with a line; only malformed answers is a one-line error; the daemon lives on',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    dhcpNetwork('lan', ['-o', 'dhcp.timeout=4s']);
    const sloppy = '02:00:00:00:00:38';
    const broken = '02:00:00:00:00:39';
    // Cut inside option 54 (the server identifier, right after the message type): its 4 bytes run past the end.
    const truncated = (payload: Buffer): Buffer => payload.subarray(0, 240 + 3 + 4);
    const shortLeaseTime = (payload: Buffer): Buffer => {
      const m = decodeDhcp(payload);
      assert.ok(m !== null);
      m.options.set(OPT.leaseTime, Buffer.from([0, 0, 0x0e]));
      return encodeDhcp(m);
    };
    await withRogue(
      {
        offer: '172.16.86.149',
        clients: {
          // Its first OFFER cut short, its ACK with a 3-byte lease time.
          [sloppy]: {
            offers: ['172.16.86.127'],
            mangle: (p, n) => (n === 0 ? truncated(p) : n === 2 ? shortLeaseTime(p) : p),
          },
          [broken]: { offers: ['172.16.86.128'], mangle: truncated },
        },
      },
      async (rogue) => {
        await runOkBesideRogue('sloppy', sloppy);
        assert.equal(addressInContainer('sloppy'), '172.16.86.127');
        assert.equal(rogue.heardFrom('discover', sloppy).length, 2, 'asked again after the truncated OFFER');
        const log = lab.plugin.stderr();
        const truncatedLines = log
          .split('\n')
          .filter((l) => l.includes('"ignoring a malformed DHCP answer"') && l.includes('"server":"172.16.86.1"'));
        assert.equal(truncatedLines.length, 1, truncatedLines.join('\n'));
        assert.match(truncatedLines[0] ?? '', /"link":"eth0".*"why":"option 54 runs past the end of the message"/);
        assert.match(
          log,
          /"ignoring a malformed DHCP option"[^\n]*"server":"172\.16\.86\.1"[^\n]*"option":51[^\n]*"why":"3 bytes where 4 belong"/,
        );
        // The lease time it did not send in a usable form: RFC 2131's default for a lease without one.
        assert.equal(countedLeaseSeconds('172.16.86.127'), 3600);

        const r = await runBesideRogue('broken', broken);
        assert.notEqual(r.code, 0);
        assert.match(
          r.stderr,
          /network [0-9a-f]{12} on parent eth0: the DHCP server 172\.16\.86\.1 answered on eth0 only with malformed messages \(option 54 runs past the end of the message\)/,
        );
        assert.ok(lab.plugin.running, 'the daemon is still running');
      },
    );
  },
);

test("once its lease is given back (the container vanished while lanplug was down), a container's address is no longer defended against the device the server gives it to", async () => {
  dhcpNetwork();
  const mac = '02:00:00:00:00:23';
  runWithMac('vanished', mac);
  const address = addressInContainer('vanished');
  const sandboxKey = lab.host.dockerOk(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', 'vanished']).trim();
  process.kill(lab.plugin.daemonPid ?? lab.plugin.pid, 'SIGKILL');
  await lab.plugin.stop();
  // What a reboot leaves (or a dockerd that lost its exec-root): the namespace gone, and no Leave ever came.
  // dockerd still lists the endpoint, so lanplug keeps its row until Docker deletes it.
  lab.host.execOk(['umount', sandboxKey]);
  lab.host.execOk(['rm', '-f', sandboxKey]);
  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir, args: DAEMON_ARGS });
  await eventually(() => assert.equal(server.count('DHCPRELEASE', mac), 1, 'the lease was given back'));
  await sleep(3_000); // the LAN watch takes its links and holdings every 2 s
  // The address is the server's to give again: a device that takes it speaks from it (to its router).
  const device = lab.lan.addLanHost('heir', `${address}/24`);
  try {
    const deviceMac = /link\/ether ([0-9a-f:]{17})/.exec(device.execOk(['ip', '-o', 'link', 'show', 'eth0']))?.[1];
    device.execOk(['/bin/busybox', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
    await sleep(1_000);
    assert.doesNotMatch(lab.plugin.stderr(), /claims a container's address; defending it/);
    // A defence would have taught the LAN the gone container's MAC for the device's address.
    assert.match(lab.lan.execOk(['ip', 'neigh', 'show', address]), new RegExp(`lladdr ${deviceMac}`));
  } finally {
    device.destroy();
  }
});

test('no server: a one-line error naming the parent and the timeout, within the budget; no link, no row, no lease; the link asked quietly (no IPv6 in the host namespace)', async () => {
  dhcpNetwork('quiet', ['-o', 'dhcp.timeout=3s']);
  server.stop();
  const started = Date.now();
  const running = lab.host.dockerAsync([
    'run',
    '-d',
    '--network',
    'quiet',
    '--name',
    'lonely',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
  let finished = false;
  void running.then(() => (finished = true));
  // The endpoint's link asks from the Docker host's namespace for 3 s: no IPv6 address of the kernel's
  // making may appear on it there (a link-local address would mean DAD and router solicitations on the LAN).
  const asking = new Set<string>();
  const ipv6 = new Set<string>();
  while (!finished) {
    for (const m of lab.host.execOk(['ip', '-o', 'link', 'show']).matchAll(/: (lp-[0-9a-f]{12})[@:]/g))
      asking.add(m[1] ?? '');
    for (const m of lab.host
      .execOk(['ip', '-6', '-o', 'addr', 'show'])
      .matchAll(/: (lp-[0-9a-f]{12})\S*\s+inet6 (\S+)/g))
      ipv6.add(`${m[1] ?? ''} ${m[2] ?? ''}`);
    await sleep(100);
  }
  const r = await running;
  const tookMs = Date.now() - started;
  assert.ok(asking.size > 0, 'the endpoint link was seen while it asked');
  assert.deepEqual([...ipv6], [], 'no IPv6 address on the endpoint link before Join');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /network [0-9a-f]{12} on parent eth0: no DHCP server answered on eth0 within 3 s/);
  assert.ok(tookMs < 15_000, `refused after ${tookMs} ms`);
  // The network's own LAN link (lpe-) stays with the network; no endpoint link may.
  await eventually(() => assert.doesNotMatch(lab.host.execOk(['ip', '-o', 'link', 'show']), /: lp-[0-9a-f]{12}[@:]/));
  const status = lanplugStatus(lab.plugin);
  assert.doesNotMatch(status, /endpoint|dhcp lease/, status);
});

test('20 containers at once: 20 distinct leases from the range; all released when they go; nothing leaked', async () => {
  const since = Date.now();
  dhcpNetwork();
  const names = Array.from({ length: 20 }, (_v, i) => `many${i}`);
  await runAllAtOnce(lab.host, 'lan', names);
  const addresses = names.map((n) => containerNetwork(lab.host, n, 'lan').IPAddress);
  assert.equal(new Set(addresses).size, 20, `distinct: ${addresses.join(' ')}`);
  assert.ok(addresses.every(inRange), addresses.join(' '));
  for (const n of names) assert.equal(addressInContainer(n), containerNetwork(lab.host, n, 'lan').IPAddress);
  lab.host.dockerOk(['rm', '-f', ...names]);
  await eventually(() => assert.deepEqual(server.stillLeased(addresses), []), 15_000);
  await removeNetworkAfterBurst(lab.host, lab.plugin, 'lan', { ms: 30_000, since });
  assertNoLanplugLinks(lab.host);
  assert.match(lanplugStatus(lab.plugin), /^no lanplug networks$/);
});

function lanplugEvents(args: readonly string[]): string {
  return runOk([
    process.execPath,
    join(repoRoot(), 'bin', 'lanplug'),
    'events',
    '--state-dir',
    lab.plugin.stateDir,
    ...args,
  ]);
}

/** `lanplug ls --json` (or with other flags) run as an operator would, against this lab's daemon. */
function lanplugLs(args: readonly string[] = []): string {
  return runOk([
    process.execPath,
    join(repoRoot(), 'bin', 'lanplug'),
    'ls',
    '--state-dir',
    lab.plugin.stateDir,
    ...args,
  ]);
}

test("lanplug ls --json agrees with docker inspect on each container's MAC and addresses, and names where they came from: Docker's IPAM, the lanplug IPAM (with host access, dual stack), DHCP", () => {
  dhcpNetwork();
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet',
    '172.16.86.0/24',
    '-o',
    'parent=eth0',
    'plain',
  ]);
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--ipam-driver',
    'lanplug',
    '--subnet=192.168.40.0/24',
    '--gateway=192.168.40.1',
    '--aux-address',
    'host=192.168.40.254',
    '--ipv6',
    '--subnet=fd40::/64',
    '--aux-address',
    'host6=fd40::fe',
    '-o',
    'parent=eth0',
    '-o',
    'host_access=true',
    'pooled',
  ]);
  runWithMac('leased', '02:00:00:00:00:33');
  for (const [name, net] of [
    ['docker-ipam', 'plain'],
    ['lanplug-ipam', 'pooled'],
  ] as const)
    lab.host.dockerOk(['run', '-d', '--network', net, '--name', name, 'alpine:latest', 'sleep', '3600']);
  const rows = JSON.parse(lanplugLs(['--json'])) as EndpointRow[];
  const expected = [
    ['leased', 'lan', 'dhcp'],
    ['docker-ipam', 'plain', 'docker-ipam'],
    ['lanplug-ipam', 'pooled', 'lanplug-ipam'],
  ] as const;
  assert.equal(rows.length, expected.length, JSON.stringify(rows));
  for (const [container, net, source] of expected) {
    const inspected = containerNetwork(lab.host, container, net);
    const row = rows.find((r) => r.containerName === container);
    assert.ok(row !== undefined, `${container} is listed: ${JSON.stringify(rows)}`);
    assert.equal(row.network, net);
    assert.equal(row.source, source);
    assert.equal(row.mac, inspected.MacAddress);
    assert.equal(row.ipv4, `${inspected.IPAddress}/${inspected.IPPrefixLen}`);
    assert.equal(
      row.ipv6,
      inspected.GlobalIPv6Address === '' ? null : `${inspected.GlobalIPv6Address}/${inspected.GlobalIPv6PrefixLen}`,
    );
    assert.equal(row.containerId, lab.host.dockerOk(['inspect', '-f', '{{.Id}}', container]).trim());
  }
  const leased = rows.find((r) => r.containerName === 'leased');
  assert.equal(leased?.leases.length, 1);
  assert.match(leased?.leases[0]?.state ?? '', /^(bound|renewing)$/);
  assert.ok(Date.parse(leased?.leases[0]?.expires ?? '') > Date.now(), 'the lease ends in the future');
  assert.deepEqual(rows.find((r) => r.containerName === 'lanplug-ipam')?.hostAccess, {
    ipv4: '192.168.40.254',
    ipv6: 'fd40::fe',
  });
  // The table and the filters, as a person uses them.
  const table = lanplugLs(['--network', 'pooled']);
  assert.match(table, /^NETWORK +DRIVER/);
  assert.match(
    table,
    /^pooled +macvlan\/bridge +eth0 +lanplug-ipam +- +02:\S+ +192\.168\.40\.\d+\/24,fd40::\S+ +lanplug-ipam +- +192\.168\.40\.254,fd40::fe +-$/m,
  );
  assert.equal(table.trimEnd().split('\n').length, 2, table);
  const one = JSON.parse(lanplugLs(['--json', '--container', 'leased'])) as EndpointRow[];
  assert.deepEqual(
    one.map((r) => r.containerName),
    ['leased'],
  );
  // The LAN devices heard in the pools (any earlier test's squatters among them): a table, or the line saying none.
  assert.match(
    lanplugLs(['--lan']),
    /^(ADDRESS +MAC +FIRST SEEN +LAST SEEN +CONTAINER'S ADDRESS|no LAN devices heard in lanplug pools)$/m,
  );
  assert.ok(Array.isArray(JSON.parse(lanplugLs(['--lan', '--json']))));
  lab.host.dockerOk(['rm', '-f', 'leased', 'docker-ipam', 'lanplug-ipam']);
  lab.host.dockerOk(['network', 'rm', 'lan', 'plain', 'pooled']);
});

/** One sample of the daemon's metrics page (0 when the series is not there yet). */
function metric(page: string, series: string): number {
  const line = page.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

async function metricsPage(): Promise<string> {
  const page = await unixHttp(join(lab.plugin.stateDir, 'control.sock'), 'GET', '/metrics');
  assert.equal(page.status, 200, page.body);
  return page.body;
}

test(
  'metrics: 3 docker runs move the attach and create counters by 3 and the pool-used gauge reads 3, on the control socket and on --metrics-listen; promtool check metrics passes; 3 removals bring it back to 0',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    lab.host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet',
      '172.16.86.0/24',
      '-o',
      'parent=eth0',
      'counted',
    ]);
    const network = lab.host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'counted']).trim().slice(0, 12);
    const JOIN = 'lanplug_requests_total{method="NetworkDriver.Join",outcome="ok"}';
    const CREATE = 'lanplug_requests_total{method="NetworkDriver.CreateEndpoint",outcome="ok"}';
    const LEAVE = 'lanplug_requests_total{method="NetworkDriver.Leave",outcome="ok"}';
    const USED = `lanplug_pool_used_addresses{network="${network}",subnet="172.16.86.0/24"}`;
    const before = await metricsPage();
    const names = ['m1', 'm2', 'm3'];
    for (const n of names)
      lab.host.dockerOk(['run', '-d', '--network', 'counted', '--name', n, 'alpine:latest', 'sleep', '3600']);
    const after = await metricsPage();
    assert.equal(metric(after, JOIN) - metric(before, JOIN), 3);
    assert.equal(metric(after, CREATE) - metric(before, CREATE), 3);
    assert.equal(metric(after, USED), 3);
    assert.equal(metric(after, `lanplug_pool_size_addresses{network="${network}",subnet="172.16.86.0/24"}`), 254);
    assert.equal(metric(after, `lanplug_endpoints{network="${network}",driver="lanplug-macvlan"}`), 3);
    assert.ok(metric(after, 'lanplug_request_duration_seconds_count{method="NetworkDriver.Join"}') >= 3);
    assert.ok(metric(after, 'lanplug_probes_total{family="4",result="free"}') >= 3, 'each address was probed');
    // Prometheus's own check of the page: format and naming conventions (the e2e lane takes promtool out of
    // Debian's prometheus package into .lab/bin).
    const checked = spawnSync(join(repoRoot(), '.lab', 'bin', 'promtool'), ['check', 'metrics'], {
      input: after,
      encoding: 'utf8',
    });
    assert.equal(
      checked.status,
      0,
      `promtool check metrics: ${checked.stdout}${checked.stderr}${String(checked.error ?? '')}`,
    );
    // The same page over TCP, where a Prometheus scrapes it.
    const overTcp = lab.host.execOk(['/bin/busybox', 'wget', '-q', '-O', '-', `http://${METRICS_AT}/metrics`]);
    assert.equal(metric(overTcp, JOIN), metric(after, JOIN));
    assert.equal(metric(overTcp, USED), 3);
    lab.host.dockerOk(['rm', '-f', ...names]);
    const gone = await metricsPage();
    assert.equal(metric(gone, LEAVE) - metric(before, LEAVE), 3);
    assert.equal(metric(gone, USED), 0);
    lab.host.dockerOk(['network', 'rm', 'counted']);
  },
);

test(
  '/healthz: the running daemon passes its store, socket and no etcd probes (control socket and TCP); lanplug doctor shows it in one line',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    const page = lab.host.execOk(['/bin/busybox', 'wget', '-q', '-O', '-', `http://${METRICS_AT}/healthz`]);
    const onSocket = await unixHttp(join(lab.plugin.stateDir, 'control.sock'), 'GET', '/healthz');
    assert.equal(onSocket.status, 200);
    assert.equal((JSON.parse(onSocket.body) as { ok: boolean }).ok, true);
    const health = JSON.parse(page) as { ok: boolean; checks: { check: string; ok: boolean }[] };
    assert.equal(health.ok, true, page);
    // Over TCP, pass or fail per check only: no path of this host to whoever reaches the address.
    assert.doesNotMatch(page, /\//, 'no paths over TCP');
    const names = (JSON.parse(onSocket.body) as { checks: { check: string }[] }).checks.map((c) => c.check);
    assert.deepEqual(
      health.checks.map((c) => c.check),
      names.map((n) => (n.startsWith('socket ') ? 'socket' : n)),
    );
    assert.equal(names[0], 'store');
    for (const socket of ['control.sock', 'lanplug-macvlan.sock', 'lanplug-dhcp.sock', 'cni.sock'])
      assert.ok(
        names.some((n) => n.startsWith('socket ') && n.endsWith(`/${socket}`)),
        `${socket} is probed: ${names.join(', ')}`,
      );
    assert.ok(!names.includes('etcd'), 'no etcd probe on a single host');
    const doctor = run([
      process.execPath,
      join(repoRoot(), 'bin', 'lanplug'),
      'doctor',
      '--state-dir',
      lab.plugin.stateDir,
      '--plugin-dir',
      lab.plugin.pluginDir,
      '--docker-host',
      `unix://${lab.host.sock}`,
    ]).stdout;
    assert.match(doctor, new RegExp(`^✔ daemon health: all ${names.length} probes pass: store, socket `, 'm'), doctor);
  },
);

test('lanplug events --json: a DHCP container run, its lease renewed at T1, and its removal, in order; the lines for people too', async () => {
  const since = Date.now();
  dhcpNetwork();
  runWithMac('evented', '02:00:00:00:00:44');
  const kinds = (): { kind: string; at: number; fields: Record<string, string> }[] =>
    lanplugEvents(['--json', '--since', '2m'])
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { kind: string; at: number; fields: Record<string, string> })
      .filter((e) => e.at >= since);
  // T1 is 3 s here.
  await eventually(() => assert.ok(kinds().some((e) => e.kind === 'lease.renewed')), 15_000);
  // A follower started now sees the removal as it happens.
  const follower = spawn(process.execPath, [
    join(repoRoot(), 'bin', 'lanplug'),
    'events',
    '--state-dir',
    lab.plugin.stateDir,
    '--json',
    '--follow',
    '--since',
    '1s',
  ]);
  let followed = '';
  follower.stdout.on('data', (chunk: Buffer) => (followed += chunk.toString('utf8')));
  try {
    await sleep(500);
    lab.host.dockerOk(['rm', '-f', 'evented']);
    lab.host.dockerOk(['network', 'rm', 'lan']);
    await eventually(() => assert.match(followed, /"kind":"network\.removed"/), 5_000);
    assert.match(followed, /"kind":"endpoint\.left"[^\n]*\n(.*\n)*.*"kind":"endpoint\.removed"/);
  } finally {
    follower.kill();
  }
  const seen = kinds().map((e) => e.kind);
  const order = [
    'network.created',
    'lease.acquired',
    'endpoint.created',
    'endpoint.joined',
    'lease.renewed',
    // Given back while Docker's Leave is answered, so before the answer's event.
    'lease.released',
    'endpoint.left',
    'endpoint.removed',
    'network.removed',
  ];
  const at = order.map((k) => seen.indexOf(k));
  assert.ok(
    at.every((i, n) => i >= 0 && (n === 0 || i > (at[n - 1] ?? -1))),
    `in order ${order.join(', ')}: ${seen.join(', ')}`,
  );
  assert.match(
    lanplugEvents(['--since', '2m']),
    /^\S+Z lease\.renewed endpoint=[0-9a-f]{12} address=172\.16\.86\.\d+\/24 server=172\.16\.86\.1$/m,
  );
});
