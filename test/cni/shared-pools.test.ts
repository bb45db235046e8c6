/**
 * CNI attachments on a shared pool: two hosts of one lab LAN, each running
 * the real daemon with `--store etcd://...` (a 3-member etcd, Debian's 3.4,
 * on a third machine of the LAN), and one CNI network on both whose ipam
 * section says `"shared": true`. The addresses are claimed in etcd as a
 * Docker endpoint's are: never one another host holds, given back at DEL
 * (also after the namespace is gone), by `lanplug gc` for a pod that went
 * without a DEL and by a restarted daemon for one that went while it was down,
 * never for a live one; an absent host's silent pod address is reclaimed by
 * the other host, its live one kept. A Docker network's pool (its IPAM calls
 * over the plugin socket) beside a CNI network keeps the host in the pool
 * whichever goes first; a give-back etcd did not take is made once it is back.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEtcdCluster, type EtcdCluster } from '../lab/etcd-cluster';
import { createLan, type Lan, type LanHost } from '../lab/lan';
import { addNetns, delNetns } from '../lab/ns';
import { lanHostNs } from '../lab/names';
import { cleanEnv, sleep } from '../lab/proc';
import { DaemonLab, type DaemonProcess } from '../support/daemon';
import { post } from '../support/plugin-http';
import { buildPlugin, CNI_DAEMON_ARGS, CNI_LAB_GATEWAY, runPlugin, type CniOutcome } from '../support/cni';

const ETCD_ADDRESS = '172.16.86.250';
/** The pool's id as the Docker IPAM driver names `--subnet 172.16.86.0/24 --ip-range 172.16.86.64/26`. */
const POOL_ID = 'LocalDefault/172.16.86.0/24/172.16.86.64/26';

interface Node {
  name: string;
  host: LanHost;
  daemon: DaemonLab;
  socket: string;
  plugin: string;
  running: DaemonProcess | null;
}

let lan: Lan;
let etcdHost: LanHost;
let cluster: EtcdCluster;
const nodes: Node[] = [];
const made = new Set<string>();
let nextNs = 0;

function conf(ipam: Record<string, unknown> = {}): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'fleet',
    type: 'lanplug-macvlan',
    master: 'eth0',
    ipam: {
      type: 'lanplug',
      subnet: '172.16.86.0/24',
      rangeStart: '172.16.86.64',
      rangeEnd: '172.16.86.127',
      gateway: CNI_LAB_GATEWAY,
      shared: true,
      ...ipam,
    },
  });
}

function newSandbox(): { ns: string; path: string; id: string } {
  const ns = lanHostNs(lan.id, `p${++nextNs}`);
  addNetns(ns);
  made.add(ns);
  return { ns, path: `/run/netns/${ns}`, id: `pod${nextNs}${'0'.repeat(12)}` };
}

function dropSandbox(ns: string): void {
  delNetns(ns);
  made.delete(ns);
}

function cni(
  node: Node,
  command: 'ADD' | 'DEL',
  sb: { path: string; id: string },
  stdin = conf(),
  args?: string,
): Promise<CniOutcome> {
  return runPlugin(
    node.plugin,
    {
      command,
      containerId: sb.id,
      netns: sb.path,
      ifname: 'eth0',
      ...(args === undefined ? {} : { args }),
      env: { LANPLUG_CNI_SOCKET: node.socket },
    },
    stdin,
  );
}

function addressOf(out: CniOutcome): string {
  const ips = out.json?.['ips'] as { address: string }[] | undefined;
  const first = ips?.[0]?.address;
  assert.ok(first !== undefined, `no ips in ${out.stdout}`);
  return first.slice(0, first.indexOf('/'));
}

function etcdctl(args: string[]): string {
  return etcdHost.execOk(['etcdctl', `--endpoints=${cluster.clientUrls.join(',')}`, ...args], {
    env: cleanEnv({ ETCDCTL_API: '3' }),
  });
}

async function gc(node: Node): Promise<string> {
  const out = await node.daemon.cli(['gc', '--state-dir', node.daemon.stateDir]);
  assert.equal(out.code, 0, out.stderr);
  return out.stdout;
}

async function stopDaemon(node: Node): Promise<void> {
  node.running?.child.kill('SIGTERM');
  await node.running?.exited;
  node.running = null;
}

/** The pool's claims in etcd, address -> holding host (read with etcdctl from the etcd machine). */
function claims(): Map<string, string> {
  const out = etcdctl(['get', '--prefix', `/lanplug/v1/ip/${encodeURIComponent(POOL_ID)}/`]);
  const found = new Map<string, string>();
  const rows = out.split('\n').filter((l) => l !== '');
  for (let i = 0; i + 1 < rows.length; i += 2) {
    const key = rows[i] ?? '';
    const value = JSON.parse(rows[i + 1] ?? '{}') as { host?: string; kind?: string };
    if (value.kind === 'gateway' || value.kind === 'aux') continue;
    found.set(key.slice(key.lastIndexOf('/') + 1), value.host ?? '?');
  }
  return found;
}

/** The pool's record in etcd: which hosts use it (none: the pool is gone). */
function poolUsers(): string[] {
  const out = etcdctl(['get', '--print-value-only', `/lanplug/v1/pools/${encodeURIComponent(POOL_ID)}`]).trim();
  return out === '' ? [] : (JSON.parse(out) as { users: string[] }).users;
}

/** A call of the lanplug IPAM driver as dockerd makes it, over the node's plugin socket; its error, if any. */
async function dockerIpam(node: Node, method: string, body: unknown): Promise<Record<string, unknown>> {
  const out = await post(join(node.daemon.pluginDir, 'lanplug.sock'), `/IpamDriver.${method}`, JSON.stringify(body));
  assert.equal(out.status, 200, `${method}: ${JSON.stringify(out.json)}`);
  return out.json;
}

/** `docker network create --ipam-driver lanplug --subnet 172.16.86.0/24 --ip-range 172.16.86.64/26` as the IPAM driver sees it. */
async function dockerPool(node: Node): Promise<void> {
  const pool = await dockerIpam(node, 'RequestPool', {
    AddressSpace: 'LocalDefault',
    Pool: '172.16.86.0/24',
    SubPool: '172.16.86.64/26',
    Options: {},
    V6: false,
  });
  assert.equal(pool['PoolID'], POOL_ID);
  await dockerIpam(node, 'RequestAddress', {
    PoolID: POOL_ID,
    Address: CNI_LAB_GATEWAY,
    Options: { RequestAddressType: 'com.docker.network.gateway' },
  });
}

/** `docker network rm` as the IPAM driver sees it. */
async function dockerPoolGone(node: Node): Promise<void> {
  await dockerIpam(node, 'ReleaseAddress', { PoolID: POOL_ID, Address: CNI_LAB_GATEWAY });
  await dockerIpam(node, 'ReleasePool', { PoolID: POOL_ID });
}

before(async () => {
  lan = createLan();
  etcdHost = lan.addLanHost('etcd', `${ETCD_ADDRESS}/24`);
  cluster = await startEtcdCluster({
    dir: join(lan.dir, 'etcd'),
    address: ETCD_ADDRESS,
    basePort: 2370,
    ns: etcdHost.ns,
  });
  for (const [i, name] of ['a', 'b'].entries()) {
    const host = lan.addLanHost(`node${name}`, `172.16.86.${2 + i}/24`, { gateway: CNI_LAB_GATEWAY });
    const daemon = new DaemonLab(host.ns);
    const socket = join(daemon.stateDir, 'cni.sock');
    const node: Node = { name, host, daemon, socket, plugin: buildPlugin(socket, daemon.dir), running: null };
    nodes.push(node);
    node.running = await daemon.start({}, daemonArgs(name));
  }
});

after(() => {
  for (const ns of made) delNetns(ns);
  for (const node of nodes) node.daemon.close();
  cluster?.stop();
  lan?.destroy();
});

/** The shared store, the host's id, and an absent host's addresses reclaimable after 1 s (the lab's pace). */
function daemonArgs(name: string): string[] {
  return [...CNI_DAEMON_ARGS, '--store', cluster.storeUrl, '--host-id', name, '--reclaim-after', '1'];
}

const [nodeA, nodeB] = [(): Node => nodes[0] as Node, (): Node => nodes[1] as Node];

test('a CNI ADD on each of two hosts sharing a pool on etcd: addresses of the range claimed in etcd by their hosts, never one the other host holds; DEL gives them back', async () => {
  const podA = newSandbox();
  const podB = newSandbox();
  const podC = newSandbox();
  const onA = await cni(nodeA(), 'ADD', podA);
  assert.equal(onA.code, 0, onA.stdout);
  const addressA = addressOf(onA);
  assert.equal(claims().get(addressA), 'a', `${addressA} is claimed in etcd by host a`);
  // Silent on the LAN (its link down): only etcd can tell host b that the address is taken.
  execFileSync('ip', ['-n', podA.ns, 'link', 'set', 'eth0', 'down']);
  const asked = await cni(nodeB(), 'ADD', podC, conf(), `IP=${addressA}`);
  assert.notEqual(asked.code, 0, `host b must not hand out ${addressA}: ${asked.stdout}`);
  assert.match(String(asked.json?.['msg']), /Address already in use/);
  const onB = await cni(nodeB(), 'ADD', podB);
  assert.equal(onB.code, 0, onB.stdout);
  const addressB = addressOf(onB);
  assert.notEqual(addressB, addressA);
  assert.match(addressB, /^172\.16\.86\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])$/, 'from the shared range');
  assert.deepEqual(
    [...claims()].sort(),
    [
      [addressA, 'a'],
      [addressB, 'b'],
    ].sort(),
  );
  assert.equal((await cni(nodeA(), 'DEL', podA)).code, 0);
  assert.equal((await cni(nodeB(), 'DEL', podB)).code, 0);
  assert.equal((await cni(nodeB(), 'DEL', podC)).code, 0);
  assert.deepEqual([...claims()], [], 'DEL gives the addresses back to the shared pool');
  for (const sb of [podA, podB, podC]) dropSandbox(sb.ns);
});

test("a Docker network and a CNI network on one shared pool on one host: the host stays in the pool while either uses it, whichever goes first; a live pod's claim stays", async () => {
  const pod = newSandbox();
  await dockerPool(nodeA());
  const out = await cni(nodeA(), 'ADD', pod);
  assert.equal(out.code, 0, out.stdout);
  const address = addressOf(out);
  await dockerPoolGone(nodeA());
  assert.equal(claims().get(address), 'a', "the live pod's claim stays when the Docker network goes");
  assert.ok(poolUsers().includes('a'), 'host a stays in the pool: its CNI network uses it');
  // The other way round: Docker's network made again beside the CNI network, which goes first.
  await dockerPool(nodeA());
  assert.equal((await cni(nodeA(), 'DEL', pod)).code, 0);
  dropSandbox(pod.ns);
  await sleep(1_500); // the CNI network's idle removal (--cni-network-idle 1)
  assert.equal(claims().has(address), false, 'DEL gives the address back');
  assert.ok(poolUsers().includes('a'), 'host a stays in the pool: its Docker network uses it');
  await dockerPoolGone(nodeA());
  assert.ok(!poolUsers().includes('a'), 'the last user here gone, host a leaves the pool');
});

/** Every log line of a node's daemon runs so far. */
function daemonLog(node: Node): string {
  return readdirSync(node.daemon.dir)
    .filter((f) => /^daemon-\d+\.log$/.test(f))
    .map((f) => readFileSync(join(node.daemon.dir, f), 'utf8'))
    .join('');
}

test("a CNI network's configuration changed while it was unused: the host leaves the earlier configuration's pool", async () => {
  const pod = newSandbox();
  const removals = (): number => daemonLog(nodeA()).split('CNI network removed').length;
  assert.equal((await cni(nodeA(), 'ADD', pod)).code, 0);
  const before = removals();
  assert.equal((await cni(nodeA(), 'DEL', pod)).code, 0);
  // Within the network's idle second: it is still there, unused, when the new range comes.
  const other = conf({ rangeStart: '172.16.86.128', rangeEnd: '172.16.86.191' });
  const again = await cni(nodeA(), 'ADD', pod, other);
  assert.equal(removals(), before, 'the network was not removed in between');
  assert.equal(again.code, 0, again.stdout);
  assert.match(addressOf(again), /^172\.16\.86\.(12[89]|1[3-8]\d|19[01])$/, 'from the new range');
  assert.ok(!poolUsers().includes('a'), "host a is no user of the earlier configuration's pool");
  assert.equal((await cni(nodeA(), 'DEL', pod, other)).code, 0);
  dropSandbox(pod.ns);
});

/** Host a's own traffic to etcd's client ports refused (a reset: the DEL does not wait out a timeout per try). */
function cutFromEtcd(on: boolean): void {
  nodeA().host.execOk([
    'iptables',
    on ? '-I' : '-D',
    'OUTPUT',
    '-d',
    ETCD_ADDRESS,
    '-p',
    'tcp',
    '--dport',
    '2371:2373',
    '-j',
    'REJECT',
    '--reject-with',
    'tcp-reset',
  ]);
}

test('etcd out of reach at a DEL: the give-back is owed, kept across a restart, and made once etcd is back within the retry interval', async (t) => {
  // A second pod keeps the network, and so the host's place in the pool: only the give-back can free the claim.
  const [anchor, pod] = [newSandbox(), newSandbox()];
  assert.equal((await cni(nodeA(), 'ADD', anchor)).code, 0);
  const out = await cni(nodeA(), 'ADD', pod);
  assert.equal(out.code, 0, out.stdout);
  const address = addressOf(out);
  cutFromEtcd(true);
  let cut = true;
  try {
    const started = Date.now();
    assert.equal((await cni(nodeA(), 'DEL', pod)).code, 0, 'DEL is done all the same');
    const delMs = Date.now() - started;
    assert.equal(claims().get(address), 'a', 'etcd did not hear the give-back');
    // The debt outlives the daemon: restarted while still cut off, it makes it once etcd is back.
    await stopDaemon(nodeA());
    nodeA().running = await nodeA().daemon.start({}, daemonArgs('a'));
    cutFromEtcd(false);
    cut = false;
    const back = Date.now();
    while (claims().has(address) && Date.now() - back < 15_000) await sleep(250);
    assert.equal(claims().has(address), false, `the owed give-back of ${address} is made once etcd is back`);
    assert.match(daemonLog(nodeA()), /made a give-back etcd had not taken/, 'by the restarted daemon, from its record');
    t.diagnostic(`DEL with etcd cut off: ${delMs} ms; claim gone ${Date.now() - back} ms after etcd was back`);
  } finally {
    if (cut) cutFromEtcd(false);
  }
  assert.equal((await cni(nodeA(), 'DEL', anchor)).code, 0);
  for (const sb of [anchor, pod]) dropSandbox(sb.ns);
});

test('a DEL after the namespace is gone frees the etcd claim; lanplug gc frees the claim of a pod gone without a DEL, never a live one', async () => {
  const gone = newSandbox();
  const vanished = newSandbox();
  const live = newSandbox();
  const outs = [await cni(nodeA(), 'ADD', gone), await cni(nodeA(), 'ADD', vanished), await cni(nodeA(), 'ADD', live)];
  for (const out of outs) assert.equal(out.code, 0, out.stdout);
  const [goneAddress, vanishedAddress, liveAddress] = outs.map(addressOf);
  dropSandbox(gone.ns);
  assert.equal((await cni(nodeA(), 'DEL', gone)).code, 0);
  assert.equal(claims().has(goneAddress ?? ''), false, 'DEL after the namespace went frees the claim');
  dropSandbox(vanished.ns);
  for (let pass = 0; pass < 2; pass++) {
    const gc = await nodeA().daemon.cli(['gc', '--state-dir', nodeA().daemon.stateDir, '--grace-seconds', '0']);
    assert.equal(gc.code, 0, gc.stderr);
  }
  const left = claims();
  assert.equal(left.has(vanishedAddress ?? ''), false, 'gc frees the claim of a pod whose namespace is gone');
  assert.equal(left.get(liveAddress ?? ''), 'a', "a live pod's claim stays");
  assert.equal((await cni(nodeA(), 'DEL', live)).code, 0);
  assert.deepEqual([...claims()], []);
  dropSandbox(live.ns);
});

/** The executable as netavark calls it (`create`, `setup <netns>`, `teardown <netns>`), on a node's daemon. */
function netavark(
  node: Node,
  args: string[],
  input: unknown,
): Promise<{ code: number; json: Record<string, unknown> | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(node.plugin, args, {
      env: { PATH: process.env['PATH'], LANPLUG_CNI_SOCKET: node.socket },
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
      resolve({ code: code ?? -1, json });
    });
    child.stdin.end(JSON.stringify(input));
  });
}

test('a Podman network with -o lanplug.shared=true (podman network create --subnet … --ip-range …): create checks it, setup claims in the same etcd pool as the CNI network, teardown gives it back', async () => {
  const network = (subnets: unknown): Record<string, unknown> => ({
    name: 'lan',
    id: 'f'.repeat(64),
    driver: 'lanplug-macvlan',
    subnets,
    ipv6_enabled: false,
    internal: false,
    dns_enabled: true,
    ipam_options: { driver: 'host-local' },
    options: { parent: 'eth0', 'lanplug.shared': 'true' },
  });
  const notAPrefix = await netavark(
    nodeB(),
    ['create'],
    network([{ subnet: '172.16.86.0/24', lease_range: { start_ip: '172.16.86.64', end_ip: '172.16.86.100' } }]),
  );
  assert.equal(notAPrefix.code, 1);
  assert.match(String(notAPrefix.json?.['error']), /a shared pool's range is a prefix, as --ip-range is on every host/);
  const created = await netavark(
    nodeB(),
    ['create'],
    network([
      {
        subnet: '172.16.86.0/24',
        gateway: CNI_LAB_GATEWAY,
        lease_range: { start_ip: '172.16.86.64', end_ip: '172.16.86.127' },
      },
    ]),
  );
  assert.equal(created.code, 0, JSON.stringify(created.json));
  const podA = newSandbox();
  const ctr = newSandbox();
  const onA = await cni(nodeA(), 'ADD', podA);
  assert.equal(onA.code, 0, onA.stdout);
  const addressA = addressOf(onA);
  const opts = { interface_name: 'eth0', static_ips: [addressA] };
  const exec = (options: Record<string, unknown>): Record<string, unknown> => ({
    container_id: ctr.id.padStart(64, 'c'),
    container_name: 'ctr',
    port_mappings: [],
    network: created.json,
    network_options: options,
  });
  execFileSync('ip', ['-n', podA.ns, 'link', 'set', 'eth0', 'down']);
  const refused = await netavark(nodeB(), ['setup', ctr.path], exec(opts));
  assert.equal(refused.code, 1, `host b must not hand out ${addressA}`);
  assert.match(String(refused.json?.['error']), /Address already in use/);
  const set = await netavark(nodeB(), ['setup', ctr.path], exec({ interface_name: 'eth0' }));
  assert.equal(set.code, 0, JSON.stringify(set.json));
  const ipnet =
    (set.json?.['interfaces'] as Record<string, { subnets: { ipnet: string }[] }>)['eth0']?.subnets[0]?.ipnet ?? '';
  const addressB = ipnet.slice(0, ipnet.indexOf('/'));
  assert.notEqual(addressB, addressA);
  assert.equal(claims().get(addressB), 'b', 'claimed in etcd by host b');
  assert.equal((await netavark(nodeB(), ['teardown', ctr.path], exec({ interface_name: 'eth0' }))).code, 0);
  assert.equal(claims().has(addressB), false, 'teardown gives it back');
  assert.equal((await cni(nodeA(), 'DEL', podA)).code, 0);
  assert.deepEqual([...claims()], []);
  for (const sb of [podA, ctr]) dropSandbox(sb.ns);
});

test("a pod gone while its host's daemon was down (a reboot takes every pod namespace): the restarted daemon frees its etcd claim", async () => {
  const pod = newSandbox();
  const out = await cni(nodeA(), 'ADD', pod);
  assert.equal(out.code, 0, out.stdout);
  const address = addressOf(out);
  assert.equal(claims().get(address), 'a');
  const node = nodeA();
  await stopDaemon(node);
  dropSandbox(pod.ns);
  node.running = await node.daemon.start({}, daemonArgs('a'));
  const deadline = Date.now() + 20_000;
  while (claims().has(address) && Date.now() < deadline) await sleep(250);
  assert.equal(claims().has(address), false, `the claim of ${address} is freed after the restart`);
});

test("a host that went away: its live pod's address is kept (it answers on the LAN), its gone pod's is reclaimed by the other host, as a Docker container's", async () => {
  const anchor = newSandbox();
  const live = newSandbox();
  const gone = newSandbox();
  // Host a probes the pool from its own network on it: a pod of its own there.
  assert.equal((await cni(nodeA(), 'ADD', anchor)).code, 0);
  const outs = [await cni(nodeB(), 'ADD', live), await cni(nodeB(), 'ADD', gone)];
  for (const out of outs) assert.equal(out.code, 0, out.stdout);
  const [liveAddress, goneAddress] = outs.map(addressOf);
  await stopDaemon(nodeB());
  // Its registration's lease running out, at once.
  etcdctl(['del', '/lanplug/v1/hosts/b']);
  dropSandbox(gone.ns);
  let told = await gc(nodeA());
  const deadline = Date.now() + 20_000;
  while (!/reclaimed address/.test(told) && Date.now() < deadline) {
    await sleep(500);
    told += await gc(nodeA());
  }
  assert.match(told, new RegExp(`reclaimed address ${goneAddress}: its host went away and it is silent`));
  assert.match(told, new RegExp(`kept address ${liveAddress}: its host is unregistered but it answers on the LAN`));
  const left = claims();
  assert.equal(left.has(goneAddress ?? ''), false);
  assert.equal(left.get(liveAddress ?? ''), 'b', "the live pod's address stays host b's");
  nodeB().running = await nodeB().daemon.start({}, daemonArgs('b'));
  assert.equal((await cni(nodeB(), 'DEL', live)).code, 0);
  assert.equal((await cni(nodeB(), 'DEL', gone)).code, 0);
  assert.equal((await cni(nodeA(), 'DEL', anchor)).code, 0);
  for (const sb of [anchor, live]) dropSandbox(sb.ns);
  assert.deepEqual([...claims()], []);
});
