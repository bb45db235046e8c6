/**
 * netavark 2.0 and Podman 6.1 (Debian experimental, in the lane's experimental root) on lanplug's
 * netavark plugins. netavark driven directly, as Podman 6 drives it: `netavark create` (new in 2.0:
 * the network JSON Podman used to make itself, now netavark's, which hands a plugin driver's network
 * to the plugin's `create`), `setup <netns>` and `teardown <netns>` with the container's options
 * and networks on stdin, and the plugin's own `info`. Then Podman 6 itself, through the same cases
 * as Podman 5 (podman-lane.ts): `podman run` on the LAN, `--ip`/`--mac-address`, `-d` with restart
 * and `rm -f`, a LAN conflict, host access, DHCPv4 and DHCPv6, a bad option, `--route` of each
 * type, `network rm`.
 *
 * Podman 6 refuses cgroup v1 ("Cgroups v1 not supported"); on this machine's hybrid layout it runs
 * with the cgroup v2 hierarchy (systemd's `unified` mount, no controllers) as its /sys/fs/cgroup, so
 * its containers ask for no controller: `pids_limit = 0` (PodmanHost's cgroupV2).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { PodmanOutcome } from '../lab/podman-host';
import { ensureExperimentalRoot } from '../lab/sid-root';
import {
  ContainerNamespaces,
  errorOf,
  lanNetwork,
  linkIn,
  median,
  netavarkCreateInput,
  netavarkExecInput as options,
  parseJsonObject as parse,
  pingFrom as ping,
  pluginExecInput,
  type StatusInterface,
} from '../support/netavark';
import { GATEWAY, IMAGE, RUN, podmanUserCases, startPodmanLane, type PodmanLane } from './podman-lane';

/** Where Debian's netavark package puts it (Podman's helper directory). */
const NETAVARK = '/usr/lib/podman/netavark';
const NETWORK_ID = 'f'.repeat(64);

let lane: PodmanLane;
let containers: ContainerNamespaces;

before(async () => {
  lane = await startPodmanLane({ root: ensureExperimentalRoot(), dirName: 'podman6', cgroupV2: true });
  containers = new ContainerNamespaces(lane.lab.lan.id, 'n', 'b');
  console.log(`# ${lane.versions}`);
});

after(() => {
  try {
    containers?.dropAll();
  } finally {
    lane?.close();
  }
});

interface Outcome extends PodmanOutcome {
  json: Record<string, unknown> | null;
}

/** `netavark <args>` in the experimental root, with lanplug's plugin directory, the JSON on stdin. */
async function netavark(args: string[], input: unknown): Promise<Outcome> {
  const { podmanHost } = lane;
  const out = await podmanHost.exec(
    [NETAVARK, '--config', join(podmanHost.dir, 'netavark'), '--plugin-directory', podmanHost.plugins, ...args],
    JSON.stringify(input),
  );
  return { ...out, json: parse(out.stdout) };
}

/**
 * What Podman 6 hands `netavark create` for `podman network create -d lanplug-macvlan -o parent=eth0
 * --subnet … --gateway … --ip-range … nvlan` (named apart from the Podman cases' `lan`).
 */
function createInput(network: Record<string, unknown> = {}): Record<string, unknown> {
  return netavarkCreateInput(
    lanNetwork(
      { id: NETWORK_ID, leaseRange: ['172.16.86.150', '172.16.86.159'] },
      { name: 'nvlan', labels: { site: 'lab' }, ...network },
    ),
  );
}

test("the plugin's info, as Podman 6 execs it in the root: its version and API version 1.0.0", async () => {
  const out = await lane.podmanHost.exec([join(lane.podmanHost.plugins, 'lanplug-macvlan'), 'info'], '');
  assert.equal(out.code, 0, out.stderr);
  const info = parse(out.stdout);
  assert.equal(info?.['api_version'], '1.0.0');
  assert.match(String(info?.['version']), /^\d+\.\d+\.\d+/);
});

test('netavark 2.0 create: the plugin validates the network and netavark keeps its answer (name, id, driver, labels, lanplug IPAM, a blackhole route); a bad option and a blackhole route with a gateway are refused in one line', async () => {
  const out = await netavark(['create'], createInput());
  assert.equal(out.code, 0, `${out.stdout} ${out.stderr}`);
  const network = out.json ?? {};
  assert.equal(network['name'], 'nvlan');
  assert.equal(network['id'], NETWORK_ID);
  assert.equal(network['driver'], 'lanplug-macvlan');
  assert.deepEqual(network['ipam_options'], { driver: 'lanplug' });
  assert.equal(network['dns_enabled'], false, 'aardvark serves no plugin network');
  assert.deepEqual(network['labels'], { site: 'lab' });
  assert.match(String(network['created']), /^\d{4}-\d\d-\d\dT/, 'netavark 2.0 stamps the creation time');

  assert.match(
    errorOf(await netavark(['create'], createInput({ options: { parent: 'eth0', macvlan_mod: 'private' } }))),
    /unknown option 'macvlan_mod' for lanplug-macvlan/,
  );
  // 2.0's routes may have no gateway: a blackhole, unreachable or prohibit route, passed to the plugin
  const blackhole = { destination: '10.99.0.0/16', route_type: 'blackhole' };
  const routed = await netavark(['create'], createInput({ routes: [blackhole] }));
  assert.equal(routed.code, 0, `${routed.stdout} ${routed.stderr}`);
  assert.deepEqual(routed.json?.['routes'], [{ ...blackhole, metric: null }]);
  const withGateway = await netavark(['create'], createInput({ routes: [{ ...blackhole, gateway: '172.16.86.254' }] }));
  assert.match(
    errorOf(withGateway),
    /--route 10\.99\.0\.0\/16 of type blackhole drops what it matches: give it no gateway/,
  );
  assert.equal(lane.lab.host.execOk(['ip', '-o', 'link', 'show', 'type', 'macvlan']), '', 'nothing made');
});

test('netavark 2.0 setup: the container gets its address on the LAN and reaches the gateway, --ip and --mac-address too (two --ip of one family refused); teardown removes the link; with the namespace gone netavark fails before the plugin, and the plugin’s teardown succeeds', async () => {
  const created = await netavark(['create'], createInput());
  assert.equal(created.code, 0, `${created.stdout} ${created.stderr}`);
  const network = created.json ?? {};
  const c = containers.create();
  const setups: number[] = [];
  const teardowns: number[] = [];
  try {
    const up = await netavark(['setup', c.path], options(c, network, 'list'));
    setups.push(up.ms);
    assert.equal(up.code, 0, `${up.stdout} ${up.stderr}`);
    // netavark's answer: each network's status block by the network's name
    const status = up.json?.['nvlan'] as { interfaces: Record<string, StatusInterface> } | undefined;
    const iface = status?.interfaces['eth0'];
    assert.ok(iface !== undefined, up.stdout);
    assert.match(iface.subnets[0]?.ipnet ?? '', /^172\.16\.86\.15\d\/24$/);
    assert.equal(iface.subnets[0]?.gateway, GATEWAY);
    const link = linkIn(c.ns, 'eth0');
    assert.equal(link?.address, iface.mac_address);
    assert.ok(link?.addr_info.some((a) => `${a.local}/${a.prefixlen}` === iface.subnets[0]?.ipnet));
    ping(c.path, GATEWAY);

    // 1.x's map form of `networks`, which 2.0 still reads
    const down = await netavark(['teardown', c.path], options(c, network, 'map'));
    teardowns.push(down.ms);
    assert.equal(down.code, 0, `${down.stdout} ${down.stderr}`);
    assert.equal(linkIn(c.ns, 'eth0'), null, 'teardown removes the link');

    // --ip and --mac-address, then a few more rounds for the figures
    for (let i = 0; i < 4; i++) {
      const again = await netavark(
        ['setup', c.path],
        options(c, network, 'list', { static_ips: ['172.16.86.158'], static_mac: '02:00:ac:10:56:9e' }),
      );
      assert.equal(again.code, 0, `${again.stdout} ${again.stderr}`);
      setups.push(again.ms);
      const fixed = linkIn(c.ns, 'eth0');
      assert.equal(fixed?.address, '02:00:ac:10:56:9e');
      assert.ok(fixed?.addr_info.some((a) => a.local === '172.16.86.158'));
      const gone = await netavark(['teardown', c.path], options(c, network, 'list'));
      assert.equal(gone.code, 0, `${gone.stdout} ${gone.stderr}`);
      teardowns.push(gone.ms);
    }
    // 2.0 passes several static IPs of one subnet: refused in one line, nothing made
    const two = await netavark(
      ['setup', c.path],
      options(c, network, 'list', { static_ips: ['172.16.86.156', '172.16.86.157'] }),
    );
    assert.match(errorOf(two), /one address per family on network nvlan: --ip 172\.16\.86\.156 and 172\.16\.86\.157/);
    assert.equal(linkIn(c.ns, 'eth0'), null);
    console.log(
      `# netavark 2.0 with lanplug-macvlan: setup median ${median(setups).toFixed(0)} ms, teardown median ${median(teardowns).toFixed(0)} ms (${setups.length} rounds, netavark's exec and the plugin's included)`,
    );

    assert.equal((await netavark(['setup', c.path], options(c, network, 'list'))).code, 0);
    const attachedTo = async (): Promise<boolean> => {
      const { daemon } = lane.lab;
      const listed = await daemon.cli(['ls', '--json', '--state-dir', daemon.stateDir]);
      assert.equal(listed.code, 0, listed.stderr);
      return (JSON.parse(listed.stdout) as { containerId: string | null }[]).some((a) => a.containerId === c.id);
    };
    assert.ok(await attachedTo(), 'lanplug ls lists the attachment');
    containers.drop(c.ns);
    // netavark (2.0 as 1.17) opens the namespace before it calls any plugin: with it gone, it fails itself
    assert.match(
      errorOf(await netavark(['teardown', c.path], options(c, network, 'list'))),
      /^open container netns: open \/run\/netns\/\S+: IO error: No such file or directory/,
    );
    // the plugin called as netavark calls it, the namespace gone: success, and the attachment is gone
    const plugin = await lane.podmanHost.exec(
      [join(lane.podmanHost.plugins, 'lanplug-macvlan'), 'teardown', c.path],
      JSON.stringify(pluginExecInput(c, network)),
    );
    assert.deepEqual([plugin.code, plugin.stdout], [0, ''], plugin.stderr);
    assert.ok(!(await attachedTo()), 'the attachment is gone');
  } finally {
    if (containers.has(c.ns)) containers.drop(c.ns);
  }
});

/**
 * What netavark 2.0 hands its own macvlan driver for `podman network create -d macvlan -o parent=eth0
 * --subnet … --gateway …` (Podman's own IPAM: the address comes in setup's static_ips).
 */
function ownMacvlanInput(): Record<string, unknown> {
  return netavarkCreateInput({
    name: 'nvmac',
    id: 'e'.repeat(64),
    driver: 'macvlan',
    network_interface: 'eth0',
    subnets: [{ subnet: '172.16.86.0/24', gateway: GATEWAY }],
    ipv6_enabled: false,
    internal: false,
    dns_enabled: false,
    ipam_options: { driver: 'host-local' },
  });
}

test("netavark 2.0's own macvlan driver and lanplug's plugin, round by round in one run: both give the container its --ip on the LAN and teardown leaves no link; their setup and teardown times side by side", async (t) => {
  const created = await netavark(['create'], createInput());
  assert.equal(created.code, 0, `${created.stdout} ${created.stderr}`);
  const own = await netavark(['create'], ownMacvlanInput());
  assert.equal(own.code, 0, `${own.stdout} ${own.stderr}`);
  const drivers = [
    { label: 'lanplug-macvlan (plugin)', network: created.json ?? {}, ip: '172.16.86.157' },
    { label: "netavark's macvlan", network: own.json ?? {}, ip: '172.16.86.141' },
  ];
  const times = drivers.map(() => ({ setup: [] as number[], teardown: [] as number[] }));
  const c = containers.create();
  try {
    // Alternating rounds: what the machine is doing meanwhile weighs on both alike.
    for (let round = 0; round < 5; round++) {
      for (const [i, d] of drivers.entries()) {
        const up = await netavark(['setup', c.path], options(c, d.network, 'list', { static_ips: [d.ip] }));
        assert.equal(up.code, 0, `${d.label}: ${up.stdout} ${up.stderr}`);
        assert.ok(
          linkIn(c.ns, 'eth0')?.addr_info.some((a) => a.local === d.ip),
          `${d.label}: ${d.ip} in the container`,
        );
        if (round === 0) ping(c.path, GATEWAY);
        const down = await netavark(['teardown', c.path], options(c, d.network, 'list', { static_ips: [d.ip] }));
        assert.equal(down.code, 0, `${d.label}: ${down.stdout} ${down.stderr}`);
        assert.equal(linkIn(c.ns, 'eth0'), null, `${d.label}: teardown removes the link`);
        times[i]?.setup.push(up.ms);
        times[i]?.teardown.push(down.ms);
      }
    }
  } finally {
    if (containers.has(c.ns)) containers.drop(c.ns);
  }
  t.diagnostic("| netavark 2.0, median of 5 (netavark's exec included) | setup ms | teardown ms |");
  t.diagnostic('|---|---|---|');
  for (const [i, d] of drivers.entries()) {
    const m = times[i];
    if (m !== undefined)
      t.diagnostic(`| ${d.label} | ${median(m.setup).toFixed(0)} | ${median(m.teardown).toFixed(0)} |`);
  }
});

podmanUserCases(() => lane);

test('podman network create --route of each of netavark 2.0’s types: the container gets a blackhole, an unreachable and a prohibit route beside the one via a gateway, and its traffic there is dropped', () => {
  const { podmanOk } = lane;
  podmanOk(
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '-o',
    'parent=eth0',
    '--subnet',
    '172.16.86.0/24',
    '--gateway',
    GATEWAY,
    '--ip-range',
    '172.16.86.184/29',
    '--route',
    '10.99.0.0/16,blackhole',
    '--route',
    '10.98.0.0/16,unreachable',
    '--route',
    '10.97.0.0/16,prohibit',
    '--route',
    `10.96.0.0/16,${GATEWAY}`,
    'lanroutes',
  );
  try {
    const out = podmanOk(
      ...RUN,
      '--network',
      'lanroutes',
      IMAGE,
      'sh',
      '-c',
      `ip route; ping -c 1 -W 1 10.99.0.1 2>&1; ping -c 1 -W 1 ${GATEWAY}`,
    );
    assert.match(out.stdout, /^blackhole 10\.99\.0\.0\/16\b/m, out.stdout);
    assert.match(out.stdout, /^unreachable 10\.98\.0\.0\/16\b/m);
    assert.match(out.stdout, /^prohibit 10\.97\.0\.0\/16\b/m);
    assert.match(out.stdout, new RegExp(`^10\\.96\\.0\\.0/16 via ${GATEWAY} dev eth0`, 'm'));
    assert.match(out.stdout, new RegExp(`^default via ${GATEWAY} dev eth0`, 'm'));
    assert.match(out.stdout, /ping: sendto: Invalid argument/, 'the blackhole route drops');
    assert.match(out.stdout, /1 packets received/, 'the gateway still answers');
    assert.doesNotMatch(lane.macvlanLinksOfHost(), /: lp-[0-9a-f]{12}[@:]/, 'no endpoint link left by --rm');
  } finally {
    podmanOk('network', 'rm', 'lanroutes');
  }
});
