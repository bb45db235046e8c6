/**
 * netavark 2.0 and Podman 6.1 (Debian experimental, in the lane's experimental root) on lanplug's
 * netavark plugins. netavark driven directly, as Podman 6 drives it: `netavark create` (new in 2.0:
 * the network JSON Podman used to make itself, now netavark's, which hands a plugin driver's network
 * to the plugin's `create`), `setup <netns>` and `teardown <netns>` with the container's options
 * and networks on stdin, and the plugin's own `info`. Then Podman 6 itself: `podman run` on a
 * lanplug network gets its address on the LAN.
 *
 * Podman 6 refuses cgroup v1 ("Cgroups v1 not supported"); on this machine's hybrid layout it runs
 * with the cgroup v2 hierarchy (systemd's `unified` mount, no controllers) as its /sys/fs/cgroup, so
 * its containers ask for no controller: `pids_limit = 0` (PodmanHost's cgroupV2).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BUSYBOX, busyboxRootfsTar } from '../lab/image';
import { lanHostNs } from '../lab/names';
import { addNetns, delNetns } from '../lab/ns';
import { PodmanHost, type PodmanOutcome } from '../lab/podman-host';
import { ensureExperimentalRoot, sidRootVersions } from '../lab/sid-root';
import { buildPlugin, CNI_LAB_GATEWAY, startCniLab, type CniLab } from '../support/cni';

const GATEWAY = CNI_LAB_GATEWAY;
const IMAGE = 'localhost/lanplug-busybox:latest';
/** Where Debian's netavark package puts it (Podman's helper directory). */
const NETAVARK = '/usr/lib/podman/netavark';
const NETWORK_ID = 'f'.repeat(64);
/** Podman's default rlimits are refused in this sandbox; its default capabilities leave out NET_RAW (ping). */
const RUN = ['run', '--rm', '--cap-add', 'NET_RAW', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

let lab: CniLab;
let root: string;
let dir: string;
let plugins: string;
let podmanHost: PodmanHost;
const made = new Set<string>();
let nextNs = 0;

before(async () => {
  root = ensureExperimentalRoot();
  lab = await startCniLab();
  // in the lab's directory: a crashed run's is removed by the lab's sweep
  dir = join(lab.lan.dir, 'podman6');
  mkdirSync(dir);
  plugins = join(dir, 'plugins');
  mkdirSync(plugins);
  const plugin = buildPlugin(lab.socket, dir);
  for (const name of ['lanplug-macvlan', 'lanplug-ipvlan']) copyFileSync(plugin, join(plugins, name));
  writeFileSync(
    join(dir, 'containers.conf'),
    [
      '[network]',
      'network_backend = "netavark"',
      `network_config_dir = "${join(dir, 'networks')}"`,
      `netavark_plugin_dirs = ["${plugins}"]`,
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      '[containers]',
      'log_driver = "k8s-file"',
      // the cgroup v2 hierarchy here has no controllers: runc fails writing pids.max otherwise
      'pids_limit = 0',
      '',
    ].join('\n'),
  );
  podmanHost = PodmanHost.start({
    root,
    labId: lab.lan.id,
    dir,
    netns: lab.host.ns,
    socketDir: dirname(lab.socket),
    cgroupV2: true,
  });
  const versions = sidRootVersions(root);
  console.log(`# podman ${versions.get('podman') ?? '?'}, netavark ${versions.get('netavark') ?? '?'}`);
});

after(() => {
  try {
    for (const ns of made) delNetns(ns);
    // throws if a mount of the Podman host reached this mount namespace
    podmanHost?.close();
  } finally {
    lab?.close();
  }
});

interface Outcome extends PodmanOutcome {
  json: Record<string, unknown> | null;
}

/** `netavark <args>` in the experimental root, with lanplug's plugin directory, the JSON on stdin. */
async function netavark(args: string[], input: unknown): Promise<Outcome> {
  const out = await podmanHost.exec(
    [NETAVARK, '--config', join(dir, 'netavark'), '--plugin-directory', plugins, ...args],
    JSON.stringify(input),
  );
  return { ...out, json: parse(out.stdout) };
}

function parse(text: string): Record<string, unknown> | null {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** What Podman 6 hands `netavark create` for `podman network create -d lanplug-macvlan -o parent=eth0 --subnet … --gateway … --ip-range …`. */
function createInput(network: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    network: {
      name: 'lan',
      id: NETWORK_ID,
      driver: 'lanplug-macvlan',
      subnets: [
        {
          subnet: '172.16.86.0/24',
          gateway: GATEWAY,
          lease_range: { start_ip: '172.16.86.150', end_ip: '172.16.86.159' },
        },
      ],
      ipv6_enabled: false,
      internal: false,
      dns_enabled: true,
      ipam_options: { driver: 'host-local' },
      options: { parent: 'eth0' },
      labels: { site: 'lab' },
      ...network,
    },
    used: { interfaces: [], names: {}, subnets: [] },
    options: { subnet_pools: [], default_interface_name: 'podman', check_used_subnets: false },
  };
}

/** A container namespace as Podman makes one, and the id Podman gives the container. */
function newContainer(): { ns: string; path: string; id: string } {
  const ns = lanHostNs(lab.lan.id, `n${++nextNs}`);
  addNetns(ns);
  made.add(ns);
  return { ns, path: `/run/netns/${ns}`, id: `${nextNs}`.padStart(64, 'b') };
}

function dropContainer(ns: string): void {
  delNetns(ns);
  made.delete(ns);
}

/**
 * netavark's setup/teardown input for one container on one network: `networks` as 2.0's list of
 * named options (what Podman 6 sends), or as 1.x's map of name to options (2.0 reads both).
 */
function options(
  c: { id: string },
  network: Record<string, unknown>,
  form: 'list' | 'map',
  perNetwork: Record<string, unknown> = {},
): Record<string, unknown> {
  const name = String(network['name']);
  const opts = { interface_name: 'eth0', ...perNetwork };
  return {
    container_id: c.id,
    container_name: `ctr-${c.id.slice(-4)}`,
    port_mappings: [],
    networks: form === 'list' ? [{ name, ...opts }] : { [name]: opts },
    network_info: { [name]: network },
  };
}

interface StatusInterface {
  mac_address: string;
  subnets: { ipnet: string; gateway?: string }[];
}

interface IpAddr {
  ifname: string;
  address: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

function linkIn(ns: string, ifname: string): IpAddr | null {
  const all = JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'addr', 'show'], { encoding: 'utf8' })) as IpAddr[];
  return all.find((l) => l.ifname === ifname) ?? null;
}

function ping(path: string, target: string): void {
  execFileSync('nsenter', [`--net=${path}`, BUSYBOX, 'ping', '-c', '1', '-W', '2', target], { stdio: 'ignore' });
}

/** netavark's failure: exit 1 and its own one-line `{"error": …}` on stdout, holding the plugin's message. */
function errorOf(out: Outcome): string {
  assert.notEqual(out.code, 0, out.stdout);
  assert.ok(out.json !== null && typeof out.json['error'] === 'string', `${out.stdout} ${out.stderr}`);
  return out.json['error'];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

test("the plugin's info, as Podman 6 execs it in the root: its version and API version 1.0.0", async () => {
  const out = await podmanHost.exec([join(plugins, 'lanplug-macvlan'), 'info'], '');
  assert.equal(out.code, 0, out.stderr);
  const info = parse(out.stdout);
  assert.equal(info?.['api_version'], '1.0.0');
  assert.match(String(info?.['version']), /^\d+\.\d+\.\d+/);
});

test('netavark 2.0 create: the plugin validates the network and netavark keeps its answer (name, id, driver, labels, lanplug IPAM); a bad option and a blackhole route are refused in one line', async () => {
  const out = await netavark(['create'], createInput());
  assert.equal(out.code, 0, `${out.stdout} ${out.stderr}`);
  const network = out.json ?? {};
  assert.equal(network['name'], 'lan');
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
  // 2.0's routes may have no gateway: a blackhole, unreachable or prohibit route
  const blackhole = await netavark(
    ['create'],
    createInput({ routes: [{ destination: '10.99.0.0/16', route_type: 'blackhole' }] }),
  );
  assert.match(errorOf(blackhole), /--route 10\.99\.0\.0\/16 of type blackhole is not available with lanplug/);
  assert.equal(lab.host.execOk(['ip', '-o', 'link', 'show', 'type', 'macvlan']), '', 'nothing made');
});

test('netavark 2.0 setup: the container gets its address on the LAN and reaches the gateway, --ip and --mac-address too (two --ip of one family refused); teardown removes the link; with the namespace gone netavark fails before the plugin, and the plugin’s teardown succeeds', async () => {
  const created = await netavark(['create'], createInput());
  assert.equal(created.code, 0, `${created.stdout} ${created.stderr}`);
  const network = created.json ?? {};
  const c = newContainer();
  const setups: number[] = [];
  const teardowns: number[] = [];
  try {
    const up = await netavark(['setup', c.path], options(c, network, 'list'));
    setups.push(up.ms);
    assert.equal(up.code, 0, `${up.stdout} ${up.stderr}`);
    // netavark's answer: each network's status block by the network's name
    const status = up.json?.['lan'] as { interfaces: Record<string, StatusInterface> } | undefined;
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
    assert.match(errorOf(two), /one address per family on network lan: --ip 172\.16\.86\.156 and 172\.16\.86\.157/);
    assert.equal(linkIn(c.ns, 'eth0'), null);
    console.log(
      `# netavark 2.0 with lanplug-macvlan: setup median ${median(setups).toFixed(0)} ms, teardown median ${median(teardowns).toFixed(0)} ms (${setups.length} rounds, netavark's exec and the plugin's included)`,
    );

    assert.equal((await netavark(['setup', c.path], options(c, network, 'list'))).code, 0);
    const attachedTo = async (): Promise<boolean> => {
      const listed = await lab.daemon.cli(['ls', '--json', '--state-dir', lab.daemon.stateDir]);
      assert.equal(listed.code, 0, listed.stderr);
      return (JSON.parse(listed.stdout) as { containerId: string | null }[]).some((a) => a.containerId === c.id);
    };
    assert.ok(await attachedTo(), 'lanplug ls lists the attachment');
    dropContainer(c.ns);
    // netavark (2.0 as 1.17) opens the namespace before it calls any plugin: with it gone, it fails itself
    assert.match(
      errorOf(await netavark(['teardown', c.path], options(c, network, 'list'))),
      /^open container netns: open \/run\/netns\/\S+: IO error: No such file or directory/,
    );
    // the plugin called as netavark calls it, the namespace gone: success, and the attachment is gone
    const plugin = await podmanHost.exec(
      [join(plugins, 'lanplug-macvlan'), 'teardown', c.path],
      JSON.stringify({
        container_id: c.id,
        container_name: `ctr-${c.id.slice(-4)}`,
        port_mappings: [],
        network,
        network_options: { interface_name: 'eth0' },
      }),
    );
    assert.deepEqual([plugin.code, plugin.stdout], [0, ''], plugin.stderr);
    assert.ok(!(await attachedTo()), 'the attachment is gone');
  } finally {
    if (made.has(c.ns)) dropContainer(c.ns);
  }
});

test('podman 6 run on a lanplug network gets its address on the LAN and reaches the gateway; --rm leaves no link; a bad option fails podman network create in lanplug’s line', () => {
  copyFileSync(busyboxRootfsTar(), join(dir, 'busybox.tar'));
  const imported = podmanHost.podman('import', join(dir, 'busybox.tar'), IMAGE);
  assert.equal(imported.code, 0, imported.stderr);
  const create = podmanHost.podman(
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
    '172.16.86.160/28',
    'lan6',
  );
  assert.equal(create.code, 0, create.stderr);
  const bad = podmanHost.podman(
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '-o',
    'parent=eth0',
    '-o',
    'macvlan_mod=private',
    '--subnet',
    '172.16.87.0/24',
    'bad6',
  );
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /unknown option 'macvlan_mod' for lanplug-macvlan/);
  console.log(`# podman 6 network create with a bad option: ${bad.stderr.trim().split('\n')[0]?.slice(0, 200) ?? ''}`);
  assert.equal(podmanHost.podman('network', 'exists', 'bad6').code, 1, 'no network made');
  const out = podmanHost.podman(
    ...RUN,
    '--network',
    'lan6',
    IMAGE,
    'sh',
    '-c',
    `ip -o -4 addr show eth0 && ping -c 1 -W 2 ${GATEWAY}`,
  );
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /eth0\s+inet 172\.16\.86\.(16[1-9]|17[0-4])\/24/, out.stdout);
  assert.match(out.stdout, /1 packets received/);
  assert.doesNotMatch(
    lab.host.execOk(['ip', '-o', 'link', 'show', 'type', 'macvlan']),
    /: lp-[0-9a-f]{12}[@:]/,
    'no endpoint link left by --rm',
  );
  assert.equal(podmanHost.podman('network', 'rm', 'lan6').code, 0);
});
