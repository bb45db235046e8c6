/**
 * One address space over two Docker hosts, on etcd: two lab Docker hosts
 * (each its own dockerd 20.10 and lanplug daemon started with `--store
 * etcd://...`) on one LAN, and a 3-member etcd cluster (Debian's etcd 3.4) on a
 * third machine of that LAN. Every network is created on both hosts with the
 * same flags, as a user of a fleet would.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { startEtcdCluster, type EtcdCluster } from '../lab/etcd-cluster';
import { createLan, type Lan, type LanHost } from '../lab/lan';
import { startLanplug, type Lanplug } from '../lab/lanplug';
import { cleanEnv } from '../lab/proc';
import { containerNetwork, lines, resetDocker } from './helpers';

const ETCD_ADDRESS = '10.70.0.250';
const NETWORK_FLAGS = [
  '-d',
  'lanplug-macvlan',
  '--ipam-driver',
  'lanplug',
  '--subnet',
  '10.70.0.0/24',
  '--ip-range',
  '10.70.0.64/26',
  '--gateway',
  '10.70.0.1',
  '--aux-address',
  'printer=10.70.0.65',
  '-o',
  'parent=eth0',
];
/** The range's 64 addresses minus the aux address (the gateway is outside the range). */
const CAPACITY = 63;

let lan: Lan;
let etcdHost: LanHost;
let cluster: EtcdCluster;
const hosts: DockerHost[] = [];
const plugins: Lanplug[] = [];

before(async () => {
  lan = createLan({ addresses: ['10.70.0.1/24'] });
  etcdHost = lan.addLanHost('etcd', `${ETCD_ADDRESS}/24`);
  cluster = await startEtcdCluster({
    dir: join(lan.dir, 'etcd'),
    address: ETCD_ADDRESS,
    basePort: 2370,
    ns: etcdHost.ns,
  });
  for (const [i, address] of ['10.70.0.11/24', '10.70.0.12/24'].entries()) {
    const host = await createDockerHost(lan, { addresses: [address] });
    hosts.push(host);
    plugins.push(
      await startLanplug(host, { args: ['--store', cluster.storeUrl, '--host-id', `dh${i}`, '--log-level', 'debug'] }),
    );
  }
});

after(async () => {
  for (const plugin of plugins) await plugin.stop();
  cluster?.stop();
  lan?.destroy();
});

beforeEach(() => {
  for (const i of [0, 1, 2]) cluster.resume(i);
  for (const host of hosts) resetDocker(host);
});

/** What etcd holds under lanplug's prefix (read with etcdctl from the etcd machine). */
function etcdKeys(prefix: string): string[] {
  const out = etcdHost.execOk(
    [
      'etcdctl',
      `--endpoints=${cluster.clientUrls.join(',')}`,
      'get',
      '--prefix',
      '--keys-only',
      `/lanplug/v1/${prefix}`,
    ],
    { env: cleanEnv({ ETCDCTL_API: '3' }) },
  );
  return lines(out);
}

function createNetworkEverywhere(name: string): void {
  for (const host of hosts) host.dockerOk(['network', 'create', ...NETWORK_FLAGS, name]);
}

async function runMany(names: { host: DockerHost; name: string; extra?: string[] }[], network: string) {
  return Promise.all(
    names.map(async ({ host, name, extra }) => ({
      host,
      name,
      ...(await host.dockerAsync([
        'run',
        '-d',
        '--network',
        network,
        ...(extra ?? []),
        '--name',
        name,
        'alpine:latest',
        'sleep',
        '3600',
      ])),
    })),
  );
}

test('60 docker run split over both hosts at once: 60 distinct addresses and MACs inside --ip-range, none the gateway or aux; etcd holds exactly those; over capacity exactly the surplus fails; rm -f empties the allocations and keeps the pool', async () => {
  createNetworkEverywhere('lan');
  const first = await runMany(
    Array.from({ length: 60 }, (_, n) => ({ host: hosts[n % 2] as DockerHost, name: `c${n}` })),
    'lan',
  );
  assert.deepEqual(
    first.filter((r) => r.code !== 0).map((r) => r.stderr.trim()),
    [],
  );
  const seen = first.map((r) => containerNetwork(r.host, r.name, 'lan'));
  const addresses = seen.map((s) => s.IPAddress);
  assert.equal(new Set(addresses).size, 60, 'distinct addresses over both hosts');
  assert.equal(new Set(seen.map((s) => s.MacAddress)).size, 60, 'distinct MACs over both hosts');
  for (const address of addresses) {
    const last = Number(address.split('.')[3]);
    assert.ok(last >= 64 && last <= 127 && last !== 65, `${address}: inside --ip-range, not the aux address`);
  }
  assert.deepEqual(
    etcdKeys('ip/')
      .map((k) => k.split('/').pop())
      .sort(),
    [...addresses, '10.70.0.1', '10.70.0.65'].sort(),
    "etcd holds both hosts' endpoints, the gateway and the aux address",
  );
  // A container on one host reaches one on the other over the LAN.
  hosts[0]?.dockerOk(['exec', 'c0', 'ping', '-c', '1', '-W', '2', addresses[1] ?? '']);

  // Three addresses are left; five more starts, on both hosts: exactly two fail, and leave nothing.
  const surplus = await runMany(
    Array.from({ length: 5 }, (_, n) => ({ host: hosts[n % 2] as DockerHost, name: `s${n}` })),
    'lan',
  );
  const failed = surplus.filter((r) => r.code !== 0);
  assert.equal(failed.length, 60 + 5 - CAPACITY, failed.map((r) => r.stderr.trim()).join(' | '));
  for (const r of failed) assert.match(r.stderr, /no available addresses on this pool/i);
  assert.equal(
    etcdKeys('ip/').length,
    CAPACITY + 2,
    'each endpoint, the gateway and the aux address once; the failed starts claimed none',
  );

  await Promise.all([...first, ...surplus].map((r) => r.host.dockerAsync(['rm', '-f', r.name])));
  assert.deepEqual(
    etcdKeys('ip/')
      .map((k) => k.split('/').pop())
      .sort(),
    ['10.70.0.1', '10.70.0.65'],
  );
  assert.deepEqual(etcdKeys('mac/'), []);
  assert.equal(etcdKeys('pools/').length, 1, 'the pool stays while the networks exist');
  hosts[0]?.dockerOk(['network', 'rm', 'lan']);
  assert.equal(etcdKeys('pools/').length, 1, 'the other host still uses it');
  hosts[1]?.dockerOk(['network', 'rm', 'lan']);
  assert.deepEqual(etcdKeys(''), ['/lanplug/v1/hosts/dh0', '/lanplug/v1/hosts/dh1']);
});

test('the same --ip asked on both hosts at the same moment, 20 times: exactly one start wins each time', async () => {
  createNetworkEverywhere('lan');
  for (let n = 0; n < 20; n++) {
    const ip = `10.70.0.${200 + n}`;
    const results = await runMany(
      hosts.map((host, i) => ({ host, name: `ip${n}-${i}`, extra: ['--ip', ip] })),
      'lan',
    );
    const won = results.filter((r) => r.code === 0);
    assert.equal(won.length, 1, `round ${n}: ${results.map((r) => r.stderr.trim()).join(' | ')}`);
    assert.match(results.find((r) => r.code !== 0)?.stderr ?? '', /Address already in use/);
  }
});

test('a pool given other flags on the second host is refused, naming the host that defined it', () => {
  hosts[0]?.dockerOk(['network', 'create', ...NETWORK_FLAGS, 'lan']);
  const refused = hosts[1]?.docker([
    'network',
    'create',
    ...NETWORK_FLAGS.map((f) => (f === '10.70.0.64/26' ? '10.70.0.128/26' : f)),
    'lan',
  ]);
  assert.notEqual(refused?.status, 0);
  assert.match(
    refused?.stderr ?? '',
    /shared pool 10\.70\.0\.0\/24 was defined by host dh0 with --subnet 10\.70\.0\.0\/24 --ip-range 10\.70\.0\.64\/26, not --subnet 10\.70\.0\.0\/24 --ip-range 10\.70\.0\.128\/26/,
  );
  assert.deepEqual(lines(hosts[1]?.dockerOk(['network', 'ls', '--filter', 'name=lan', '-q']) ?? ''), []);
});

test('one etcd member stopped mid-burst: every start succeeds; two stopped: starts fail closed within 10 s, running containers keep working, starts work again after recovery', async () => {
  createNetworkEverywhere('lan');
  const burst = runMany(
    Array.from({ length: 10 }, (_, n) => ({ host: hosts[n % 2] as DockerHost, name: `b${n}` })),
    'lan',
  );
  cluster.pause(0);
  const results = await burst;
  assert.deepEqual(
    results.filter((r) => r.code !== 0).map((r) => r.stderr.trim()),
    [],
  );

  cluster.pause(1);
  const started = Date.now();
  const [refused] = await runMany([{ host: hosts[0] as DockerHost, name: 'nq' }], 'lan');
  const tookMs = Date.now() - started;
  assert.notEqual(refused?.code, 0);
  assert.match(refused?.stderr ?? '', /etcd did not answer within 9 s \(no member reachable, or no quorum\)/);
  assert.ok(tookMs < 12_000, `docker run failed after ${tookMs} ms (lanplug's part: under 10 s)`);
  const peer = containerNetwork(hosts[1] as DockerHost, 'b1', 'lan').IPAddress;
  hosts[0]?.dockerOk(['exec', 'b0', 'ping', '-c', '1', '-W', '2', peer]);

  cluster.resume(0);
  cluster.resume(1);
  hosts[0]?.dockerOk(['rm', '-f', 'nq']);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const [again] = await runMany([{ host: hosts[0] as DockerHost, name: 'back' }], 'lan');
    if (again?.code === 0) break;
    hosts[0]?.docker(['rm', '-f', 'back']);
    assert.ok(Date.now() < deadline, `starts did not work again: ${again?.stderr ?? ''}`);
  }
});
