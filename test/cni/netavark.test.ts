/**
 * lanplug's netavark plugin as netavark drives it (netavark's
 * `src/network/plugin.rs`): the executable called with `create`, `setup
 * <netns>`, `teardown <netns>` or `info` as arguments and the JSON on stdin,
 * the answer read from stdout and the exit code. A lab LAN with its gateway
 * and a DHCP server, a host on it running the real daemon, container
 * namespaces made as Podman makes them. Every assertion is something Podman
 * or its user sees: the answer, the link and address in the namespace, the
 * ping to the gateway, the refusal's one line. (Podman 5.8 itself drives the
 * same executable in test/docker28/podman5.test.ts where its sid root is built.)
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { Lan } from '../lab/lan';
import { sleep } from '../lab/proc';
import { startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import type { DaemonLab, DaemonProcess } from '../support/daemon';
import { CNI_LAB_GATEWAY, runPlugin, startCniLab, type CniLab } from '../support/cni';
import {
  ContainerNamespaces,
  errorOf as netavarkErrorOf,
  lanNetwork,
  linkIn,
  median,
  parseJsonObject,
  pingFrom as ping,
  pluginExecInput,
  routesIn,
  type NetavarkOutcome as Outcome,
  type StatusInterface,
} from '../support/netavark';

const GATEWAY = CNI_LAB_GATEWAY;
const GATEWAY6 = 'fd86::1';
const NETWORK_ID = 'e'.repeat(64);
let lab: CniLab;
let lan: Lan;
let daemon: DaemonLab;
let running: DaemonProcess;
let plugin: string;
let socket: string;
let dhcpServer: DhcpServer;
let containers: ContainerNamespaces;

/** The network JSON `podman network create -d lanplug-macvlan -o parent=eth0 --subnet … --gateway … --ip-range …` hands the plugin. */
function network(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return lanNetwork({ id: NETWORK_ID, leaseRange: ['172.16.86.100', '172.16.86.149'] }, extra);
}

/** One call of the executable, as netavark makes it (stdin written whole, then closed; stdout read to the end). */
function nv(args: string[], input: unknown, env: NodeJS.ProcessEnv = {}): Promise<Outcome> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(plugin, args, {
      env: { PATH: process.env['PATH'], LANPLUG_CNI_SOCKET: socket, ...env },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code: code ?? -1,
        stdout,
        json: parseJsonObject(stdout),
        ms: Number(process.hrtime.bigint() - started) / 1e6,
      }),
    );
    // `info` (and a setup with the daemon down) may exit before reading stdin, as netavark allows:
    // the write's EPIPE is not the executable's failure (its exit code and stdout say that).
    child.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') reject(err);
    });
    child.stdin.end(JSON.stringify(input));
  });
}

/** A container namespace as Podman makes one (`/run/netns/netns-…`), and the id Podman gives the container. */
function newContainer(): { ns: string; path: string; id: string } {
  return containers.create();
}

function dropContainer(ns: string): void {
  containers.drop(ns);
}

function setup(c: { id: string; path: string }, net = network(), options?: Record<string, unknown>) {
  return nv(['setup', c.path], pluginExecInput(c, net, options));
}

function teardown(c: { id: string; path: string }, net = network(), options?: Record<string, unknown>) {
  return nv(['teardown', c.path], pluginExecInput(c, net, options));
}

/** The plugin's refusal: exit code 1 and its one-line `{"error": …}`. */
function errorOf(out: Outcome): string {
  return netavarkErrorOf(out, { exact: true });
}

before(async () => {
  lab = await startCniLab();
  ({ lan, daemon, socket, plugin } = lab);
  containers = new ContainerNamespaces(lan.id, 'p', 'a');
  running = lab.daemonProcess;
  // DHCPv6 too: dnsmasq serves addresses of a prefix br0 holds.
  lan.addAddress(`${GATEWAY6}/64`);
  dhcpServer = await startDhcpServer(lan, {
    range: ['172.16.86.200', '172.16.86.239'],
    range6: ['fd86::200', 'fd86::23f'],
    router: GATEWAY,
    dns: '172.16.86.53',
    renewSeconds: 60,
    rebindSeconds: 100,
  });
});

after(() => {
  dhcpServer?.stop();
  containers?.dropAll();
  lab?.close();
});

/** Stops the daemon as systemd would (SIGTERM) and starts another on the same state directory. */
async function restartDaemon(current: DaemonProcess): Promise<DaemonProcess> {
  await stopDaemon(current);
  return daemon.start({}, ['--cni-network-idle', '1']);
}

async function stopDaemon(proc: DaemonProcess): Promise<void> {
  proc.child.kill('SIGTERM');
  await proc.exited;
}

test('info: version and API version, from the executable alone (the daemon not asked)', async () => {
  const out = await nv(['info'], {}, { LANPLUG_CNI_SOCKET: '/nonexistent.sock' });
  assert.equal(out.code, 0, out.stdout);
  assert.equal(out.json?.['api_version'], '1.0.0');
  assert.match(String(out.json?.['version']), /^\d+\.\d+\.\d+/);
});

test('create: the network comes back as Podman keeps it (name, id, driver unchanged) with lanplug IPAM; bad options and a missing parent are refused in one line', async () => {
  const out = await nv(['create'], network());
  assert.equal(out.code, 0, out.stdout);
  assert.equal(out.json?.['name'], 'lan');
  assert.equal(out.json?.['id'], NETWORK_ID);
  assert.equal(out.json?.['driver'], 'lanplug-macvlan');
  assert.deepEqual(out.json?.['ipam_options'], { driver: 'lanplug' });
  assert.match(
    errorOf(await nv(['create'], network({ options: { parent: 'eth0', macvlan_mod: 'private' } }))),
    /macvlan_mod/,
  );
  // Only the daemon can tell: the host has no such link.
  assert.match(errorOf(await nv(['create'], network({ options: { parent: 'eth9' } }))), /eth9/);
  // Nor whether its pools are shared: this daemon keeps them in its own store.
  assert.match(
    errorOf(await nv(['create'], network({ options: { parent: 'eth0', 'lanplug.shared': 'true' } }))),
    /asks for a shared pool, and this daemon keeps its pools in its own store: start it with --store etcd/,
  );
  // Nothing was made for any of them.
  assert.equal(lab.host.execOk(['ip', '-o', 'link', 'show', 'type', 'macvlan']), '');
});

test('setup: the container gets its address on the LAN, reaches the gateway; the status block says what Podman shows; teardown removes the link, twice', async () => {
  const c = newContainer();
  const from = Date.now();
  const setups: number[] = [];
  const teardowns: number[] = [];
  try {
    const out = await setup(c);
    setups.push(out.ms);
    assert.equal(out.code, 0, out.stdout);
    const interfaces = out.json?.['interfaces'] as Record<string, StatusInterface>;
    const iface = interfaces['eth0'];
    assert.ok(iface !== undefined, out.stdout);
    assert.match(iface.subnets[0]?.ipnet ?? '', /^172\.16\.86\.1[0-4]\d\/24$/);
    assert.equal(iface.subnets[0]?.gateway, GATEWAY);
    const link = linkIn(c.ns, 'eth0');
    assert.equal(link?.address, iface.mac_address);
    assert.ok(link?.addr_info.some((a) => `${a.local}/${a.prefixlen}` === iface.subnets[0]?.ipnet));
    ping(c.path, GATEWAY);
    const down = await teardown(c);
    teardowns.push(down.ms);
    assert.deepEqual([down.code, down.stdout], [0, '']);
    assert.equal(linkIn(c.ns, 'eth0'), null, 'teardown removes the link');
    assert.equal((await teardown(c)).code, 0, 'a second teardown has nothing to do: success');
    // lanplug events: each setup and each teardown that removed something (the second had nothing to
    // remove: no second event), naming the network and the container.
    const told = await daemon.cli(['events', '--json', '--since', '10m', '--state-dir', daemon.stateDir]);
    assert.deepEqual(
      told.stdout
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as { at: number; kind: string; fields: Record<string, unknown> })
        .filter((e) => e.at >= from && e.kind.startsWith('attachment.'))
        .map((e) => [e.kind, e.fields['via'], e.fields['network'], e.fields['container']]),
      [
        ['attachment.added', 'netavark', 'lan', c.id.slice(0, 12)],
        ['attachment.removed', 'netavark', 'lan', c.id.slice(0, 12)],
      ],
    );
    // A few more rounds for the figures.
    for (let i = 0; i < 4; i++) {
      const again = await setup(c);
      assert.equal(again.code, 0, again.stdout);
      setups.push(again.ms);
      const gone = await teardown(c);
      assert.equal(gone.code, 0, gone.stdout);
      teardowns.push(gone.ms);
    }
    console.log(
      `# lanplug netavark plugin: setup median ${median(setups).toFixed(1)} ms, teardown median ${median(teardowns).toFixed(1)} ms (${setups.length} rounds, exec included)`,
    );
  } finally {
    dropContainer(c.ns);
  }
});

test("netavark 2.0's --route types: blackhole, unreachable and prohibit routes are made in the container beside one via a gateway; teardown removes them (they belong to no link), as netavark's own drivers do", async () => {
  const c = newContainer();
  const net = network({
    routes: [
      { destination: '10.99.0.0/16', route_type: 'blackhole' },
      { destination: '10.98.0.0/16', route_type: 'unreachable' },
      { destination: 'fd99::/48', route_type: 'prohibit' },
      { destination: '10.96.0.0/16', gateway: GATEWAY, route_type: 'unicast' },
    ],
  });
  try {
    const out = await setup(c, net);
    assert.equal(out.code, 0, out.stdout);
    const routes = routesIn(c.ns, 4);
    assert.match(routes, /^blackhole 10\.99\.0\.0\/16 proto 76/m, routes);
    assert.match(routes, /^unreachable 10\.98\.0\.0\/16 proto 76/m);
    assert.match(routes, new RegExp(`^10\\.96\\.0\\.0/16 via ${GATEWAY} dev eth0 proto 76`, 'm'));
    assert.match(routesIn(c.ns, 6), /^prohibit fd99::\/48 dev lo proto 76/m);
    assert.equal((await teardown(c, net)).code, 0);
    assert.equal(routesIn(c.ns, 4), '', 'no route left');
    assert.doesNotMatch(routesIn(c.ns, 6), /fd99::/);
    assert.equal((await teardown(c, net)).code, 0, 'a second teardown has nothing to do: success');
  } finally {
    dropContainer(c.ns);
  }
});

test('--ip and --mac-address are honoured; an address a LAN device holds is refused naming its MAC, nothing made', async () => {
  const c = newContainer();
  const other = newContainer();
  const squatter = lan.addLanHost('nvsq', '172.16.86.140/24');
  const squatterMac = /link\/ether ([0-9a-f:]{17})/.exec(squatter.execOk(['ip', 'link', 'show', 'eth0']))?.[1] ?? '?';
  try {
    const out = await setup(c, network(), { static_ips: ['172.16.86.120'], static_mac: '02:00:ac:10:56:78' });
    assert.equal(out.code, 0, out.stdout);
    const link = linkIn(c.ns, 'eth0');
    assert.equal(link?.address, '02:00:ac:10:56:78');
    assert.ok(link?.addr_info.some((a) => a.local === '172.16.86.120'));
    ping(c.path, GATEWAY);
    const refused = await setup(other, network(), { static_ips: ['172.16.86.140'] });
    assert.match(errorOf(refused), new RegExp(`172\\.16\\.86\\.140 is in use on the LAN by ${squatterMac}`));
    assert.equal(linkIn(other.ns, 'eth0'), null, 'nothing made in the refused container');
    assert.equal((await teardown(c)).code, 0);
  } finally {
    squatter.destroy();
    dropContainer(c.ns);
    dropContainer(other.ns);
  }
});

test("-o dhcp=true: the address, router and resolver come from the LAN's DHCP server; --route (via a gateway, and netavark 2.0's drop types) is made beside the server's default route and removed at teardown", async () => {
  const net = network({
    name: 'dhcplan',
    subnets: [],
    options: { parent: 'eth0', dhcp: 'true' },
    routes: [
      { destination: '10.96.0.0/16', gateway: GATEWAY, route_type: 'unicast' },
      { destination: '10.99.0.0/16', route_type: 'blackhole' },
    ],
  });
  const created = await nv(['create'], net);
  assert.equal(created.code, 0, created.stdout);
  const c = newContainer();
  try {
    const out = await setup(c, created.json ?? {});
    assert.equal(out.code, 0, out.stdout);
    const iface = (out.json?.['interfaces'] as Record<string, StatusInterface>)['eth0'];
    assert.match(iface?.subnets[0]?.ipnet ?? '', /^172\.16\.86\.2[0-3]\d\/24$/);
    assert.equal(iface?.subnets[0]?.gateway, GATEWAY);
    assert.deepEqual(out.json?.['dns_server_ips'], ['172.16.86.53'], "the server's resolver, for resolv.conf");
    const routes = routesIn(c.ns, 4);
    assert.match(routes, new RegExp(`^default via ${GATEWAY} dev eth0`, 'm'), routes);
    assert.match(routes, new RegExp(`^10\\.96\\.0\\.0/16 via ${GATEWAY} dev eth0 proto 76`, 'm'), routes);
    assert.match(routes, /^blackhole 10\.99\.0\.0\/16 proto 76/m, routes);
    ping(c.path, GATEWAY);
    assert.equal((await teardown(c, created.json ?? {})).code, 0);
    assert.equal(routesIn(c.ns, 4), '', 'no route left: the blackhole went with the teardown');
  } finally {
    dropContainer(c.ns);
  }
});

test("-o dhcp=true --ipv6: the IPv6 address comes from the LAN's DHCPv6 server too, in the status block and in the container (what netavark's own driver cannot)", async () => {
  const net = network({
    name: 'dhcp6lan',
    subnets: [],
    ipv6_enabled: true,
    options: { parent: 'eth0', dhcp: 'true' },
  });
  const created = await nv(['create'], net);
  assert.equal(created.code, 0, created.stdout);
  const c = newContainer();
  try {
    const out = await setup(c, created.json ?? {});
    assert.equal(out.code, 0, out.stdout);
    const subnets = (out.json?.['interfaces'] as Record<string, StatusInterface>)['eth0']?.subnets ?? [];
    assert.match(subnets[0]?.ipnet ?? '', /^172\.16\.86\.2[0-3]\d\/24$/);
    assert.equal(subnets[0]?.gateway, GATEWAY);
    const ipv6 = subnets[1]?.ipnet ?? '';
    assert.match(ipv6, /^fd86::2[0-3][0-9a-f]\/64$/, JSON.stringify(subnets));
    const inside = linkIn(c.ns, 'eth0')?.addr_info.find((a) => a.family === 'inet6' && a.local.startsWith('fd86:'));
    assert.equal(`${inside?.local}/${inside?.prefixlen}`, ipv6, 'configured in the container as Podman is told');
    ping(c.path, GATEWAY6);
    const address6 = ipv6.replace(/\/64$/, '');
    assert.deepEqual(dhcpServer.stillLeased([address6]), [address6], "the server's lease table holds the address");
    assert.equal((await teardown(c, created.json ?? {})).code, 0);
    assert.deepEqual(dhcpServer.stillLeased([address6]), [], 'teardown gave the IPv6 lease back (DHCPv6 Release)');
  } finally {
    dropContainer(c.ns);
  }
});

test('CNI\'s lanplug-dhcp with "ipv6": true: the pod gets an IPv6 address from the LAN\'s DHCPv6 server beside its IPv4 one; DEL gives both leases back', async () => {
  const conf = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'cnidhcp6',
    type: 'lanplug-macvlan',
    master: 'eth0',
    // host-local's routes: one without gw takes the DHCP server's router, as it takes a range's gateway
    ipam: {
      type: 'lanplug-dhcp',
      ipv6: true,
      routes: [{ dst: '10.96.0.0/16' }, { dst: '10.97.0.0/16', gw: GATEWAY }],
    },
  });
  const c = newContainer();
  const call = { containerId: c.id.slice(-16), netns: c.path, ifname: 'eth0', env: { LANPLUG_CNI_SOCKET: socket } };
  try {
    const noRouter6 = JSON.parse(conf) as { ipam: { routes: unknown[] } };
    noRouter6.ipam.routes.push({ dst: 'fd99::/48' });
    const refused = await runPlugin(plugin, { command: 'ADD', ...call }, JSON.stringify(noRouter6));
    assert.equal(refused.json?.['code'], 7, refused.stdout);
    assert.match(String(refused.json?.['msg']), /^route fd99::\/48 has no gateway, .*DHCPv6 names none/);
    assert.equal(linkIn(c.ns, 'eth0'), null, 'refused before anything was made or asked');
    const out = await runPlugin(plugin, { command: 'ADD', ...call }, conf);
    assert.equal(out.code, 0, out.stdout);
    const ips = (out.json?.['ips'] as { address: string }[] | undefined)?.map((ip) => ip.address) ?? [];
    assert.match(ips[0] ?? '', /^172\.16\.86\.2[0-3]\d\/24$/);
    const ipv6 = ips[1] ?? '';
    assert.match(ipv6, /^fd86::2[0-3][0-9a-f]\/64$/, JSON.stringify(ips));
    const inside = linkIn(c.ns, 'eth0')?.addr_info.find((a) => a.family === 'inet6' && a.local.startsWith('fd86:'));
    assert.equal(`${inside?.local}/${inside?.prefixlen}`, ipv6, 'configured in the pod as the result says');
    ping(c.path, GATEWAY6);
    assert.deepEqual(out.json?.['routes'], [
      { dst: '0.0.0.0/0', gw: GATEWAY },
      { dst: '10.96.0.0/16', gw: GATEWAY },
      { dst: '10.97.0.0/16', gw: GATEWAY },
    ]);
    const routes = routesIn(c.ns, 4);
    for (const dst of ['10.96.0.0/16', '10.97.0.0/16'])
      assert.match(routes, new RegExp(`^${dst.replace(/\./g, '\\.')} via ${GATEWAY} dev eth0`, 'm'), routes);
    const address6 = ipv6.replace(/\/64$/, '');
    assert.deepEqual(dhcpServer.stillLeased([address6]), [address6]);
    assert.equal((await runPlugin(plugin, { command: 'DEL', ...call }, conf)).code, 0);
    assert.deepEqual(dhcpServer.stillLeased([address6]), [], 'DEL gave the IPv6 lease back (DHCPv6 Release)');
  } finally {
    dropContainer(c.ns);
  }
});

test('-o dhcp=true --ipv6 on a LAN with DHCPv4 but no DHCPv6: setup fails in one line, and the IPv4 lease taken beside it goes back to the server at once', async () => {
  const net = network({
    name: 'half6lan',
    subnets: [],
    ipv6_enabled: true,
    options: { parent: 'eth0', dhcp: 'true', 'dhcp.timeout': '3s' },
  });
  const created = await nv(['create'], net);
  assert.equal(created.code, 0, created.stdout);
  await dhcpServer.restart({ range6: undefined });
  const c = newContainer();
  try {
    const leasedBefore = dhcpServer.leases().map((l) => l.address);
    const out = await setup(c, created.json ?? {});
    assert.notEqual(out.code, 0);
    assert.match(String(out.json?.['error']), /no DHCPv6 server answered on \S+ within 3 s/);
    await sleep(500);
    assert.deepEqual(
      dhcpServer.leases().map((l) => l.address),
      leasedBefore,
      'the IPv4 lease taken beside the failed DHCPv6 exchange is released',
    );
  } finally {
    dropContainer(c.ns);
    await dhcpServer.restart({ range6: ['fd86::200', 'fd86::23f'] });
  }
});

test('teardown succeeds with nothing left to do: never set up, namespace gone, daemon restarted in between', async () => {
  const never = newContainer();
  assert.equal((await teardown(never)).code, 0, 'never set up');
  dropContainer(never.ns);
  assert.equal((await teardown(never)).code, 0, 'namespace gone too');

  const c = newContainer();
  try {
    assert.equal((await setup(c)).code, 0);
    running = await restartDaemon(running);
    const down = await teardown(c);
    assert.equal(down.code, 0, down.stdout);
    assert.equal(linkIn(c.ns, 'eth0'), null, 'the restarted daemon knew the attachment from its store');

    assert.equal((await setup(c)).code, 0);
    dropContainer(c.ns);
    assert.equal((await teardown(c)).code, 0, 'the namespace took the link with it');
  } finally {
    if (containers.has(c.ns)) dropContainer(c.ns);
  }
});

test('a container whose namespace vanished without a teardown is removed by lanplug gc, as a CNI one is', async () => {
  const c = newContainer();
  const out = await setup(c, network(), { static_ips: ['172.16.86.121'] });
  assert.equal(out.code, 0, out.stdout);
  dropContainer(c.ns);
  const gc = await daemon.cli(['gc', '--state-dir', daemon.stateDir, '--docker-host', 'unix:///nonexistent.sock']);
  assert.equal(gc.code, 0, gc.stderr);
  assert.match(gc.stdout, new RegExp(`removed cni:podman:lan container ${c.id.slice(0, 12)} eth0: ${c.path} is gone`));
  // The address is free again: another container may ask for it.
  const next = newContainer();
  try {
    const again = await setup(next, network(), { static_ips: ['172.16.86.121'] });
    assert.equal(again.code, 0, again.stdout);
    assert.equal((await teardown(next)).code, 0);
  } finally {
    dropContainer(next.ns);
  }
});

test('setup with the daemon down: a clear one-line error naming what to start', async () => {
  const c = newContainer();
  await stopDaemon(running);
  try {
    const out = await setup(c);
    assert.match(
      errorOf(out),
      /^the lanplug daemon is not running: start it \(systemctl start lanplug, or lanplug daemon\)/,
    );
    assert.equal(linkIn(c.ns, 'eth0'), null);
  } finally {
    running = await daemon.start({}, ['--cni-network-idle', '1']);
    dropContainer(c.ns);
  }
});
