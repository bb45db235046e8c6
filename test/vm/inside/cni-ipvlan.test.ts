/**
 * lanplug's CNI plugin where the kernel has ipvlan and 8021q (Debian's, in
 * the VM): `lanplug-ipvlan` in l2 puts a namespace on the lab LAN with the
 * parent's MAC and its own address, reaching the gateway; a `master` of
 * `eth0.<id>` makes the 802.1Q parent at the first ADD and removes it with
 * the last DEL, as `-o parent=eth0.<id>` does for Docker. And the same
 * executable as netavark's `lanplug-ipvlan` plugin, called as netavark calls
 * it (create, setup, teardown; test/cni/netavark.test.ts does macvlan on the
 * machine's kernel): Podman 5's ipvlan through lanplug.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Lan, LanHost } from '../../lab/lan';
import { BUSYBOX } from '../../lab/image';
import { lanHostNs } from '../../lab/names';
import { addNetns, delNetns } from '../../lab/ns';
import type { DaemonLab } from '../../support/daemon';
import { CNI_LAB_GATEWAY, runPlugin, startCniLab, type CniLab } from '../../support/cni';

const GATEWAY = CNI_LAB_GATEWAY;
let lab: CniLab;
let lan: Lan;
let host: LanHost;
let daemon: DaemonLab;
let plugin: string;
const made: string[] = [];

function conf(master: string, subnet: string): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: `ipv-${master.replace('.', '-')}`,
    type: 'lanplug-ipvlan',
    master,
    mode: 'l2',
    ipam: { type: 'lanplug', subnet, rangeStart: subnet.replace('0/24', '100'), routes: [{ dst: '0.0.0.0/0' }] },
  });
}

function sandbox(name: string): string {
  const ns = lanHostNs(lan.id, name);
  addNetns(ns);
  made.push(ns);
  return `/run/netns/${ns}`;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

before(async () => {
  lab = await startCniLab();
  ({ lan, host, daemon, plugin } = lab);
});

after(() => {
  for (const ns of made) delNetns(ns);
  lab?.close();
});

test('lanplug-ipvlan l2: the parent MAC, an address from the range, the gateway reached; DEL takes it away', async () => {
  const netns = sandbox('ipv1');
  const env = { LANPLUG_CNI_SOCKET: join(daemon.stateDir, 'cni.sock') };
  const call = { containerId: 'ipvlan1container', netns, ifname: 'eth0', env };
  const added = await runPlugin(plugin, { command: 'ADD', ...call }, conf('eth0', '172.16.86.0/24'));
  assert.equal(added.code, 0, added.stdout);
  const ips = added.json?.['ips'] as { address: string }[];
  assert.equal(ips[0]?.address, '172.16.86.100/24');
  const parentMac = (JSON.parse(ip('-n', host.ns, '-j', 'link', 'show', 'eth0')) as { address: string }[])[0]?.address;
  const inside = JSON.parse(ip('-n', netns.slice('/run/netns/'.length), '-j', 'link', 'show', 'eth0')) as {
    address: string;
    linkinfo?: { info_kind: string };
  }[];
  assert.equal(inside[0]?.address, parentMac, 'ipvlan: the parent MAC');
  execFileSync('nsenter', [`--net=${netns}`, BUSYBOX, 'ping', '-c', '1', '-W', '2', GATEWAY], { stdio: 'ignore' });
  const deleted = await runPlugin(plugin, { command: 'DEL', ...call }, conf('eth0', '172.16.86.0/24'));
  assert.equal(deleted.code, 0, deleted.stdout);
  assert.doesNotMatch(ip('-n', netns.slice('/run/netns/'.length), 'link', 'show'), /eth0/);
});

test('master eth0.30: the 802.1Q parent is made at the first ADD and removed once the last DEL left the network idle', async () => {
  const env = { LANPLUG_CNI_SOCKET: join(daemon.stateDir, 'cni.sock') };
  const calls = ['vl1', 'vl2'].map((name) => ({
    containerId: `${name}container`,
    netns: sandbox(name),
    ifname: 'eth0',
    env,
  }));
  for (const call of calls) {
    const out = await runPlugin(plugin, { command: 'ADD', ...call }, conf('eth0.30', '10.30.0.0/24'));
    assert.equal(out.code, 0, out.stdout);
  }
  assert.match(ip('-n', host.ns, '-d', 'link', 'show', 'eth0.30'), /vlan protocol 802.1Q id 30/);
  const [first, second] = calls;
  assert.ok(first !== undefined && second !== undefined);
  assert.equal((await runPlugin(plugin, { command: 'DEL', ...first }, conf('eth0.30', '10.30.0.0/24'))).code, 0);
  assert.match(ip('-n', host.ns, 'link', 'show'), /eth0\.30@eth0/, 'kept while an attachment uses it');
  assert.equal((await runPlugin(plugin, { command: 'DEL', ...second }, conf('eth0.30', '10.30.0.0/24'))).code, 0);
  const deadline = Date.now() + 10_000;
  while (/eth0\.30/.test(ip('-n', host.ns, 'link', 'show'))) {
    if (Date.now() > deadline) assert.fail('eth0.30 still there 10 s after the last DEL');
    await new Promise((r) => setTimeout(r, 250));
  }
});

/** One call of the executable as netavark makes it: the command and namespace as arguments, the JSON on stdin. */
function netavark(
  args: string[],
  input: unknown,
): Promise<{ code: number; json: Record<string, unknown> | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(plugin, args, {
      env: { PATH: process.env['PATH'], LANPLUG_CNI_SOCKET: join(daemon.stateDir, 'cni.sock') },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: Record<string, unknown> | null = null;
      try {
        json = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        json = null;
      }
      resolve({ code: code ?? -1, json, stdout });
    });
    child.stdin.end(JSON.stringify(input));
  });
}

test('netavark plugin lanplug-ipvlan (Podman 5/6): create accepts the network, setup gives the parent MAC and an address of --ip-range that reaches the gateway, --mac-address is refused in one line, teardown removes the link', async () => {
  // What `podman network create -d lanplug-ipvlan -o parent=eth0 --subnet … --ip-range …` hands the plugin.
  const network = {
    name: 'ipvpod',
    id: 'f'.repeat(64),
    driver: 'lanplug-ipvlan',
    subnets: [
      {
        subnet: '172.16.86.0/24',
        gateway: GATEWAY,
        lease_range: { start_ip: '172.16.86.130', end_ip: '172.16.86.139' },
      },
    ],
    ipv6_enabled: false,
    internal: false,
    dns_enabled: true,
    ipam_options: { driver: 'host-local' },
    options: { parent: 'eth0', mode: 'l2' },
  };
  const created = await netavark(['create'], network);
  assert.equal(created.code, 0, created.stdout);
  assert.deepEqual(created.json?.['ipam_options'], { driver: 'lanplug' });
  const netns = sandbox('nvipv');
  const exec = (options: Record<string, unknown> = {}) => ({
    container_id: 'c'.repeat(64),
    container_name: 'ipvpod-ctr',
    port_mappings: [],
    network: created.json,
    network_options: { interface_name: 'eth0', ...options },
  });

  const refused = await netavark(['setup', netns], exec({ static_mac: '02:00:ac:10:56:99' }));
  assert.equal(refused.code, 1);
  assert.match(
    String(refused.json?.['error']),
    /an ipvlan interface has its parent's MAC: --mac-address is not available/,
  );

  const out = await netavark(['setup', netns], exec());
  assert.equal(out.code, 0, out.stdout);
  const iface = (out.json?.['interfaces'] as Record<string, { mac_address: string; subnets: { ipnet: string }[] }>)[
    'eth0'
  ];
  const parentMac = (JSON.parse(ip('-n', host.ns, '-j', 'link', 'show', 'eth0')) as { address: string }[])[0]?.address;
  assert.equal(iface?.mac_address, parentMac, 'ipvlan: the parent MAC, as Podman is told');
  assert.match(iface?.subnets[0]?.ipnet ?? '', /^172\.16\.86\.13\d\/24$/);
  const inside = ip('-n', netns.slice('/run/netns/'.length), '-d', 'addr', 'show', 'eth0');
  assert.match(inside, /ipvlan\s+mode l2/);
  execFileSync('nsenter', [`--net=${netns}`, BUSYBOX, 'ping', '-c', '1', '-W', '2', GATEWAY], { stdio: 'ignore' });

  const down = await netavark(['teardown', netns], exec());
  assert.equal(down.code, 0, down.stdout);
  assert.doesNotMatch(ip('-n', netns.slice('/run/netns/'.length), 'link', 'show'), /eth0/);
});
