/**
 * `npm run bench`: lanplug beside Docker's built-in macvlan and the
 * reference CNI plugins, in one run on one lab. Prints a table and writes
 * bench/results/latest.json and bench/results/chart.svg. Not part of
 * `npm test`: tests never time anything.
 */
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { createLan } from '../lab/lan';
import { startLanplug } from '../lab/lanplug';
import { DAEMON_NODE_FLAGS } from '../../src/daemon';
import { nsExecArgv } from '../lab/ns';
import { runOk } from '../lab/proc';
import { cleanupStaleLab } from '../lab/sweep';
import { measureReceiveLoad } from '../support/receive-load';
import { repoRoot } from '../support/repo';
import { buildCniExecutable } from '../../src/install/cni';
import { openRtnl } from '../../src/link/rtnl';
import { dhcpNetworkArgs, dualStackDhcpNetworkArgs, startDhcpServer } from '../lab/dhcp-server';
import { coldStarts } from './cold-start';
import { dhcpAttach, dhcpIpamAttach } from './dhcp';
import { dockerLevel } from './docker-level';
import { sharedPoolRequests } from './shared-pools';
import { attachDetachAtScale, closeAgents, DriverClient, probedAttach, roundTripFloor, rssMB } from './driver-api';
import { printTable, writeResults } from './report';
import { scrapeCost } from './scrape-cost';
import { loadAverage, scaleCurves, type ScaleCurves } from './scale';
import { fleetOnEtcd } from './fleet';
import { dhcpBesideReference } from './dhcp-reference';
import { judgeScale, printScale, writeScale } from './scale-report';
import { vlanParentsInVm } from './vlan-vm';
import { median, Results, sinceMs, sleep, type Row } from './stats';

const number = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
const PLUGIN_CYCLES = number('BENCH_PLUGIN_CYCLES', 200);
// Enough attaches for some dozens of scrapes 100 ms apart beside them.
const SCRAPE_CYCLES = number('BENCH_SCRAPE_CYCLES', 3000);
const DOCKER_CYCLES = number('BENCH_DOCKER_CYCLES', 10);
const PROBED_CYCLES = number('BENCH_PROBED_CYCLES', 30);
const CNI_CYCLES = number('BENCH_CNI_CYCLES', 30);
const BURST = number('BENCH_BURST', 50);
const DHCP_CYCLES = number('BENCH_DHCP_CYCLES', 100);
const DHCP_HELD = number('BENCH_DHCP_HELD', 500);
const SHARED_CYCLES = number('BENCH_SHARED_CYCLES', 300);
const WATCHED_PARENTS = number('BENCH_WATCHED_PARENTS', 16);
const RECEIVE_SAMPLES = number('BENCH_RECEIVE_SAMPLES', 20);
const LEVELS = (process.env['BENCH_LEVELS'] ?? '0,200,1000').split(',').map(Number);
const REFERENCE_CNI_DIR = '/usr/lib/cni';
const list = (name: string, fallback: string): number[] => (process.env[name] ?? fallback).split(',').map(Number);
const SCALE_NETWORKS = list('BENCH_SCALE_NETWORKS', '1,100,500');
const SCALE_LEVELS = list('BENCH_SCALE_LEVELS', '0,1000,5000,10000');
const DHCP_SCALE_CYCLES = number('BENCH_DHCP_SCALE_CYCLES', 30);
const DHCP_BURST = number('BENCH_DHCP_BURST', 100);
/** The DHCP server's T1 in the scale run: the burst's leases renew 20 s after they are bound, then 8 s more are waited. */
const DHCP_T1_SECONDS = number('BENCH_DHCP_T1', 20);
const DHCP_HOLD_PAST_T1_MS = 8_000;
const FLEET_HOSTS = list('BENCH_FLEET_HOSTS', '2,5,10');
const FLEET_PER_HOST = number('BENCH_FLEET_PER_HOST', 100);
const FLEET_CONCURRENCY = number('BENCH_FLEET_CONCURRENCY', 10);

/** The floor under every attach and detach: one RTM_NEWLINK (read back) and one RTM_DELLINK. */
function kernelFloor(results: Results, host: DockerHost): void {
  const rtnl = openRtnl({ netns: `/run/netns/${host.ns}` });
  try {
    const parent = rtnl.getLink('eth0');
    if (parent === null) throw new Error('bench: no eth0 in the Docker host');
    const create: number[] = [];
    const remove: number[] = [];
    for (let i = 0; i < 50; i++) {
      let start = process.hrtime.bigint();
      const link = rtnl.createMacvlan({ name: 'lp-bench-floor', parentIndex: parent.index, mode: 'bridge' });
      create.push(sinceMs(start));
      start = process.hrtime.bigint();
      rtnl.deleteLink(link);
      remove.push(sinceMs(start));
    }
    results.add('kernel floor', 'create a macvlan and read it back (netlink)', create);
    results.add('kernel floor', 'delete one macvlan (netlink; waits for RCU)', remove);
  } finally {
    rtnl.close();
  }
}

/**
 * What must not wait behind the LAN watch's receives — a call on libuv's
 * thread pool, a conflict probe, a DHCP answer — with no parent watched and
 * with many (receive-load.ts: veth parents in a throw-away namespace).
 */
function lanWatchLoad(results: Results): void {
  for (const parents of [0, WATCHED_PARENTS]) {
    const f = measureReceiveLoad(parents, RECEIVE_SAMPLES);
    const watched = `${parents} parents watched`;
    const stat = results.add('LAN watch', `fs.promises.stat (libuv thread pool), ${watched}`, f.fsStat);
    results.add('LAN watch', `probe of an address in use, ${watched}`, f.probeInUse);
    results.add('LAN watch', `probe of a free address (200 ms window), ${watched}`, f.probeFree);
    results.add('LAN watch', `DHCP-like receive, ${watched}`, f.dhcpReceive);
    if (parents === 0) continue;
    results.judge(
      `with ${parents} parents watched, every probe hears the address in use and fs p99 ≤ 5 ms`,
      `${f.probeInUseSeen} of ${RECEIVE_SAMPLES} heard, fs p99 ${stat.p99.toFixed(2)} ms`,
      f.probeInUseSeen === RECEIVE_SAMPLES && stat.p99 <= 5,
    );
  }
}

/** ADD and DEL exec'd as a runtime does: the reference macvlan + host-local, and lanplug's CNI executable. */
function cniPeers(results: Results, host: DockerHost, lanplugSocket: string): Row[] {
  if (!existsSync(join(REFERENCE_CNI_DIR, 'macvlan'))) {
    process.stderr.write(`bench: no reference CNI plugins in ${REFERENCE_CNI_DIR}; skipping the peer\n`);
    return [];
  }
  const state = mkdtempSync(join(tmpdir(), 'lanplug-bench-cni-'));
  try {
    const lanplugPlugin = join(state, 'lanplug-macvlan');
    buildCniExecutable(repoRoot(), lanplugPlugin, lanplugSocket);
    const script = join(repoRoot(), 'dist', 'test', 'bench', 'cni-timer.js');
    const time = (kind: string, executable: string): { add: number[]; del: number[] } =>
      JSON.parse(
        // In the daemon's mount namespace, as a runtime on that host: the namespaces it makes are visible there.
        runOk(
          nsExecArgv(
            host.ns,
            [process.execPath, script, kind, executable, 'eth0', String(CNI_CYCLES), state],
            host.mntNs,
          ),
          { timeoutMs: 300_000 },
        ),
      ) as { add: number[]; del: number[] };
    const reference = time('reference', join(REFERENCE_CNI_DIR, 'macvlan'));
    const lanplug = time('lanplug', lanplugPlugin);
    return [
      results.add('per container', 'reference CNI macvlan + host-local ADD (exec)', reference.add),
      results.add('per container', 'reference CNI macvlan + host-local DEL (exec)', reference.del),
      results.add('per container', 'lanplug CNI lanplug-macvlan + lanplug ADD (exec)', lanplug.add),
      results.add('per container', 'lanplug CNI lanplug-macvlan + lanplug DEL (exec)', lanplug.del),
    ];
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
}

function environment(host: DockerHost): Record<string, string> {
  const cpu = cpus();
  return {
    machine: `${cpu.length} × ${cpu[0]?.model.trim() ?? 'cpu'}`,
    kernel: release(),
    docker: `dockerd ${host.dockerOk(['version', '--format', '{{.Server.Version}}']).trim()}`,
    node: process.version,
    date: new Date().toISOString().slice(0, 10),
  };
}

function judge(results: Results, cold: number[]): void {
  const row = (what: string): Row | undefined => results.rows.find((r) => r.what === what);
  const fig = (what: string): number => results.figures.find((f) => f.what === what)?.value ?? NaN;
  const top = Math.max(...LEVELS);
  const attachTop = row(`attach (CreateEndpoint + Join), ${top} alive`);
  if (attachTop !== undefined)
    results.judge(
      `attach p50 ≤ 1 ms and p99 ≤ 3 ms with ${top} endpoints alive`,
      `p50 ${attachTop.p50.toFixed(2)} ms, p99 ${attachTop.p99.toFixed(2)} ms`,
      attachTop.p50 <= 1 && attachTop.p99 <= 3,
    );
  const detaches = results.rows.filter((r) => r.what.startsWith('detach ('));
  if (detaches.length > 0) {
    const worst = Math.max(...detaches.map((r) => r.p99));
    results.judge('detach p99 ≤ 3 ms (at every level)', `worst p99 ${worst.toFixed(2)} ms`, worst <= 3);
  }
  const rss = fig(`daemon RSS with ${top} endpoints alive`);
  results.judge(`daemon RSS ≤ 80 MB with ${top} endpoints`, `${rss.toFixed(1)} MB`, rss <= 80);
  results.judge('cold start ≤ 300 ms (median)', `${median(cold).toFixed(0)} ms`, median(cold) <= 300);
  for (const what of ['docker run -d', 'docker run --rm … true']) {
    const ratio = fig(`${what}: lanplug / built-in (medians)`);
    results.judge(`${what}: lanplug / built-in ≤ 1.01`, `${ratio.toFixed(3)}×`, ratio <= 1.01);
  }
  const burstB = row(`${BURST} concurrent docker run -d (wall), built-in macvlan`);
  const burstL = row(`${BURST} concurrent docker run -d (wall), lanplug-macvlan`);
  if (burstB !== undefined && burstL !== undefined)
    results.judge(
      `${BURST} concurrent docker run -d no slower than built-in (median wall)`,
      `${burstL.p50.toFixed(0)} ms against ${burstB.p50.toFixed(0)} ms`,
      burstL.p50 <= burstB.p50,
    );
  const add = row('reference CNI macvlan + host-local ADD (exec)');
  const del = row('reference CNI macvlan + host-local DEL (exec)');
  const attach0 = row('attach (CreateEndpoint + Join), 0 alive');
  const detach0 = row('detach (Leave + DeleteEndpoint), 0 alive');
  if (add !== undefined && del !== undefined && attach0 !== undefined && detach0 !== undefined) {
    const a = add.p50 / attach0.p50;
    const d = del.p50 / detach0.p50;
    results.judge(
      '≥ 10× faster than the reference CNI per attach and per detach (p50)',
      `attach ${a.toFixed(1)}×, detach ${d.toFixed(1)}×`,
      a >= 10 && d >= 10,
    );
  }
  const cniAdd = row('lanplug CNI lanplug-macvlan + lanplug ADD (exec)');
  const cniDel = row('lanplug CNI lanplug-macvlan + lanplug DEL (exec)');
  if (add !== undefined && del !== undefined && cniAdd !== undefined && cniDel !== undefined)
    results.judge(
      "lanplug's CNI plugin at least as fast as the reference per ADD and per DEL (p50, exec to result)",
      `ADD ${cniAdd.p50.toFixed(1)} ms against ${add.p50.toFixed(1)} ms, DEL ${cniDel.p50.toFixed(1)} ms against ${del.p50.toFixed(1)} ms`,
      cniAdd.p50 <= add.p50 && cniDel.p50 <= del.p50,
    );
}

/** `npm run bench -- --scale`: the curves only (scale.ts); latest.json keeps the default run's rows beside them. */
async function scaleMain(): Promise<void> {
  const results = new Results();
  // What an earlier run that was killed (SIGKILL, a crash) left: its labs, their daemons and namespaces.
  const stale = cleanupStaleLab();
  if (stale.namespaces.length + stale.dirs.length > 0)
    process.stderr.write(`bench: removed what a killed run left: ${[...stale.namespaces, ...stale.dirs].join(' ')}\n`);
  const loadBefore = loadAverage();
  // BENCH_SCALE_ONLY=curves, fleet, dhcp or vlan: one part of the scale run.
  const only = process.env['BENCH_SCALE_ONLY'];
  const curves: ScaleCurves =
    only === undefined || only === 'curves'
      ? await scaleCurves(results, { networks: SCALE_NETWORKS, levels: SCALE_LEVELS, cycles: PLUGIN_CYCLES })
      : { points: [], starts: [], fleet: [], dhcp: [], vlan: [] };
  if (only === undefined || only === 'dhcp')
    curves.dhcp = await dhcpBesideReference(results, {
      cycles: DHCP_SCALE_CYCLES,
      burst: DHCP_BURST,
      t1Seconds: DHCP_T1_SECONDS,
      holdPastT1Ms: DHCP_HOLD_PAST_T1_MS,
    });
  if (only === undefined || only === 'fleet')
    curves.fleet = await fleetOnEtcd(results, {
      hosts: FLEET_HOSTS,
      perHost: FLEET_PER_HOST,
      concurrency: FLEET_CONCURRENCY,
    });
  if (only === undefined || only === 'vlan') {
    const vm = await vlanParentsInVm();
    if ('points' in vm) curves.vlan = vm.points;
    else {
      curves.vlanNotRun = vm.error;
      process.stderr.write(`bench: no VLAN rows: ${vm.error}\n`);
    }
  }
  const cpu = cpus();
  const env = {
    machine: `${cpu.length} × ${cpu[0]?.model.trim() ?? 'cpu'}`,
    kernel: release(),
    node: process.version,
    date: new Date().toISOString().slice(0, 10),
    load: `${loadBefore} before, ${loadAverage()} after (1, 5, 15 min)`,
  };
  judgeScale(results, curves);
  process.stdout.write(printScale(curves, results, env));
  const dir = join(repoRoot(), 'bench', 'results');
  writeScale(dir, curves, results, env);
  process.stdout.write(`\nwrote the scale section of ${join(dir, 'latest.json')} and ${join(dir, 'scale.svg')}\n`);
}

async function main(): Promise<void> {
  if (process.argv.includes('--scale')) return scaleMain();
  const results = new Results();
  if (process.env['BENCH_ONLY'] === 'watch') {
    lanWatchLoad(results);
    process.stdout.write(printTable(results, { date: new Date().toISOString().slice(0, 10) }));
    return;
  }
  // BENCH_ONLY=scrape: the driver API at 0 alive and the metrics scrape's cost only (a minute).
  const scrapeOnly = process.env['BENCH_ONLY'] === 'scrape';
  const cold = scrapeOnly ? [] : await coldStarts(7);
  if (!scrapeOnly) results.add('daemon', 'cold start: spawn to all three sockets accepting', cold);
  if (process.env['BENCH_ONLY'] === 'shared') {
    await sharedPoolRequests(results, SHARED_CYCLES);
    process.stdout.write(printTable(results, { date: new Date().toISOString().slice(0, 10) }));
    return;
  }
  if (!scrapeOnly) {
    await sharedPoolRequests(results, SHARED_CYCLES);
    lanWatchLoad(results);
  }

  const lan = createLan({ addresses: ['172.16.86.1/16', 'fd77::1/64'] });
  try {
    const host = await createDockerHost(lan);
    // BENCH_PROFILE_DIR=/some/dir: the daemon writes a CPU profile there when it stops (node --cpu-prof).
    // BENCH_NODE_FLAGS='--flag …': node flags for the daemon, to try a setting against the default.
    const profileDir = process.env['BENCH_PROFILE_DIR'];
    const nodeFlags = [
      ...(process.env['BENCH_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== ''),
      ...(profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]),
    ];
    const plugin = await startLanplug(host, {
      sockets: ['lanplug-macvlan.sock', 'lanplug.sock'],
      ...(nodeFlags.length === 0
        ? {}
        : {
            command: [process.execPath, ...DAEMON_NODE_FLAGS, ...nodeFlags, join(repoRoot(), 'bin', 'lanplug')],
            args: ['--docker-host', `unix://${host.sock}`],
          }),
    });
    results.figure('daemon RSS idle', rssMB(plugin.pid), 'MB');
    const networkId = (name: string): string => host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', name]).trim();
    host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.0.0/16',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      // The driver's own cost, as Docker's built-in driver has it: without asking the LAN (measured apart below).
      '-o',
      'lanplug.conflict=off',
      'lp',
    ]);
    const driverSocket = join(plugin.pluginDir, 'lanplug-macvlan.sock');
    const client = new DriverClient(driverSocket, networkId('lp'));
    const controlSocket = join(plugin.stateDir, 'control.sock');
    if (scrapeOnly) {
      const alive = await attachDetachAtScale(results, client, plugin.pid, { levels: [0], cycles: PLUGIN_CYCLES });
      for (const id of alive) await client.detach(id);
      await scrapeCost(results, client, controlSocket, { cycles: SCRAPE_CYCLES });
      closeAgents();
      const env = environment(host);
      await plugin.stop();
      process.stdout.write(printTable(results, env));
      return;
    }
    kernelFloor(results, host);
    await roundTripFloor(results, driverSocket, PLUGIN_CYCLES);
    const alive = await attachDetachAtScale(results, client, plugin.pid, { levels: LEVELS, cycles: PLUGIN_CYCLES });
    for (const id of alive) await client.detach(id);
    await scrapeCost(results, client, controlSocket, { cycles: SCRAPE_CYCLES });

    for (const [name, subnet, ipam] of [
      ['probed', '10.99.0.0/24', []],
      ['probed-ipam', '10.98.0.0/24', ['--ipam-driver', 'lanplug']],
    ] as const) {
      host.dockerOk([
        'network',
        'create',
        '-d',
        'lanplug-macvlan',
        ...ipam,
        `--subnet=${subnet}`,
        '-o',
        'parent=eth0',
        name,
      ]);
    }
    await sleep(3000); // the warmer's first round
    await probedAttach(
      results,
      driverSocket,
      join(plugin.pluginDir, 'lanplug.sock'),
      { defaultIpam: networkId('probed'), lanplugIpam: networkId('probed-ipam'), poolId: 'LocalDefault/10.98.0.0/24' },
      PROBED_CYCLES,
    );
    host.dockerOk(['network', 'rm', 'probed', 'probed-ipam']);

    const dhcpServer = await startDhcpServer(lan, {
      range: ['172.16.200.1', '172.16.215.254'],
      netmask: '255.255.0.0',
      leaseSeconds: 3600,
      range6: ['fd77::1000', 'fd77::ffff'],
    });
    host.dockerOk(dhcpNetworkArgs('leased'));
    // A second network on the same parent and server, without the probe of each acknowledged address.
    host.dockerOk(dhcpNetworkArgs('leased-unprobed', ['-o', 'lanplug.conflict=off']));
    await dhcpAttach(
      results,
      driverSocket,
      { probed: networkId('leased'), unprobed: networkId('leased-unprobed') },
      plugin.pid,
      { cycles: DHCP_CYCLES, held: DHCP_HELD },
    );
    host.dockerOk(dualStackDhcpNetworkArgs('leased-dual', [], '172.16.0.0/16'));
    await dhcpIpamAttach(
      results,
      { driver: driverSocket, ipam: join(plugin.pluginDir, 'lanplug-dhcp.sock') },
      { id: networkId('leased-dual'), pool4: 'LanplugDhcp/172.16.0.0/16', pool6: 'LanplugDhcp/fd77::/64' },
      DHCP_CYCLES,
    );
    closeAgents();
    host.dockerOk(['network', 'rm', 'leased', 'leased-unprobed', 'leased-dual']);
    dhcpServer.stop();

    // Built-in macvlan and lanplug-macvlan can share eth0 (both bridge mode).
    host.dockerOk(['network', 'create', '-d', 'macvlan', '--subnet=10.77.0.0/24', '-o', 'parent=eth0', 'builtin']);
    await dockerLevel(results, host, { builtin: 'builtin', lanplug: 'lp' }, { cycles: DOCKER_CYCLES, burst: BURST });
    // `docker run --rm` returns before dockerd has finished removing the container it ran.
    for (let waited = 0; waited < 15_000; waited += 100) {
      const attached = ['builtin', 'lp'].map((n) =>
        host.dockerOk(['network', 'inspect', '-f', '{{len .Containers}}', n]).trim(),
      );
      if (attached.every((c) => c === '0')) break;
      await sleep(100);
    }
    // An endpoint is still active while dockerd finishes a removal (its log: "cleaning up after shim
    // disconnected"), after `inspect` already lists no container: try again, as a user would.
    const left = (): string[] =>
      ['builtin', 'lp'].filter((n) => host.docker(['network', 'inspect', '-f', '{{.Name}}', n]).status === 0);
    let removed = host.docker(['network', 'rm', 'builtin', 'lp']);
    for (let waited = 0; removed.status !== 0 && waited < 30_000; waited += 250) {
      await sleep(250);
      removed = host.docker(['network', 'rm', ...left()]);
    }
    if (removed.status !== 0 && /has active endpoints/.test(removed.stderr)) {
      // dockerd 20.10 can lose count of a network's endpoints in a burst of removals (inspect lists none,
      // lanplug logged no failure); its start recounts ("Fixing inconsistent endpoint_cnt").
      process.stderr.write(`bench: dockerd still counts endpoints on ${left().join(', ')}; restarting it\n`);
      host.stopDockerd();
      await host.startDockerdAgain();
      removed = host.docker(['network', 'rm', ...left()]);
    }
    if (removed.status !== 0) {
      const pick = (text: string, re: RegExp): string =>
        text
          .split('\n')
          .filter((l) => re.test(l))
          .slice(-30)
          .join('\n');
      process.stderr.write(`bench: network rm failed: ${removed.stderr}\n`);
      process.stderr.write(`--- lanplug:\n${pick(plugin.stderr(), /"level":"(warn|error)"|Leave|DeleteEndpoint/)}\n`);
      process.stderr.write(`--- dockerd:\n${pick(host.dockerdLog(), /level=(error|warning)/)}\n`);
      process.stderr.write(`--- lp:\n${host.docker(['network', 'inspect', 'lp']).stdout}\n`);
      throw new Error('bench: the Docker-level networks could not be removed');
    }

    const attach0 = results.rows.find((r) => r.what === 'attach (CreateEndpoint + Join), 0 alive');
    const detach0 = results.rows.find((r) => r.what === 'detach (Leave + DeleteEndpoint), 0 alive');
    cniPeers(results, host, join(plugin.stateDir, 'cni.sock'));
    if (attach0 !== undefined && detach0 !== undefined) {
      results.rows.push({ ...attach0, section: 'per container', what: 'lanplug attach (CreateEndpoint + Join)' });
      results.rows.push({ ...detach0, section: 'per container', what: 'lanplug detach (Leave + DeleteEndpoint)' });
    }
    const env = environment(host);
    await plugin.stop();
    judge(results, cold);
    process.stdout.write(printTable(results, env));
    const dir = join(repoRoot(), 'bench', 'results');
    writeResults(dir, results, env);
    process.stdout.write(`\nwrote ${join(dir, 'latest.json')} and ${join(dir, 'chart.svg')}\n`);
  } finally {
    lan.destroy();
  }
}

const started = process.hrtime.bigint();
main()
  .then(() => process.stdout.write(`bench took ${(sinceMs(started) / 1000).toFixed(0)} s\n`))
  .catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
