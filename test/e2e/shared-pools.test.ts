/**
 * One address space over two Docker hosts, on etcd: two lab Docker hosts
 * (each its own dockerd 20.10 and lanplug daemon started with `--store
 * etcd://...`) on one LAN, and a 3-member etcd cluster (Debian's etcd 3.4) on a
 * third machine of that LAN. Every network is created on both hosts with the
 * same flags, as a user of a fleet would.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { startEtcdCluster, type EtcdCluster } from '../lab/etcd-cluster';
import { createLan, type Lan, type LanHost } from '../lab/lan';
import { startLanplug, type Lanplug } from '../lab/lanplug';
import { nsExecArgv } from '../lab/ns';
import { cleanEnv, terminateSync } from '../lab/proc';
import { spreadStart } from '../../src/ipam/pool';
import { parsePrefix } from '../../src/net/address';
import { OPERATION_BUDGET_MS } from '../../src/state/etcd/keys';
import { repoRoot } from '../support/repo';
import {
  containerNetwork,
  lanplugStatus,
  lines,
  removeNetworkAfterBurst,
  resetDockerForNextTest,
  type ContainerNetwork,
} from './helpers';

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

/**
 * Each daemon's flags: the shared store, its host id, and a fast pace for the lab (orphan checks
 * every 2 s with a 3 s grace, an unregistered host's addresses reclaimable after 5 s).
 */
function daemonArgs(index: number, recheckSeconds = 2): string[] {
  return [
    '--store',
    cluster.storeUrl,
    '--host-id',
    `dh${index}`,
    '--recheck-interval',
    String(recheckSeconds),
    '--grace-seconds',
    '3',
    '--reclaim-after',
    '5',
  ];
}

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
    plugins.push(await startLanplug(host, { args: daemonArgs(i) }));
  }
});

after(async () => {
  for (const plugin of plugins) await plugin.stop();
  cluster?.stop();
  lan?.destroy();
});

beforeEach(async () => {
  for (const i of [0, 1, 2]) cluster.resume(i);
  for (const host of hosts) await resetDockerForNextTest(host);
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

/** `lanplug doctor --json` run on a host (its namespaces), reduced to check -> status. */
function doctor(index: number): Map<string, string> {
  const host = hosts[index] as DockerHost;
  const plugin = plugins[index] as Lanplug;
  const r = host.exec([
    process.execPath,
    join(repoRoot(), 'bin', 'lanplug'),
    'doctor',
    '--json',
    '--state-dir',
    plugin.stateDir,
    '--plugin-dir',
    plugin.pluginDir,
    '--docker-host',
    `unix://${host.sock}`,
  ]);
  const checks = JSON.parse(r.stdout) as { check: string; status: string; detail: string }[];
  return new Map(checks.map((c) => [c.check, `${c.status}: ${c.detail}`]));
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
  // An operator sees, from either host, who holds what; and doctor finds etcd and this host in order.
  const status = lanplugStatus(plugins[1] as Lanplug);
  assert.match(status, /^shared pools on etcd \(.*\) as host dh1; registered: dh0, dh1$/m);
  assert.match(
    status,
    /^pool LocalDefault\/10\.70\.0\.0\/24\/10\.70\.0\.64\/26 {2}defined by dh0 {2}used by dh0, dh1 {2}gateway=10\.70\.0\.1$/m,
  );
  const c0 = seen[0] as ContainerNetwork;
  assert.match(
    status,
    new RegExp(`^  ${c0.IPAddress.replace(/\./g, '\\.')}  allocated  host=dh0  mac=${c0.MacAddress}$`, 'm'),
  );
  const checks = doctor(0);
  assert.match(checks.get('etcd quorum') ?? '', /^ok: 3 of 3 members answer, one leader/);
  assert.match(checks.get('shared pools: registration') ?? '', /^ok: host dh0 is registered/);
  assert.match(checks.get('shared pools: this host') ?? '', /^ok: /);
  assert.match(checks.get('etcd clock') ?? '', /^ok: /);

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
  // After a burst of removals dockerd 20.10 can lose count of a network's endpoints (moby#42119). The
  // surplus starts' refusals are lanplug's logged failures, on purpose.
  const removal = { ms: 15_000, since: 0, pluginCallsMayFail: true };
  await removeNetworkAfterBurst(hosts[0] as DockerHost, plugins[0] as Lanplug, 'lan', removal);
  assert.equal(etcdKeys('pools/').length, 1, 'the other host still uses it');
  await removeNetworkAfterBurst(hosts[1] as DockerHost, plugins[1] as Lanplug, 'lan', removal);
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

test("a host's own address in the shared range is never a container's: skipped by its automatic allocation, refused by value on it, and on the other host the LAN answers for it", () => {
  createNetworkEverywhere('lan');
  const [first, second] = hosts as [DockerHost, DockerHost];
  // Host 0 holds the 8 addresses where its automatic allocation starts (its own place in the range).
  const start = Number(spreadStart(parsePrefix('10.70.0.64/26'), 'dh0') & 0xffn);
  const own = Array.from({ length: 8 }, (_, n) => `10.70.0.${64 + ((start - 64 + n) % 64)}`).filter(
    (a) => a !== '10.70.0.65',
  );
  for (const address of own) first.execOk(['ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
  try {
    const [one, two] = own as [string, string];
    const refused = first.docker(['run', '-d', '--network', 'lan', '--ip', one, 'alpine:latest', 'true']);
    assert.notEqual(refused.status, 0);
    assert.match(
      refused.stderr,
      new RegExp(`address ${one.replace(/\./g, '\\.')} is this host's own address \\(on eth0\\)`),
    );
    const elsewhere = second.docker(['run', '-d', '--network', 'lan', '--ip', two, 'alpine:latest', 'true']);
    assert.notEqual(elsewhere.status, 0);
    assert.match(
      elsewhere.stderr,
      new RegExp(`address ${two.replace(/\./g, '\\.')} is in use on the LAN by [0-9a-f:]{17}`),
    );
    for (let n = 0; n < 12; n++) {
      first.dockerOk(['run', '-d', '--network', 'lan', '--name', `own${n}`, 'alpine:latest', 'sleep', '3600']);
      const got = containerNetwork(first, `own${n}`, 'lan').IPAddress;
      assert.ok(!own.includes(got), `${got} is one of the host's own`);
    }
  } finally {
    for (const address of own) first.execOk(['ip', 'addr', 'del', `${address}/24`, 'dev', 'eth0']);
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

/**
 * A refused start's deadline: lanplug's (one etcd operation's budget, OPERATION_BUDGET_MS, plus
 * FAIL_CLOSED_ALLOWANCE_MS for its timers firing late on a loaded machine: docs/shared-pools.md's
 * "fails within 10 s"; measured 1-8 ms past the budget in test/etcd) and docker run's own part of a
 * run refused at its network attach (create, start, clean-up, the client's round trips: the whole run
 * measured 65-190 ms past the budget, under load; DOCKER_REFUSED_RUN_MS allows ten times that).
 */
const FAIL_CLOSED_ALLOWANCE_MS = 1_000;
const DOCKER_REFUSED_RUN_MS = 2_000;

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
  assert.ok(
    tookMs < OPERATION_BUDGET_MS + FAIL_CLOSED_ALLOWANCE_MS + DOCKER_REFUSED_RUN_MS,
    `docker run failed after ${tookMs} ms (lanplug's budget: ${OPERATION_BUDGET_MS} ms)`,
  );
  process.stdout.write(`# docker run failed after ${tookMs} ms (lanplug's budget: ${OPERATION_BUDGET_MS} ms)\n`);
  const peer = containerNetwork(hosts[1] as DockerHost, 'b1', 'lan').IPAddress;
  hosts[0]?.dockerOk(['exec', 'b0', 'ping', '-c', '1', '-W', '2', peer]);
  assert.match(doctor(0).get('etcd quorum') ?? '', /^fail: 1 of 3 members answer/);

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

/** What etcd says each host holds for endpoints: host id -> addresses. */
function endpointClaimsByHost(): Map<string, string[]> {
  const out = etcdHost.execOk(
    ['etcdctl', `--endpoints=${cluster.clientUrls.join(',')}`, 'get', '--prefix', '/lanplug/v1/ip/'],
    { env: cleanEnv({ ETCDCTL_API: '3' }) },
  );
  const rows = lines(out);
  const byHost = new Map<string, string[]>();
  for (let i = 0; i + 1 < rows.length; i += 2) {
    const claim = JSON.parse(rows[i + 1] ?? '{}') as { host: string; kind: string };
    if (claim.kind !== 'allocated' && claim.kind !== 'requested') continue;
    byHost.set(claim.host, [...(byHost.get(claim.host) ?? []), rows[i]?.split('/').pop() ?? ''].sort());
  }
  return byHost;
}

/** The addresses running containers on `host` hold on `network`. */
function runningAddresses(host: DockerHost, network: string): string[] {
  const names = lines(host.dockerOk(['ps', '--filter', `network=${network}`, '--format', '{{.Names}}']));
  return names.map((n) => containerNetwork(host, n, network).IPAddress).sort();
}

async function until(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    assert.ok(Date.now() < deadline, `not within ${ms / 1000} s: ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test('kill -9 of one lanplug in the middle of a burst, and a restart: after a reconcile period etcd holds exactly what each host runs', async () => {
  createNetworkEverywhere('lan');
  const burst = runMany(
    Array.from({ length: 24 }, (_, n) => ({ host: hosts[n % 2] as DockerHost, name: `k${n}` })),
    'lan',
  );
  await new Promise((r) => setTimeout(r, 1500));
  const killed = plugins[0] as Lanplug;
  process.kill(killed.pid, 'SIGKILL');
  await killed.stop();
  plugins[0] = await startLanplug(hosts[0] as DockerHost, { stateDir: killed.stateDir, args: daemonArgs(0) });
  const results = await burst;
  assert.ok(
    results.some((r) => r.code === 0 && r.host === hosts[0]),
    'runs on the killed host got through too',
  );
  assert.ok(
    results.filter((r) => r.host === hosts[1]).every((r) => r.code === 0),
    'the other host did not notice',
  );
  await until(
    'each host holds in etcd exactly the addresses of its running containers',
    () => {
      const claims = endpointClaimsByHost();
      return hosts.every(
        (host, i) => JSON.stringify(claims.get(`dh${i}`) ?? []) === JSON.stringify(runningAddresses(host, 'lan')),
      );
    },
    30_000,
  );
  const all = hosts.flatMap((host) => runningAddresses(host, 'lan'));
  assert.equal(new Set(all).size, all.length, 'no address twice');
});

test('a host cut off from etcd but still on the LAN: it cannot allocate, and its live addresses are never reclaimed; back, it allocates again', async () => {
  createNetworkEverywhere('lan');
  await runMany(
    [0, 1, 2].map((n) => ({ host: hosts[1] as DockerHost, name: `p${n}` })),
    'lan',
  );
  const held = runningAddresses(hosts[1] as DockerHost, 'lan');
  assert.equal(held.length, 3);
  // Host 1 loses its route to etcd (and only that): its registration expires after the 15 s lease.
  hosts[1]?.execOk(['ip', 'route', 'add', 'blackhole', `${ETCD_ADDRESS}/32`]);
  try {
    const [refused] = await runMany([{ host: hosts[1] as DockerHost, name: 'cut' }], 'lan');
    assert.notEqual(refused?.code, 0, 'no allocation without etcd');
    await until('host 1 is unregistered', () => !etcdKeys('hosts/').includes('/lanplug/v1/hosts/dh1'), 40_000);
    // Past the 5 s reclaim delay, host 0's checks (every 2 s) probe host 1's addresses: they answer.
    await new Promise((r) => setTimeout(r, 12_000));
    assert.deepEqual(endpointClaimsByHost().get('dh1'), held, 'never reclaimed while they answer');
    assert.match(plugins[0]?.stderr() ?? '', /still answer on the LAN: kept/);
    hosts[1]?.dockerOk(['exec', 'p0', 'ping', '-c', '1', '-W', '2', '10.70.0.1']);
  } finally {
    hosts[1]?.execOk(['ip', 'route', 'del', 'blackhole', `${ETCD_ADDRESS}/32`]);
  }
  hosts[1]?.docker(['rm', '-f', 'cut']);
  await until(
    'host 1 allocates again',
    () =>
      hosts[1]?.docker(['run', '-d', '--network', 'lan', '--name', 'back', 'alpine:latest', 'sleep', '3600']).status ===
        0 || (hosts[1]?.docker(['rm', '-f', 'back']), false),
    30_000,
  );
  assert.deepEqual(endpointClaimsByHost().get('dh1'), runningAddresses(hosts[1] as DockerHost, 'lan'));
});

test('dockerd restarted while etcd has no quorum boots without waiting on it; its --restart=always container on a shared pool starts again once etcd is back', async () => {
  createNetworkEverywhere('lan');
  const host = hosts[0] as DockerHost;
  host.dockerOk([
    'run',
    '-d',
    '--restart=always',
    '--network',
    'lan',
    '--name',
    'always',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
  for (const i of [0, 1, 2]) cluster.pause(i);
  try {
    host.stopDockerd();
    const bootMs = await host.startDockerdAgain();
    // dockerd asks nothing of an IPAM driver at boot (no request replay); restarting the container asks
    // for its address, which lanplug refuses within its 9 s budget instead of holding dockerd up.
    assert.ok(bootMs < 25_000, `dockerd answered after ${bootMs} ms`);
  } finally {
    for (const i of [0, 1, 2]) cluster.resume(i);
  }
  await until(
    'the container runs again on the shared pool',
    () => {
      if (host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'always']).trim() === 'true') return true;
      host.docker(['start', 'always']);
      return false;
    },
    60_000,
  );
  // The address dockerd released at its stop (etcd without quorum did not take it) is freed by the
  // periodic check: no endpoint holds it on two passes in a row, once etcd answers.
  await until(
    'etcd holds exactly what runs',
    () => JSON.stringify(endpointClaimsByHost().get('dh0')) === JSON.stringify(runningAddresses(host, 'lan')),
    20_000,
  );
});

/** Host `index`'s lanplug stopped and started again on its state directory, with `args`. */
async function restartLanplug(index: number, args: string[]): Promise<void> {
  const old = plugins[index] as Lanplug;
  await old.stop();
  plugins[index] = await startLanplug(hosts[index] as DockerHost, { stateDir: old.stateDir, args });
}

test('a second host started with the same --host-id (a cloned machine) is refused in one line naming the registration it found; the first host goes on', async () => {
  hosts[0]?.dockerOk(['network', 'create', ...NETWORK_FLAGS, 'lan']);
  await restartLanplug(1, daemonArgs(0));
  try {
    const refused = hosts[1]?.docker(['network', 'create', ...NETWORK_FLAGS, 'lan']);
    assert.notEqual(refused?.status, 0);
    assert.match(
      refused?.stderr ?? '',
      /host id dh0 is registered in etcd by another lanplug \(instance [0-9a-f]{16}, hostname [^,]+, pid \d+, since \d{4}-[^)]+\): cloned machines share a hostname, the default --host-id; give this host its own --host-id, or stop lanplug on the other one/,
    );
    assert.match(
      doctor(1).get('shared pools: registration') ?? '',
      /^fail: not registered, so nothing is allocated here: host id dh0 is registered in etcd by another lanplug/,
    );
    hosts[0]?.dockerOk(['run', '-d', '--network', 'lan', '--name', 'first', 'alpine:latest', 'sleep', '3600']);
    assert.match(doctor(0).get('shared pools: registration') ?? '', /^ok: host dh0 is registered/);
  } finally {
    await restartLanplug(1, daemonArgs(1));
  }
});

test('docker network rm while etcd has no quorum: lanplug keeps the pool release (across a restart) and makes it once etcd is back; the same network can be created again', async () => {
  // Without the aux address: each of dockerd's calls at rm waits out lanplug's 9 s etcd budget.
  const flags = NETWORK_FLAGS.filter((f, i) => f !== '--aux-address' && NETWORK_FLAGS[i - 1] !== '--aux-address');
  hosts[0]?.dockerOk(['network', 'create', ...flags, 'lan']);
  const poolId = 'LocalDefault/10.70.0.0/24/10.70.0.64/26';
  for (const i of [0, 1]) cluster.pause(i);
  try {
    // dockerd removes the network and only logs lanplug's failed ReleasePool.
    hosts[0]?.dockerOk(['network', 'rm', 'lan']);
    assert.match(plugins[0]?.stderr() ?? '', /etcd did not take this host leaving it/);
    await restartLanplug(0, daemonArgs(0));
    assert.match(
      doctor(0).get(`shared pool ${poolId}`) ?? '',
      /^warn: etcd still lists this host as a user, though Docker removed its network here/,
    );
  } finally {
    for (const i of [0, 1]) cluster.resume(i);
  }
  // etcd is back once it has elected a leader again (seconds under load; etcdctl meanwhile fails): from
  // then on lanplug's periodic check (every 2 s) makes the release.
  await cluster.untilHealthy([0, 1, 2]);
  await until('etcd no longer lists the pool', () => etcdKeys('pools/').length === 0, 30_000);
  assert.equal(doctor(0).get(`shared pool ${poolId}`), undefined);
  hosts[0]?.dockerOk(['network', 'create', ...flags, 'lan']);
});

/** The daemon's log lines that defended `address` on the LAN (a gratuitous ARP each). */
function defences(plugin: Lanplug, address: string): number {
  return lines(plugin.stderr()).filter((l) => l.includes('defending it once') && l.includes(`"${address}"`)).length;
}

test('a host cut off from etcd and the LAN longer than --reclaim-after comes back: as soon as it registers again (periodic checks off), an address nobody took is its again; one the other host gave away is reported lost (log, status, doctor) and no longer defended', async () => {
  // Host 1 runs no periodic check: what it finds on its return comes from registering again.
  await restartLanplug(1, daemonArgs(1, 0));
  try {
    await cutOffAndBack();
  } finally {
    await restartLanplug(1, daemonArgs(1));
  }
});

async function cutOffAndBack(): Promise<void> {
  createNetworkEverywhere('lan');
  await runMany(
    ['w0', 'w1'].map((name) => ({ host: hosts[1] as DockerHost, name })),
    'lan',
  );
  const kept = containerNetwork(hosts[1] as DockerHost, 'w0', 'lan');
  const lost = containerNetwork(hosts[1] as DockerHost, 'w1', 'lan');
  // Host 1 drops off the LAN (etcd is on it too): its port on the LAN's bridge goes down.
  lan.execOk(['ip', 'link', 'set', (hosts[1] as DockerHost).port, 'down']);
  try {
    await until('host 0 reclaims both', () => (endpointClaimsByHost().get('dh1') ?? []).length === 0, 60_000);
    hosts[0]?.dockerOk([
      'run',
      '-d',
      '--network',
      'lan',
      '--ip',
      lost.IPAddress,
      '--name',
      'taker',
      'alpine:latest',
      'sleep',
      '3600',
    ]);
  } finally {
    lan.execOk(['ip', 'link', 'set', (hosts[1] as DockerHost).port, 'up']);
  }
  await until(
    'host 1 notices',
    () => /another host's container holds it now: no longer defended here/.test(plugins[1]?.stderr() ?? ''),
    30_000,
  );
  // The same pass claims the other one back; which of the two it settles first follows their order in etcd.
  await until(
    'host 1 claims back the address nobody took',
    () => /nobody had taken it: claimed again/.test(plugins[1]?.stderr() ?? ''),
    10_000,
  );
  assert.deepEqual(endpointClaimsByHost().get('dh1'), [kept.IPAddress], 'the address nobody took is host 1’s again');
  assert.deepEqual(endpointClaimsByHost().get('dh0'), [lost.IPAddress], 'never taken from its new holder');
  const esc = lost.IPAddress.replace(/\./g, '\\.');
  assert.match(
    lanplugStatus(plugins[1] as Lanplug),
    new RegExp(
      `^    lost ${esc}: reclaimed by host dh0 at \\S+ while this host was away; a container of host dh0 holds it now`,
      'm',
    ),
  );
  assert.match(
    doctor(1).get(`lost address ${lost.IPAddress}`) ?? '',
    /^fail: endpoint [0-9a-f]{12} of network [0-9a-f]{12} still uses it, but host dh0 reclaimed it at /,
  );
  assert.match(doctor(1).get('shared pools: this host') ?? '', /^ok: /, 'the lost address is not also "unrecorded"');
  // The new holder talks on the LAN (ARP from its address and MAC): host 1 does not answer it with its own.
  const before = defences(plugins[1] as Lanplug, lost.IPAddress);
  // Defences are 10 s apart: one made before host 1 noticed must not hide one made after.
  if (before > 0) await new Promise((r) => setTimeout(r, 10_500));
  hosts[0]?.dockerOk(['exec', 'taker', 'ping', '-c', '3', '-W', '1', '10.70.0.1']);
  hosts[0]?.dockerOk(['exec', 'taker', 'arping', '-U', '-c', '2', '-I', 'eth0', lost.IPAddress]);
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(defences(plugins[1] as Lanplug, lost.IPAddress), before, 'host 1 sent no gratuitous ARP for it');
}

/**
 * A device on the LAN that keeps probing for `address` (an ARP probe from 0.0.0.0 every 10 ms, as a
 * host about to take it would): every probe for it ends "contended". Stops when the returned function runs.
 */
function probeForever(from: LanHost, address: string): () => void {
  const [index = '', mac = ''] =
    /^(\d+): eth0@\S+ .* link\/ether (\S+)/.exec(from.execOk(['ip', '-o', 'link', 'show', 'eth0']))?.slice(1) ?? [];
  const dist = join(repoRoot(), 'dist', 'src');
  const script = `
    const { PacketSocket, SEND_ONLY } = require(${JSON.stringify(join(dist, 'l2', 'packet-socket.js'))});
    const { arpProbe } = require(${JSON.stringify(join(dist, 'l2', 'frames.js'))});
    const { parseAddress } = require(${JSON.stringify(join(dist, 'net', 'address.js'))});
    const socket = PacketSocket.open(${Number(index)}, SEND_ONLY, 'eth0');
    const frame = arpProbe(${JSON.stringify(mac)}, parseAddress(${JSON.stringify(address)}));
    setInterval(() => socket.send(frame), 10);`;
  const [command = '', ...args] = nsExecArgv(from.ns, [process.execPath, '-e', script]);
  const child = spawn(command, args, { stdio: 'ignore', env: cleanEnv() });
  return () => {
    if (child.pid !== undefined) terminateSync(child.pid, 2_000);
  };
}

test('a host that dies for good: once unregistered past the reclaim delay and silent on the LAN, its addresses are reused by the other host; one another device keeps probing for is not reclaimed meanwhile', async () => {
  createNetworkEverywhere('lan');
  await runMany(
    [0, 1].map((n) => ({ host: hosts[1] as DockerHost, name: `d${n}` })),
    'lan',
  );
  const gone = runningAddresses(hosts[1] as DockerHost, 'lan');
  const [contended = '', silent = ''] = gone;
  // A device on the LAN probes for one of them all along: host 0's probes of it end "contended".
  const stopProbing = probeForever(etcdHost, contended);
  try {
    // The host dies: its lanplug, its dockerd and its containers, all at once.
    process.kill(plugins[1]?.pid ?? 0, 'SIGKILL');
    await plugins[1]?.stop();
    hosts[1]?.destroy();
    await until(
      'its silent address is reclaimed',
      () => !(endpointClaimsByHost().get('dh1') ?? []).includes(silent),
      60_000,
    );
    await new Promise((r) => setTimeout(r, 6_000));
    assert.deepEqual(endpointClaimsByHost().get('dh1'), [contended], 'a contended probe proves nothing: kept');
  } finally {
    stopProbing();
  }
  await until('its addresses are reclaimed', () => (endpointClaimsByHost().get('dh1') ?? []).length === 0, 30_000);
  assert.match(plugins[0]?.stderr() ?? '', /reclaimed an address of a host that went away/);
  for (const [n, ip] of gone.entries())
    hosts[0]?.dockerOk([
      'run',
      '-d',
      '--network',
      'lan',
      '--ip',
      ip,
      '--name',
      `r${n}`,
      'alpine:latest',
      'sleep',
      '3600',
    ]);
  assert.deepEqual(endpointClaimsByHost().get('dh0'), runningAddresses(hosts[0] as DockerHost, 'lan'));
});
