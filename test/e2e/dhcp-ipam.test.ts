/**
 * `--ipam-driver lanplug-dhcp`: a dual-stack network whose IPv4 and IPv6
 * addresses both come from the LAN's own server (a real dnsmasq on the lab's
 * LAN, DHCPv4 and DHCPv6), asked by the IPAM driver with the MAC dockerd
 * sends it. Leases are taken before `docker run` returns, renewed, released
 * at stop, the same after a restart of the container or of the daemon;
 * reservations hold; bad input and a silent server fail in one line and
 * leave nothing behind.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { composeOk } from '../lab/compose';
import { dualStackDhcpNetworkArgs, startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import { labEngine } from '../lab/engine';
import { startLanplug } from '../lab/lanplug';
import { runOk, sleep } from '../lab/proc';
import {
  assertNoLanplugLinks,
  containerNetwork,
  eventually,
  lanplugStatus,
  removeNetworkAfterBurst,
  runAllAtOnce,
  useLab,
} from './helpers';

const lab = useLab({ addresses: ['172.16.86.1/24', 'fd77::1/64'] });
const RANGE: [string, string] = ['172.16.86.100', '172.16.86.150'];
const RANGE6: [string, string] = ['fd77::100', 'fd77::1ff'];
let server: DhcpServer;

before(async () => {
  server = await startDhcpServer(lab.lan, { range: RANGE, range6: RANGE6, renewSeconds: 3, rebindSeconds: 6 });
});
after(() => server?.stop());
beforeEach(async () => {
  await server.restart({ range: RANGE, range6: RANGE6, hosts: [] });
});

// What lanplug's DHCPv6 client and the server do once the container runs (renewals at dnsmasq's T1 of
// 60 s): nothing of it is Docker's, so the Docker 28 lane, which runs this file again, leaves it to the
// 20.10 run.
const DOCKER20 = labEngine() === 'docker20';
const ENGINE_INDEPENDENT_ONCE = DOCKER20 ? {} : { skip: 'engine-independent: run on Docker 20.10 only' };

function dualStackNetwork(name = 'lan', extra: readonly string[] = []): void {
  lab.host.dockerOk(dualStackDhcpNetworkArgs(name, extra));
}

function runWithMac(name: string, mac: string, network = 'lan'): void {
  lab.host.dockerOk([
    'run',
    '-d',
    '--network',
    network,
    '--mac-address',
    mac,
    '--name',
    name,
    'alpine:latest',
    'sleep',
    '3600',
  ]);
}

/** DUID-LL of a MAC as dnsmasq prints it: what lanplug sends for a container of that MAC. */
function duidOf(mac: string): string {
  return `00:03:00:01:${mac}`;
}

/** dnsmasq's DHCPv6 log lines of kind `what` (DHCPSOLICIT, DHCPRENEW, DHCPRELEASE...) for the DUID of `mac`. */
function count6(what: string, mac: string): number {
  return server.count(what, duidOf(mac));
}

function addressesInContainer(name: string): { v4: string; v6: string } {
  const v4 = lab.host.dockerOk(['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
  const v6 = lab.host.dockerOk(['exec', name, 'ip', '-6', '-o', 'addr', 'show', 'eth0', 'scope', 'global']);
  return {
    v4: /inet (\S+)\//.exec(v4)?.[1] ?? '?',
    v6: /inet6 (\S+)\//.exec(v6)?.[1] ?? '?',
  };
}

/** The links the IPAM driver asks with (lpd-) live for one exchange; the network's own LAN link (lpe-) stays. */
function assertNoAskingLinks(): void {
  assert.doesNotMatch(lab.host.execOk(['ip', '-o', 'link', 'show']), /: lpd-/);
}

function in6Range(address: string): boolean {
  const last = Number.parseInt(address.split(':').pop() ?? '', 16);
  return address.startsWith('fd77::') && last >= 0x100 && last <= 0x1ff;
}

function in4Range(address: string): boolean {
  const last = Number(address.split('.')[3]);
  return address.startsWith('172.16.86.') && last >= 100 && last <= 150;
}

function lease6(mac: string): { address: string; hostname: string } | undefined {
  return server.leases().find((l) => l.clientId === duidOf(mac));
}

test('dual stack from the LAN server: both addresses leased at docker run; inspect, container and lease file agree; both reach the LAN; renewed; released at stop; the same after a restart [engine:dhcp-ipam]', async () => {
  dualStackNetwork();
  const mac = '02:00:00:00:06:01';
  runWithMac('both', mac);
  const net = containerNetwork(lab.host, 'both', 'lan');
  assert.ok(in4Range(net.IPAddress), net.IPAddress);
  assert.ok(in6Range(net.GlobalIPv6Address), net.GlobalIPv6Address);
  assert.equal(net.GlobalIPv6PrefixLen, 64);
  assert.equal(net.MacAddress, mac);
  assert.deepEqual(addressesInContainer('both'), { v4: net.IPAddress, v6: net.GlobalIPv6Address });
  assert.equal(lease6(mac)?.address, net.GlobalIPv6Address, 'dnsmasq leased that IPv6 address to the DUID of the MAC');
  assert.ok(
    server.leases().some((l) => l.mac === mac && l.address === net.IPAddress),
    'dnsmasq leased that IPv4 address to the MAC',
  );
  // The server's router is the container's IPv4 default route; IPv6 gets none from DHCPv6 (routers announce it).
  assert.match(lab.host.dockerOk(['exec', 'both', 'ip', 'route']), /default via 172\.16\.86\.1 dev eth0/);
  lab.host.dockerOk(['exec', 'both', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
  // The container's IPv6 address may still be tentative (duplicate address detection) for a second.
  await eventually(() => lab.host.dockerOk(['exec', 'both', 'ping', '-6', '-c', '1', '-W', '1', 'fd77::1']), 10_000);
  assertNoAskingLinks();

  // DHCPv4 T1 is 3 s here; dnsmasq's DHCPv6 T1 is half its 120 s floor: one Renew within 75 s, no new Solicit
  // (engine-independent: the minute is waited on Docker 20.10 only).
  if (DOCKER20) await eventually(() => assert.ok(count6('DHCPRENEW', mac) >= 1, 'a DHCPv6 Renew'), 75_000);
  assert.equal(count6('DHCPSOLICIT', mac), 1, 'renewals never start over');
  await eventually(() => assert.ok(server.count('DHCPREQUEST', mac) >= 3, 'DHCPv4 renewals too'), 15_000);
  assert.match(lanplugStatus(lab.plugin), /fd77::1[0-9a-f]{2}\/64/);

  lab.host.dockerOk(['stop', '-t', '1', 'both']);
  // One Release, or two when a renewal was on the wire at the stop (the keeper releases again once that
  // exchange is over, so that a late ACK cannot bind the address anew): DHCPv4's T1 of 3 s makes that likely
  // on a loaded machine.
  await eventually(() => {
    const releases = count6('DHCPRELEASE', mac);
    assert.ok(releases >= 1 && releases <= 2, `a DHCPv6 Release at stop (${releases})`);
  });
  await eventually(() => assert.equal(lease6(mac), undefined, 'the server freed the IPv6 lease'));
  await eventually(() => assert.ok(!server.leases().some((l) => l.mac === mac), 'and the IPv4 one'));
  lab.host.dockerOk(['start', 'both']);
  const again = containerNetwork(lab.host, 'both', 'lan');
  assert.deepEqual([again.IPAddress, again.GlobalIPv6Address], [net.IPAddress, net.GlobalIPv6Address]);
  assert.deepEqual(addressesInContainer('both'), { v4: net.IPAddress, v6: net.GlobalIPv6Address });
});

test('docker compose up --force-recreate of a service with mac_address keeps its MAC and both leases, across a lanplug restart too: the server sees one client per family', async () => {
  dualStackNetwork();
  const mac = '02:00:00:00:06:0c';
  const dir = join(lab.host.dir, 'compose-dual');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'compose.yaml'),
    [
      'services:',
      '  web:',
      '    image: alpine:latest',
      '    command: ["sleep", "3600"]',
      `    mac_address: "${mac}"`,
      '    networks: [lan]',
      'networks:',
      '  lan:',
      '    external: true',
      '',
    ].join('\n'),
  );
  const container = 'dual-web-1';
  const ids: string[] = [];
  const upRecreated = (): void => {
    composeOk(lab.host, dir, 'dual', ['up', '-d', '--force-recreate', '-t', '1']);
    ids.push(lab.host.dockerOk(['container', 'inspect', '-f', '{{.Id}}', container]).trim());
  };
  upRecreated();
  const first = containerNetwork(lab.host, container, 'lan');
  assert.equal(first.MacAddress, mac, "compose's mac_address reached the endpoint");
  assert.ok(
    in4Range(first.IPAddress) && in6Range(first.GlobalIPv6Address),
    `${first.IPAddress} ${first.GlobalIPv6Address}`,
  );
  const same = (when: string): void => {
    const now = containerNetwork(lab.host, container, 'lan');
    assert.deepEqual(
      [now.MacAddress, now.IPAddress, now.GlobalIPv6Address],
      [mac, first.IPAddress, first.GlobalIPv6Address],
      `same MAC and addresses after ${when}`,
    );
    assert.deepEqual(addressesInContainer(container), { v4: first.IPAddress, v6: first.GlobalIPv6Address }, when);
    // One client per family: one IPv4 lease line for the MAC, one IPv6 line for its DUID, on the same addresses.
    const v4 = server.leases().filter((l) => l.mac === mac && !l.address.includes(':'));
    const v6 = server.leases().filter((l) => l.clientId === duidOf(mac));
    assert.deepEqual(
      v4.map((l) => l.address),
      [first.IPAddress],
      `one IPv4 lease, the same, after ${when}`,
    );
    assert.deepEqual(
      v6.map((l) => l.address),
      [first.GlobalIPv6Address],
      `one IPv6 lease, the same, after ${when}`,
    );
  };
  same('the first up');
  upRecreated();
  same('up --force-recreate');
  await lab.plugin.stop();
  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  upRecreated();
  same('a lanplug restart, then up --force-recreate');
  assert.equal(new Set(ids).size, ids.length, `each up made a new container: ${ids.join(', ')}`);
  composeOk(lab.host, dir, 'dual', ['down', '-t', '1']);
});

test(
  'daemon kill -9 and start: both leases renew on, no new Solicit; reservations by MAC and by DUID are honoured',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    const reservedMac = '02:00:00:00:06:09';
    await server.restart({ hosts: [`${reservedMac},172.16.86.140`, `id:${duidOf(reservedMac)},[fd77::140]`] });
    dualStackNetwork();
    runWithMac('reserved', reservedMac);
    const net = containerNetwork(lab.host, 'reserved', 'lan');
    assert.deepEqual([net.IPAddress, net.GlobalIPv6Address], ['172.16.86.140', 'fd77::140']);

    process.kill(lab.plugin.daemonPid ?? lab.plugin.pid, 'SIGKILL');
    await lab.plugin.stop();
    const before4 = server.count('DHCPREQUEST', reservedMac);
    lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
    await eventually(() => assert.ok(server.count('DHCPREQUEST', reservedMac) > before4, 'renewing again'), 10_000);
    await eventually(() => assert.ok(count6('DHCPRENEW', reservedMac) >= 1, 'the DHCPv6 lease renewed'), 75_000);
    assert.equal(count6('DHCPSOLICIT', reservedMac), 1, 'no new Solicit after the daemon restart');
    assert.deepEqual(addressesInContainer('reserved'), { v4: '172.16.86.140', v6: 'fd77::140' });
  },
);

test("a DHCPv6 offer of this host's own IPv6 address, or of one a LAN device answers duplicate address detection for, is declined: the server hears a Decline, the container gets another address", async () => {
  const mac = '02:00:00:00:06:0e';
  const squatMac = '02:00:00:00:06:0f';
  // The server reserves for one container's DUID the address the Docker host itself holds on its eth0, and
  // for another's an address a device on the LAN holds.
  const own = 'fd77::145';
  const taken = 'fd77::146';
  await server.restart({ hosts: [`id:${duidOf(mac)},[${own}]`, `id:${duidOf(squatMac)},[${taken}]`] });
  runOk(['ip', '-n', lab.host.ns, 'addr', 'add', `${own}/64`, 'dev', 'eth0', 'nodad']);
  const squatter = lab.lan.addLanHost('squat6', `${taken}/64`);
  try {
    dualStackNetwork();
    for (const [name, m, declined] of [
      ['beside6', mac, own],
      ['after6', squatMac, taken],
    ] as const) {
      runWithMac(name, m);
      const got = containerNetwork(lab.host, name, 'lan').GlobalIPv6Address;
      assert.notEqual(got, declined, `${name}: the address held elsewhere is not used`);
      assert.ok(in6Range(got), got);
      assert.equal(addressesInContainer(name).v6, got);
      assert.equal(count6('DHCPDECLINE', m), 1, server.log());
      await eventually(() => assert.equal(lease6(m)?.address, got, "the server's lease file agrees"));
      await eventually(() => lab.host.dockerOk(['exec', name, 'ping', '-6', '-c', '1', '-W', '1', 'fd77::1']), 10_000);
    }
    assert.match(
      lab.plugin.stderr(),
      new RegExp(`"declining a DHCP address: it is this host's own"[^\\n]*"address":"${own}","link":"eth0"`),
    );
    const squatterMac = /link\/ether ([0-9a-f:]{17})/.exec(squatter.execOk(['ip', '-o', 'link', 'show', 'eth0']))?.[1];
    assert.match(
      lab.plugin.stderr(),
      new RegExp(`"declining a DHCP address the LAN already uses"[^\\n]*"address":"${taken}","mac":"${squatterMac}"`),
    );
  } finally {
    squatter.destroy();
    runOk(['ip', '-n', lab.host.ns, 'addr', 'del', `${own}/64`, 'dev', 'eth0']);
  }
});

test(
  'a server that lost its bindings and serves another range: the Renew meets NoBinding, the new address is applied in the container and logged',
  ENGINE_INDEPENDENT_ONCE,
  async () => {
    dualStackNetwork();
    const mac = '02:00:00:00:06:0d';
    runWithMac('moved6', mac);
    const first = addressesInContainer('moved6').v6;
    assert.ok(in6Range(first), first);
    // dnsmasq renews a binding it holds whatever its range says now: only one it does not know makes it refuse.
    await server.restart({ range6: ['fd77::300', 'fd77::30f'] }, { forgetLeases: true });
    // dnsmasq's DHCPv6 T1 is 60 s: the Renew that learns of it comes within 75 s.
    const moved = await eventually(() => {
      const now = addressesInContainer('moved6').v6;
      assert.match(now, /^fd77::30[0-9a-f]$/, `moved from ${first} to the new range`);
      return now;
    }, 75_000);
    await eventually(
      () => lab.host.dockerOk(['exec', 'moved6', 'ping', '-6', '-c', '1', '-W', '1', 'fd77::1']),
      10_000,
    );
    assert.match(
      lab.plugin.stderr(),
      new RegExp(`"dhcp lease moved the container[^\\n]*"from":"${first}/64","to":"${moved}/64"`),
    );
    assert.equal(lease6(mac)?.address, moved, "the server's lease file agrees");
  },
);

test("Docker's ReleaseAddress for a container the server moved ends none of another container's leases, not even of the address it was given", async () => {
  dualStackNetwork();
  const moverMac = '02:00:00:00:06:11';
  const heirMac = '02:00:00:00:06:12';
  runWithMac('mover', moverMac);
  const given = containerNetwork(lab.host, 'mover', 'lan').IPAddress;
  // The server takes that address back (reserved for another MAC now, its range elsewhere): the mover moves.
  await server.restart({ range: ['172.16.86.200', '172.16.86.210'], hosts: [`${heirMac},${given}`] });
  await eventually(() => assert.match(addressesInContainer('mover').v4, /^172\.16\.86\.2(0\d|10)$/), 15_000);
  runWithMac('heir', heirMac);
  assert.equal(
    containerNetwork(lab.host, 'heir', 'lan').IPAddress,
    given,
    'the heir has the address Docker gave the mover',
  );
  // Leave gives the mover's lease back; Docker's ReleaseAddress after it names the address Docker gave the mover.
  const renewals = server.count('DHCPREQUEST', heirMac);
  lab.host.dockerOk(['rm', '-f', 'mover']);
  await eventually(() => assert.ok(server.count('DHCPRELEASE', moverMac) >= 1, "the mover's leases went back"));
  // Past the heir's next renewal (T1 is 3 s): a lease lanplug gave back would not be renewed any more.
  await sleep(4_000);
  assert.equal(server.count('DHCPRELEASE', heirMac), 0, "the heir's lease was not released");
  assert.ok(server.count('DHCPREQUEST', heirMac) > renewals, 'the heir renews on');
  assert.deepEqual(
    server
      .leases()
      .filter((l) => l.mac === heirMac)
      .map((l) => l.address),
    [given],
    "the heir's lease is in the server's file",
  );
  assert.equal(addressesInContainer('heir').v4, given);
});

test('refused in one line, nothing left: no --subnet, --ip-range, --ip6, ipvlan, -o dhcp=true beside it, a silent server, and a LAN with DHCPv4 but no DHCPv6 (whose IPv4 lease goes back at once)', async () => {
  const create = (args: readonly string[]): string => {
    const r = lab.host.docker(['network', 'create', '-d', 'lanplug-macvlan', '--ipam-driver', 'lanplug-dhcp', ...args]);
    assert.notEqual(r.status, 0, `accepted: ${args.join(' ')}`);
    return r.stderr;
  };
  assert.match(create(['-o', 'parent=eth0', 'nosub']), /lanplug-dhcp needs --subnet with the LAN's IPv4 subnet/);
  assert.match(
    create(['--subnet', '172.16.86.0/24', '--ip-range', '172.16.86.0/28', '-o', 'parent=eth0', 'ranged']),
    /--ip-range is not available with --ipam-driver lanplug-dhcp/,
  );
  assert.match(
    create(['--subnet', '172.16.86.0/24', '-o', 'parent=eth0', '-o', 'dhcp=true', 'twice']),
    /-o dhcp=true is for --ipam-driver null/,
  );
  const ipvlan = lab.host.docker([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    '--ipam-driver',
    'lanplug-dhcp',
    '--subnet',
    '172.16.86.0/24',
    '-o',
    'parent=eth0',
    'ipv',
  ]);
  assert.match(
    ipvlan.stderr,
    /lanplug-dhcp is for lanplug-macvlan networks; for ipvlan use --ipam-driver null -o dhcp=true/,
  );

  dualStackNetwork('lan', ['-o', 'dhcp.timeout=3s']);
  const pinned = lab.host.docker([
    'run',
    '-d',
    '--network',
    'lan',
    '--ip6',
    'fd77::150',
    '--name',
    'pinned',
    'alpine:latest',
    'true',
  ]);
  assert.match(pinned.stderr, /--ip\/--ip6\/--aux-address fd77::150 cannot be used with --ipam-driver lanplug-dhcp/);

  server.stop();
  const started = Date.now();
  const r = lab.host.docker(['run', '-d', '--network', 'lan', '--name', 'lonely', 'alpine:latest', 'sleep', '3600']);
  const tookMs = Date.now() - started;
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /network [0-9a-f]{12} on parent eth0: no DHCP server answered on eth0 within 3 s/);
  assert.ok(tookMs < 15_000, `refused after ${tookMs} ms`);
  assertNoAskingLinks();
  assert.doesNotMatch(lab.host.execOk(['ip', '-o', 'link', 'show']), /: lp-[0-9a-f]{12}[@:]/);
  assert.doesNotMatch(lanplugStatus(lab.plugin), /dhcp lease|endpoint/);
  // DHCPv4 answers, DHCPv6 does not (a LAN without a DHCPv6 server): one line, and the IPv4 lease the
  // other half took goes back to the server at once, not left bound until it expires.
  await server.restart({ range: RANGE, hosts: [], range6: undefined });
  // As sets: dnsmasq rewrites its lease file in an order of its own (seen reordered by a release).
  const leased = (): string[] =>
    server
      .leases()
      .map((l) => l.address)
      .sort();
  const leasedBefore = leased();
  const half = lab.host.docker(['run', '-d', '--network', 'lan', '--name', 'half', 'alpine:latest', 'sleep', '3600']);
  assert.notEqual(half.status, 0);
  assert.match(half.stderr, /no DHCPv6 server answered on \S+ within 3 s/);
  await sleep(500);
  assert.deepEqual(leased(), leasedBefore, 'the IPv4 lease taken beside the failed DHCPv6 exchange is released');
  assert.match(server.log(), /DHCPRELEASE/);
  lab.host.docker(['rm', '-f', 'pinned', 'lonely', 'half']);
  lab.host.dockerOk(['network', 'rm', 'lan']);
  assert.match(lanplugStatus(lab.plugin), /^no lanplug networks$/);
  assertNoLanplugLinks(lab.host);
});

test('10 dual-stack containers at once: 10 distinct leases per family; all released when they go; nothing leaked', async () => {
  const since = Date.now();
  dualStackNetwork();
  const names = Array.from({ length: 10 }, (_v, i) => `many${i}`);
  await runAllAtOnce(lab.host, 'lan', names);
  const nets = names.map((n) => containerNetwork(lab.host, n, 'lan'));
  const v4 = nets.map((n) => n.IPAddress);
  const v6 = nets.map((n) => n.GlobalIPv6Address);
  assert.equal(new Set(v4).size, 10, v4.join(' '));
  assert.equal(new Set(v6).size, 10, v6.join(' '));
  assert.ok(v4.every(in4Range) && v6.every(in6Range), [...v4, ...v6].join(' '));
  for (const [i, n] of names.entries()) assert.deepEqual(addressesInContainer(n), { v4: v4[i], v6: v6[i] });
  lab.host.dockerOk(['rm', '-f', ...names]);
  await eventually(() => assert.deepEqual(server.stillLeased([...v4, ...v6]), []), 15_000);
  await removeNetworkAfterBurst(lab.host, lab.plugin, 'lan', { ms: 30_000, since });
  assertNoLanplugLinks(lab.host);
  assert.match(lanplugStatus(lab.plugin), /^no lanplug networks$/);
});
