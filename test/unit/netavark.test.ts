/**
 * The netavark front end's translation, without a kernel: a Podman network
 * decoded and validated at `create` (one-line `{"error": ...}` answers, the
 * name, id and driver never changed), `setup` turned into the attachment the
 * CNI ADD makes and its result into netavark's status block, `teardown` into
 * the CNI DEL, and the executable's two faces (CNI and netavark) on one wire.
 * The endpoint service behind it is replaced by a recorder here; the real one,
 * with links in real namespaces, is driven by test/cni/netavark.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { registry } from '../../src/metrics/registry';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeInvocation, encodeInvocation, type CniInvocation } from '../../src/api/cni/protocol';
import { runNetavark, type NetavarkEndpoints } from '../../src/api/netavark/commands';
import { parsePodmanNetwork } from '../../src/api/netavark/network';
import type { JsonObject } from '../../src/api/json';
import type { AttachNetwork, AttachRequest, Attached } from '../../src/driver/attach-request';
import { buildCniExecutable } from '../../src/install/cni';
import { silentLogger } from '../../src/log';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { repoRoot } from '../support/repo';

const ID = 'f'.repeat(64);
const CONTAINER = 'c'.repeat(64);

/** A network as `podman network create -d lanplug-macvlan -o parent=eth0 --subnet … --gateway … lan` hands it over. */
function podmanNetwork(extra: JsonObject = {}): JsonObject {
  return {
    name: 'lan',
    id: ID,
    driver: 'lanplug-macvlan',
    created: '2026-12-05T02:00:00Z',
    subnets: [{ subnet: '192.168.50.0/24', gateway: '192.168.50.1' }],
    ipv6_enabled: false,
    internal: false,
    dns_enabled: true,
    ipam_options: { driver: 'host-local' },
    options: { parent: 'eth0' },
    ...extra,
  };
}

function call(command: string, stdin: unknown, netns?: string): CniInvocation {
  const env = new Map([['NETAVARK_COMMAND', command]]);
  if (netns !== undefined) env.set('NETAVARK_NETNS', netns);
  return { env, stdin: typeof stdin === 'string' ? stdin : JSON.stringify(stdin) };
}

/** The endpoint service as the front end sees it: records each call, answers as told. */
class Recorder implements NetavarkEndpoints {
  checked: AttachNetwork[] = [];
  attached: AttachRequest[] = [];
  detached: unknown[][] = [];
  refuse: Error | null = null;
  checkAttachmentNetwork(network: AttachNetwork): Promise<void> {
    this.checked.push(network);
    return this.refuse === null ? Promise.resolve() : Promise.reject(this.refuse);
  }
  attach(request: AttachRequest): Promise<Attached> {
    this.attached.push(request);
    if (this.refuse !== null) return Promise.reject(this.refuse);
    return Promise.resolve({
      ifname: request.sandbox.ifname,
      mac: request.mac ?? '02:42:c0:a8:32:0a',
      netns: request.sandbox.netns,
      addresses: [{ address: parsePrefix('192.168.50.10/24'), gateway: parseAddress('192.168.50.1') }],
      routes: [],
      nameservers: [parseAddress('192.168.50.53')],
    });
  }
  detach(...args: unknown[]): Promise<void> {
    this.detached.push(args);
    return Promise.resolve();
  }
}

function errorOf(answer: { exitCode: number; stdout: string }): string {
  assert.equal(answer.exitCode, 1, answer.stdout);
  assert.ok(answer.stdout.endsWith('\n') && answer.stdout.indexOf('\n') === answer.stdout.length - 1, 'one line');
  const parsed = JSON.parse(answer.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(parsed), ['error']);
  return String(parsed['error']);
}

test('create: the network comes back with lanplug IPAM named, DNS off and name, id, driver untouched', async () => {
  const endpoints = new Recorder();
  const answer = await runNetavark(
    call('create', podmanNetwork()),
    { endpoints: endpoints, version: '0.1.0' },
    silentLogger,
  );
  assert.equal(answer.exitCode, 0, answer.stdout);
  const final = JSON.parse(answer.stdout) as Record<string, unknown>;
  assert.equal(final['name'], 'lan');
  assert.equal(final['id'], ID);
  assert.equal(final['driver'], 'lanplug-macvlan');
  assert.equal(final['created'], '2026-12-05T02:00:00Z');
  assert.deepEqual(final['ipam_options'], { driver: 'lanplug' }, 'Podman must not allocate: lanplug chooses');
  assert.equal(final['dns_enabled'], false, 'no aardvark serves a plugin network');
  assert.deepEqual(final['options'], { parent: 'eth0' });
  // The daemon was asked about the network it will make at the first setup.
  assert.equal(endpoints.checked.length, 1);
  assert.equal(endpoints.checked[0]?.networkName, 'podman:lan');
  assert.deepEqual(endpoints.checked[0]?.options, { parent: 'eth0' });
});

test("create: Podman's own option names become lanplug's; a missing gateway is the first address, --ip-range the range; netavark 2.0's --route types: unicast via its gateway, blackhole, unreachable and prohibit without one", () => {
  const network = parsePodmanNetwork(
    podmanNetwork({
      driver: 'lanplug-ipvlan',
      options: { mode: 'l2', mtu: '1400' },
      network_interface: 'eth1',
      subnets: [{ subnet: '10.9.0.0/16', lease_range: { start_ip: '10.9.5.0', end_ip: '10.9.5.255' } }],
      ipam_options: null,
      routes: [
        { destination: '10.99.0.0/16', gateway: '10.9.0.254', route_type: 'unicast' },
        { destination: '10.98.0.0/16', route_type: 'blackhole' },
        { destination: '10.97.0.0/16', route_type: 'unreachable' },
        { destination: '10.96.0.0/16', route_type: 'prohibit' },
      ],
    }),
  );
  assert.equal(network.driver, 'ipvlan');
  assert.deepEqual(network.attach.options, {
    ipvlan_mode: 'l2',
    'com.docker.network.driver.mtu': '1400',
    parent: 'eth1',
  });
  const range = network.attach.rangeSets[0]?.[0];
  assert.equal(range?.gateway.text, '10.9.0.1');
  assert.equal(range?.start.text, '10.9.5.0');
  assert.equal(range?.end.text, '10.9.5.255');
  assert.deepEqual(network.final['subnets'], [
    { subnet: '10.9.0.0/16', lease_range: { start_ip: '10.9.5.0', end_ip: '10.9.5.255' }, gateway: '10.9.0.1' },
  ]);
  assert.deepEqual(
    network.routes.map((r) => [r.destination.address.text, r.gateway?.text, r.drop]),
    [
      ['0.0.0.0', '10.9.0.1', undefined],
      ['10.99.0.0', '10.9.0.254', undefined],
      ['10.98.0.0', undefined, 'blackhole'],
      ['10.97.0.0', undefined, 'unreachable'],
      ['10.96.0.0', undefined, 'prohibit'],
    ],
    'a default route via the gateway, as netavark gives its own macvlan containers, then the --routes',
  );
});

test('create: bad input is refused in one line that names it, and nothing is asked of the daemon', async () => {
  const cases: [JsonObject, RegExp][] = [
    [
      { options: { parent: 'eth0', macvlan_mod: 'private' } },
      /unknown option 'macvlan_mod' for lanplug-macvlan; accepted options: .*\blanplug\.shared\b/,
    ],
    [{ options: { parent: 'eth0', mode: 'sideways' } }, /sideways/],
    [{ options: {} }, /-o parent=.* is required/],
    [{ subnets: [] }, /needs --subnet/],
    [
      { subnets: [{ subnet: '192.168.50.0/24', gateway: '10.0.0.1' }] },
      /--gateway 10.0.0.1 is not inside subnet 192.168.50.0\/24/,
    ],
    [
      { subnets: [{ subnet: '192.168.50.0/24', lease_range: { start_ip: '192.168.50.90', end_ip: '192.168.50.20' } }] },
      /--ip-range/,
    ],
    [{ driver: 'macvlan' }, /driver 'macvlan' is not lanplug's/],
    [{ internal: true }, /--internal is not available/],
    [{ ipam_options: { driver: 'none' } }, /--ipam-driver none is not available/],
    // netavark 2.0's routes: a type, and no gateway for the types that drop
    [
      { routes: [{ destination: '10.99.0.0/16', gateway: '192.168.50.1', route_type: 'blackhole' }] },
      /^--route 10\.99\.0\.0\/16 of type blackhole drops what it matches: give it no gateway \(192\.168\.50\.1\)/,
    ],
    [
      { routes: [{ destination: '10.99.0.0/16', route_type: 'throw' }] },
      /^--route 10\.99\.0\.0\/16 of type throw: the types are unicast, blackhole, unreachable, prohibit/,
    ],
    [{ routes: [{ destination: '10.99.0.0/16' }] }, /^--route 10\.99\.0\.0\/16 needs a gateway/],
    // Said as it is on a DHCP network, not as a missing -o host_address (which would not help).
    [
      { ipam_options: { driver: 'dhcp' }, subnets: [], options: { parent: 'eth0', host_access: 'true' } },
      /host_access=true needs a --subnet; it is not available with -o dhcp=true yet/,
    ],
  ];
  for (const [extra, message] of cases) {
    const endpoints = new Recorder();
    const answer = await runNetavark(
      call('create', podmanNetwork(extra)),
      { endpoints: endpoints, version: '0.1.0' },
      silentLogger,
    );
    assert.match(errorOf(answer), message, JSON.stringify(extra));
    assert.equal(endpoints.checked.length, 0, 'refused before the daemon is asked');
  }
  // What the daemon refuses (a parent that does not exist, a kernel without ipvlan) comes back the same way.
  const endpoints = new Recorder();
  endpoints.refuse = new Error('parent eth9 does not exist\nsecond line');
  const answer = await runNetavark(
    call('create', podmanNetwork({ options: { parent: 'eth9' } })),
    { endpoints, version: '0.1.0' },
    silentLogger,
  );
  assert.equal(errorOf(answer), 'parent eth9 does not exist; second line');
  assert.match(
    errorOf(
      await runNetavark(call('create', '{not json'), { endpoints: new Recorder(), version: '0.1.0' }, silentLogger),
    ),
    /not JSON/,
  );
  assert.match(
    errorOf(await runNetavark(call('frobnicate', '{}'), { endpoints: new Recorder(), version: '0.1.0' }, silentLogger)),
    /unknown command/,
  );
  // Each call is counted as Docker's are, by netavark's command (never a caller's word) and outcome.
  const counted = (await registry.getSingleMetricAsString('lanplug_requests_total')).split('\n');
  assert.ok(
    counted.some((l) => /method="netavark\.create".*outcome="error"/.test(l)),
    counted.join('\n'),
  );
  assert.ok(
    counted.some((l) => /method="netavark\.unknown".*outcome="error"/.test(l)),
    counted.join('\n'),
  );
  assert.ok(!counted.some((l) => l.includes('frobnicate')));
});

test('create: -o dhcp=true or --ipam-driver dhcp needs no subnet and names lanplug-dhcp, with --ipv6 DHCPv6 too; --ip is then refused at setup', async () => {
  for (const extra of <JsonObject[]>[
    { options: { parent: 'eth0', dhcp: 'true' }, subnets: [] },
    { ipam_options: { driver: 'dhcp' }, subnets: [] },
  ]) {
    const network = parsePodmanNetwork(podmanNetwork(extra));
    assert.equal(network.attach.dhcp, true);
    assert.equal(network.attach.dhcp6, false, 'DHCPv4 only without --ipv6');
    assert.deepEqual(network.attach.rangeSets, []);
    assert.deepEqual(network.final['ipam_options'], { driver: 'lanplug-dhcp' });
  }
  // --ipv6: DHCPv6 too; without DHCP, --ipv6 asks nothing of a server.
  assert.equal(
    parsePodmanNetwork(podmanNetwork({ options: { parent: 'eth0', dhcp: 'true' }, subnets: [], ipv6_enabled: true }))
      .attach.dhcp6,
    true,
  );
  assert.equal(parsePodmanNetwork(podmanNetwork({ ipv6_enabled: true })).attach.dhcp6, false);
  const endpoints = new Recorder();
  const answer = await runNetavark(
    call(
      'setup',
      {
        container_id: CONTAINER,
        container_name: 'web',
        network: podmanNetwork({ ipam_options: { driver: 'lanplug-dhcp' }, subnets: [] }),
        network_options: { interface_name: 'eth0', static_ips: ['192.168.50.9'] },
      },
      '/run/netns/netns-1',
    ),
    { endpoints, version: '0.1.0' },
    silentLogger,
  );
  assert.match(errorOf(answer), /DHCP server chooses the address.*192\.168\.50\.9/);
  assert.equal(endpoints.attached.length, 0);
});

test('setup: the attachment is the CNI one (ip=, mac=, interface name, default route) and the answer a status block', async () => {
  const endpoints = new Recorder();
  const answer = await runNetavark(
    call(
      'setup',
      {
        container_id: CONTAINER,
        container_name: 'web',
        port_mappings: [],
        network: podmanNetwork(),
        network_options: {
          aliases: ['web'],
          interface_name: 'eth1',
          static_ips: ['192.168.50.10'],
          static_mac: '02:00:00:00:50:10',
        },
      },
      '/run/netns/netns-1',
    ),
    { endpoints, version: '0.1.0' },
    silentLogger,
  );
  assert.equal(answer.exitCode, 0, answer.stdout);
  const request = endpoints.attached[0];
  assert.ok(request !== undefined);
  assert.equal(request.networkName, 'podman:lan');
  assert.equal(request.driver, 'macvlan');
  assert.deepEqual(request.sandbox, { containerId: CONTAINER, netns: '/run/netns/netns-1', ifname: 'eth1' });
  assert.deepEqual(
    request.requestedIps.map((a) => a.text),
    ['192.168.50.10'],
  );
  assert.equal(request.mac, '02:00:00:00:50:10');
  assert.deepEqual(
    request.routes.map((r) => `${r.destination.address.text}/${r.destination.prefixLength} via ${r.gateway?.text}`),
    ['0.0.0.0/0 via 192.168.50.1'],
  );
  assert.deepEqual(JSON.parse(answer.stdout), {
    dns_search_domains: [],
    dns_server_ips: ['192.168.50.53'],
    interfaces: {
      eth1: {
        mac_address: '02:00:00:00:50:10',
        subnets: [{ ipnet: '192.168.50.10/24', gateway: '192.168.50.1' }],
      },
    },
  });
});

test('setup: a relative namespace path, a bad container id, a MAC on ipvlan, per-container options and two --ip of one family are refused', async () => {
  const base = {
    container_id: CONTAINER,
    container_name: 'web',
    network: podmanNetwork(),
    network_options: { interface_name: 'eth0' },
  };
  const cases: [CniInvocation, RegExp][] = [
    [call('setup', base, 'netns-1'), /not absolute/],
    [call('setup', { ...base, container_id: '../x' }, '/run/netns/n'), /container_id/],
    [
      call(
        'setup',
        {
          ...base,
          network: podmanNetwork({ driver: 'lanplug-ipvlan' }),
          network_options: { interface_name: 'eth0', static_mac: '02:00:00:00:00:01' },
        },
        '/run/netns/n',
      ),
      /--mac-address is not available/,
    ],
    [
      call('setup', { ...base, network_options: { interface_name: 'eth0', options: { foo: 'bar' } } }, '/run/netns/n'),
      /per-container options \(foo\)/,
    ],
    [call('setup', { ...base, network_options: { interface_name: 'a/b' } }, '/run/netns/n'), /interface_name/],
    // netavark 2.0 passes several static IPs of one subnet; lanplug gives one address per family
    [
      call(
        'setup',
        { ...base, network_options: { interface_name: 'eth0', static_ips: ['192.168.50.20', '192.168.50.21'] } },
        '/run/netns/n',
      ),
      /^one address per family on network lan: --ip 192\.168\.50\.20 and 192\.168\.50\.21 are both IPv4; give one$/,
    ],
  ];
  for (const [invocation, message] of cases) {
    const endpoints = new Recorder();
    assert.match(
      errorOf(await runNetavark(invocation, { endpoints: endpoints, version: '0.1.0' }, silentLogger)),
      message,
    );
    assert.equal(endpoints.attached.length, 0);
  }
});

test('teardown: the CNI DEL of the attachment (by network, container, interface, namespace), answered with nothing', async () => {
  const endpoints = new Recorder();
  const answer = await runNetavark(
    call(
      'teardown',
      {
        container_id: CONTAINER,
        container_name: 'web',
        network: podmanNetwork(),
        network_options: { interface_name: 'eth0' },
      },
      '/run/netns/gone',
    ),
    { endpoints, version: '0.1.0' },
    silentLogger,
  );
  assert.deepEqual(answer, { exitCode: 0, stdout: '' });
  assert.deepEqual(
    endpoints.detached.map((args) => args.slice(0, 4)),
    [['podman:lan', CONTAINER, 'eth0', '/run/netns/gone']],
  );
  // The removal's event is told by the detach, once the record is gone.
  assert.equal(typeof endpoints.detached[0]?.[4], 'function');
});

test("the executable's two faces: netavark's arguments cross the wire as NETAVARK_* entries; info and a daemon that is down are answered alone", () => {
  const decoded = decodeInvocation(
    encodeInvocation({
      env: new Map([
        ['NETAVARK_COMMAND', 'setup'],
        ['NETAVARK_NETNS', '/run/netns/n'],
      ]),
      stdin: '{}',
    }),
  );
  assert.deepEqual(
    [...(decoded?.env ?? [])],
    [
      ['NETAVARK_COMMAND', 'setup'],
      ['NETAVARK_NETNS', '/run/netns/n'],
    ],
  );
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-netavark-bin-'));
  try {
    const plugin = join(dir, 'lanplug-macvlan');
    buildCniExecutable(repoRoot(), plugin, join(dir, 'no-daemon.sock'));
    const env = { PATH: process.env['PATH'] };
    const info = spawnSync(plugin, ['info'], { env, input: '' });
    assert.equal(info.status, 0);
    const version = (JSON.parse(repoText('package.json')) as { version: string }).version;
    assert.deepEqual(JSON.parse(info.stdout.toString()), { version, api_version: '1.0.0' });
    const setup = spawnSync(plugin, ['setup', '/run/netns/n'], { env, input: '{}' });
    assert.equal(setup.status, 1);
    const error = (JSON.parse(setup.stdout.toString()) as { error: string }).error;
    assert.match(error, /^the lanplug daemon is not running: start it .*no-daemon\.sock/);
    // The CNI face is unchanged: its error is CNI's.
    const add = spawnSync(plugin, [], { env: { ...env, CNI_COMMAND: 'ADD' }, input: '{}' });
    assert.equal((JSON.parse(add.stdout.toString()) as { code: number }).code, 11);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function repoText(name: string): string {
  return readFileSync(join(repoRoot(), name), 'utf8');
}

test("create: -o host_access=true takes the host's own address as -o host_address= (Podman has no --aux-address)", () => {
  const network = parsePodmanNetwork(
    podmanNetwork({ options: { parent: 'eth0', host_access: 'true', host_address: '192.168.50.250' } }),
  );
  assert.equal(network.attach.auxAddresses.get('host')?.text, '192.168.50.250');
  assert.deepEqual(network.attach.options, { parent: 'eth0', host_access: 'true' }, 'not an option of the driver');
  assert.throws(
    () => parsePodmanNetwork(podmanNetwork({ options: { parent: 'eth0', host_access: 'true' } })),
    /-o host_access=true needs the host's own address on this network: add -o host_address=/,
  );
  assert.throws(
    () => parsePodmanNetwork(podmanNetwork({ options: { parent: 'eth0', host_address: '192.168.50.250' } })),
    /-o host_address is for -o host_access=true/,
  );
});

test('-o lanplug.shared=true: the network asks for the shared pool of --subnet and --ip-range; not an option of the driver, refused with DHCP or a value not true/false', () => {
  const shared = parsePodmanNetwork(
    podmanNetwork({
      options: { parent: 'eth0', 'lanplug.shared': 'true' },
      subnets: [{ subnet: '10.70.0.0/24', lease_range: { start_ip: '10.70.0.64', end_ip: '10.70.0.127' } }],
    }),
  );
  assert.equal(shared.attach.shared, true);
  assert.deepEqual(shared.attach.options, { parent: 'eth0' });
  assert.equal(parsePodmanNetwork(podmanNetwork()).attach.shared, false);
  assert.throws(
    () => parsePodmanNetwork(podmanNetwork({ options: { parent: 'eth0', 'lanplug.shared': 'yes' } })),
    /-o lanplug\.shared must be true or false, not 'yes'/,
  );
  assert.throws(
    () =>
      parsePodmanNetwork(
        podmanNetwork({ subnets: [], options: { parent: 'eth0', dhcp: 'true', 'lanplug.shared': 'true' } }),
      ),
    /-o lanplug\.shared=true is for addresses from --subnet; with DHCP the LAN's server chooses them/,
  );
});
