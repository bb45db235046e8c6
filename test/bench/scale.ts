/**
 * `npm run bench -- --scale`: how lanplug's cost grows. For each number of
 * networks (each on a veth parent of its own, in a lab namespace; no
 * dockerd: the driver API is driven over the plugin socket as dockerd
 * drives it), endpoints are filled up to each level and attach/detach
 * cycles are timed there, with the daemon's RSS, its event loop's delay and
 * its GC pauses over the cycles (loop-probe.ts, loaded into the daemon), and
 * the kernel's own time for one macvlan with that many links beside it.
 * At the top level the daemon is stopped and started again on its rows
 * (spawn to the first answer, and to the first attach answered), and
 * `lanplug gc` runs on them.
 *
 * VLAN parents need 8021q, which only the full-kernel VM has: the parents
 * here are veths (the lab kernel has no dummy module; the driver's work per
 * endpoint does not depend on the parent's kind).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { join } from 'node:path';
import { DAEMON_NODE_FLAGS } from '../../src/daemon';
import { openRtnl } from '../../src/link/rtnl';
import { run, runOk } from '../lab/proc';
import { post } from '../support/plugin-http';
import { repoRoot } from '../support/repo';
import { BenchLab } from './bench-lab';
import type { DhcpBeside } from './dhcp-reference';
import type { FleetPoint } from './fleet';
import type { ProbeWindow } from './loop-probe';
import { rssMB } from './driver-api';
import { quantile, sinceMs, sleep, type Results } from './stats';

/** After a fill, before the idle window: one period of the LAN sync (2 s) and a margin. */
const SETTLE_AFTER_FILL_MS = 2_500;

export interface ScaleOptions {
  /** Networks to spread the endpoints over, one run each (e.g. [1, 100, 500]). */
  networks: readonly number[];
  /** Endpoints alive at each measuring point, ascending (e.g. [0, 1000, 5000, 10000]). */
  levels: readonly number[];
  /** Attach/detach cycles timed at each level. */
  cycles: number;
  /** How long the daemon is watched doing nothing at each level (its idle CPU time); 6 s unless given. */
  idleWindowMs?: number;
  /**
   * The networks' parents are VLAN `vlanId` on each veth, made by lanplug (`-o parent=sp<k>.<id>`),
   * instead of the veths: needs 8021q (the full-kernel VM, vlan-vm.ts).
   */
  vlanId?: number;
}

/** One measuring point: what the curves and the chart are made of. */
export interface ScalePoint {
  networks: number;
  /** The networks' parents: 'veth', or 'vlan <id>' on a veth (made by lanplug). */
  parent: string;
  alive: number;
  attach: { p50: number; p99: number };
  detach: { p50: number; p99: number };
  rssMB: number;
  /** Inside the daemon over the timed cycles (loop-probe.ts). */
  loopDelay: ProbeWindow['loopDelay'];
  /** An idle node process's own loop delay over the same cycles: the machine's floor. */
  floorDelay: ProbeWindow['loopDelay'];
  gc: ProbeWindow['gc'];
  /** One macvlan created (and read back) and one deleted by the bench itself, with `alive` links beside it. */
  kernel: { createP50: number; createP99: number };
  /** Endpoints made per second while filling up to this level. */
  fillPerSecond: number;
  /**
   * The daemon's CPU time (user + system) while nothing is asked of it, ms per 2 s: its periodic
   * work, of which the LAN sync (every 2 s) grows with the links beside it.
   */
  idleCpuMsPer2s: number;
  /** Attach again, the same cycles' addresses, with no detach between them (so no removal in the kernel meanwhile). */
  attachAlone: { p50: number; p99: number };
  /**
   * The slowest 1 % of the cycles (at least one): each call's time beside what the daemon's main
   * thread did meanwhile, from /proc/PID/schedstat — on a CPU, runnable but waiting for one — and
   * the bench's own wait for a CPU; means over those calls. What is left of the call is the daemon
   * asleep inside it: blocked in the kernel (a netlink call, an fsync) or waiting on a worker.
   */
  tail: { attach: TailShare; detach: TailShare };
}

export interface TailShare {
  ms: number;
  daemonOnCpuMs: number;
  daemonRunnableMs: number;
  benchRunnableMs: number;
}

/** CPU time (user + system, ms) of every thread of process `pid` so far (/proc/PID/stat; USER_HZ 100). */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The main thread of `pid`: ms on a CPU and ms runnable but waiting for one (/proc/PID/schedstat). */
function schedstat(pid: number | 'self'): { onCpu: number; runnable: number } {
  const [onCpu = 'NaN', runnable = 'NaN'] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ');
  return { onCpu: Number(onCpu) / 1e6, runnable: Number(runnable) / 1e6 };
}

interface TimedCall {
  ms: number;
  daemonOnCpuMs: number;
  daemonRunnableMs: number;
  benchRunnableMs: number;
}

/** Times `call`, and what the daemon's and the bench's main threads did meanwhile. */
async function timedCall(daemonPid: number, call: () => Promise<void>): Promise<TimedCall> {
  const daemon = schedstat(daemonPid);
  const bench = schedstat('self');
  const start = process.hrtime.bigint();
  await call();
  const ms = sinceMs(start);
  const daemonAfter = schedstat(daemonPid);
  return {
    ms,
    daemonOnCpuMs: daemonAfter.onCpu - daemon.onCpu,
    daemonRunnableMs: daemonAfter.runnable - daemon.runnable,
    benchRunnableMs: schedstat('self').runnable - bench.runnable,
  };
}

/** The slowest 1 % of `calls`, as means. */
function tailShare(calls: readonly TimedCall[]): TailShare {
  const slowest = [...calls].sort((a, b) => b.ms - a.ms).slice(0, Math.max(1, Math.floor(calls.length / 100)));
  const mean = (f: (c: TimedCall) => number): number => slowest.reduce((sum, c) => sum + f(c), 0) / slowest.length;
  return {
    ms: mean((c) => c.ms),
    daemonOnCpuMs: mean((c) => c.daemonOnCpuMs),
    daemonRunnableMs: mean((c) => c.daemonRunnableMs),
    benchRunnableMs: mean((c) => c.benchRunnableMs),
  };
}

export interface ScaleStart {
  networks: number;
  rows: number;
  /** Spawn to the driver socket's first answer (Plugin.Activate). */
  firstAnswerMs: number;
  /** Spawn to the first attach answered. */
  firstAttachMs: number;
  /** `lanplug gc` on those rows, through the running daemon. */
  gcMs: number;
}

export interface ScaleCurves {
  points: ScalePoint[];
  starts: ScaleStart[];
  /** The fleet on etcd (fleet.ts), when run. */
  fleet: FleetPoint[];
  /** DHCP beside the CNI reference (dhcp-reference.ts), when run. */
  dhcp: DhcpBeside[];
  /** A veth parent and a VLAN parent at a small count in the full-kernel VM (vlan-vm.ts), when run. */
  vlan: ScalePoint[];
  /** Why the VLAN rows are missing, when they were asked for. */
  vlanNotRun?: string;
}

const WARM_UP_CYCLES = 300;

/** A Docker-like 64-hex id: 2 hex digits of kind, then the number (link names take the first 12). */
function hexId(kind: string, n: number): string {
  return `${kind}${n.toString(16).padStart(10, '0')}`.padEnd(64, '0');
}

/** IPv4 as a number and back, for carving the networks' subnets out of 10.0.0.0/8. */
const dotted = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');
const TEN = 10 << 24;

/** Network k's subnet: big enough for its share of the top level and the cycles' addresses. */
class Layout {
  readonly bits: number;
  readonly perNetwork: number;
  constructor(
    readonly networks: number,
    top: number,
    readonly cycles: number,
  ) {
    this.perNetwork = Math.ceil(top / networks);
    this.bits = Math.ceil(Math.log2(this.perNetwork + 256 + 4));
    if (networks << this.bits > 1 << 24) throw new Error('bench: the scale layout does not fit in 10.0.0.0/8');
  }
  base(k: number): number {
    return TEN + k * (1 << this.bits);
  }
  subnet(k: number): string {
    return `${dotted(this.base(k))}/${32 - this.bits}`;
  }
  gateway(k: number): string {
    return `${dotted(this.base(k) + 1)}/${32 - this.bits}`;
  }
  /** The j-th endpoint alive: on network j mod n. */
  alive(j: number): { network: number; address: string } {
    const network = j % this.networks;
    const m = Math.floor(j / this.networks);
    return { network, address: `${dotted(this.base(network) + 2 + m)}/${32 - this.bits}` };
  }
  /** The i-th timed cycle: on network i mod n, above every alive endpoint's address. */
  cycle(i: number): { network: number; address: string } {
    const network = i % this.networks;
    const offset = 2 + this.perNetwork + (Math.floor(i / this.networks) % 250);
    return { network, address: `${dotted(this.base(network) + offset)}/${32 - this.bits}` };
  }
}

/** How long a daemon gets to exit on SIGTERM before the bench SIGKILLs it (and fails the run). */
const STOP_TIMEOUT_MS = 30_000;

/**
 * The daemon under test: `lanplug daemon` in the namespace, with the bench's probe loaded. Its files
 * are in a directory of its own under `labDir` (a lab's directory: a lab's teardown, or the sweep of
 * a later run, removes them and the daemon, which names it on its command line).
 */
export class ScaleDaemon {
  readonly dir: string;
  readonly stateDir: string;
  readonly pluginDir: string;
  readonly probeSocket: string;
  private agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private child: ChildProcess | null = null;
  private runs = 0;

  /**
   * `extraArgs`: more daemon flags (the fleet's --store and --host-id). `loopProbe: false`: without
   * the bench's probe, whose 1 ms tick costs CPU time (the DHCP bench reads the daemon's).
   */
  constructor(
    readonly ns: string,
    labDir: string,
    private readonly extraArgs: readonly string[] = [],
    private readonly options: { loopProbe?: boolean } = {},
  ) {
    this.dir = mkdtempSync(join(labDir, 'daemon-'));
    this.stateDir = join(this.dir, 'state');
    this.pluginDir = join(this.dir, 'plugins');
    this.probeSocket = join(this.dir, 'probe.sock');
  }

  get pid(): number {
    const pid = this.child?.pid;
    if (pid === undefined) throw new Error('bench: the scale daemon is not running');
    return pid;
  }

  get socket(): string {
    return join(this.pluginDir, 'lanplug-macvlan.sock');
  }

  /** Spawns the daemon; resolves with the ms from spawn to its driver socket's first answer. */
  async start(): Promise<number> {
    const log = join(this.dir, `daemon-${++this.runs}.log`);
    const fd = openSync(log, 'a');
    const started = process.hrtime.bigint();
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${this.ns}`,
        '--',
        process.execPath,
        ...DAEMON_NODE_FLAGS,
        // BENCH_NODE_FLAGS='--cpu-prof --cpu-prof-dir=/some/dir': see where a start or a level spends its time.
        ...(process.env['BENCH_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== ''),
        ...(this.options.loopProbe === false
          ? []
          : ['--require', join(repoRoot(), 'dist', 'test', 'bench', 'loop-probe.js')]),
        join(repoRoot(), 'bin', 'lanplug'),
        'daemon',
        '--state-dir',
        this.stateDir,
        '--plugin-dir',
        this.pluginDir,
        '--docker-host',
        join(this.dir, 'no-dockerd.sock'),
        '--recheck-interval',
        '0',
        ...this.extraArgs,
      ],
      { stdio: ['ignore', fd, fd], env: { ...process.env, LANPLUG_BENCH_PROBE: this.probeSocket } },
    );
    closeSync(fd);
    this.child = child;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`bench: the daemon exited during start:\n${readFileSync(log, 'utf8')}`);
      try {
        await this.call('/Plugin.Activate', {});
        return sinceMs(started);
      } catch {
        // not answering yet
      }
      if (sinceMs(started) > 120_000) throw new Error(`bench: the daemon did not answer in 120 s`);
      await sleep(2);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    this.agent.destroy();
    this.agent = new Agent({ keepAlive: true, maxSockets: 1 });
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), STOP_TIMEOUT_MS)));
      const outcome = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (outcome === 'late') {
        child.kill('SIGKILL');
        await exited;
        this.child = null;
        throw new Error(`bench: the daemon did not exit in ${STOP_TIMEOUT_MS / 1000} s of SIGTERM (killed)`);
      }
    }
    this.child = null;
  }

  async call(path: string, body: unknown): Promise<Record<string, unknown>> {
    const answer = await post(this.socket, path, JSON.stringify(body), { agent: this.agent });
    const err = answer.json['Err'];
    if (answer.status !== 200 || (typeof err === 'string' && err !== ''))
      throw new Error(`bench: ${path} answered ${answer.status}: ${JSON.stringify(answer.json)}`);
    return answer.json;
  }

  /** What the probe in the daemon saw since the last read. */
  probe(): Promise<ProbeWindow> {
    return readProbe(this.probeSocket);
  }

  /** `lanplug gc` as an operator runs it (it asks the running daemon); ms to its answer. */
  gc(): number {
    const started = process.hrtime.bigint();
    runOk(
      [
        'nsenter',
        `--net=/run/netns/${this.ns}`,
        '--',
        process.execPath,
        join(repoRoot(), 'bin', 'lanplug'),
        'gc',
        '--state-dir',
        this.stateDir,
        '--docker-host',
        join(this.dir, 'no-dockerd.sock'),
      ],
      { timeoutMs: 300_000 },
    );
    return sinceMs(started);
  }

  close(): void {
    this.agent.destroy();
    if (this.child !== null && this.child.exitCode === null) this.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function readProbe(socketPath: string): Promise<ProbeWindow> {
  return new Promise((resolve, reject) => {
    get({ socketPath, path: '/' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ProbeWindow));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** An idle node process with the probe: what the machine alone does to an event loop meanwhile. */
class Floor {
  private readonly child: ChildProcess;
  constructor(private readonly socketPath: string) {
    const probe = join(repoRoot(), 'dist', 'test', 'bench', 'loop-probe.js');
    // The socket's path on the command line too (the probe reads the environment): so that a lab's
    // sweep, which knows processes by the lab directory they name, finds this one.
    this.child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, probe, socketPath], {
      stdio: 'ignore',
      env: { ...process.env, LANPLUG_BENCH_PROBE: socketPath },
    });
  }
  async read(): Promise<ProbeWindow> {
    for (let tries = 0; ; tries++) {
      try {
        return await readProbe(this.socketPath);
      } catch (err) {
        if (tries > 100) throw err;
        await sleep(50);
      }
    }
  }
  stop(): void {
    this.child.kill('SIGKILL');
  }
}

class Endpoints {
  constructor(
    private readonly daemon: ScaleDaemon,
    private readonly networkIds: readonly string[],
  ) {}

  async attach(network: number, id: string, address: string): Promise<void> {
    const ids = { NetworkID: this.networkIds[network], EndpointID: id };
    await this.daemon.call('/NetworkDriver.CreateEndpoint', {
      ...ids,
      Interface: { Address: address, AddressIPv6: '', MacAddress: '' },
      Options: {},
    });
    await this.daemon.call('/NetworkDriver.Join', { ...ids, SandboxKey: '/var/run/docker/netns/bench', Options: {} });
  }

  async detach(network: number, id: string): Promise<void> {
    const ids = { NetworkID: this.networkIds[network], EndpointID: id };
    await this.daemon.call('/NetworkDriver.Leave', ids);
    await this.daemon.call('/NetworkDriver.DeleteEndpoint', ids);
  }
}

/** The kernel's time for one macvlan made and read back beside everything already there (the bench's own socket). */
function kernelCreate(ns: string, samples: number, parentName: string): { createP50: number; createP99: number } {
  const rtnl = openRtnl({ netns: `/run/netns/${ns}` });
  try {
    const parent = rtnl.getLink(parentName);
    if (parent === null) throw new Error(`bench: no ${parentName} in the scale namespace`);
    const create: number[] = [];
    for (let i = 0; i < samples; i++) {
      const start = process.hrtime.bigint();
      const link = rtnl.createMacvlan({ name: 'lp-scale-floor', parentIndex: parent.index, mode: 'bridge' });
      create.push(sinceMs(start));
      rtnl.deleteLink(link);
    }
    return { createP50: quantile(create, 0.5), createP99: quantile(create, 0.99) };
  } finally {
    rtnl.close();
  }
}

/** n veth parents sp0..sp(n-1) (this kernel has no dummy module), up, in one `ip -batch`. */
function makeParents(ns: string, n: number, dir: string): void {
  const batch = join(dir, 'parents.batch');
  const lines: string[] = [];
  for (let k = 0; k < n; k++)
    lines.push(`link add sp${k} type veth peer name sq${k}`, `link set sp${k} up`, `link set sq${k} up`);
  writeFileSync(batch, `${lines.join('\n')}\n`);
  runOk(['ip', '-n', ns, '-batch', batch]);
}

async function oneNetworkCount(
  results: Results,
  curves: ScaleCurves,
  n: number,
  options: ScaleOptions,
  lab: BenchLab,
): Promise<void> {
  const top = Math.max(...options.levels);
  const layout = new Layout(n, top, options.cycles);
  const ns = lab.addNamespace(`scale${n}`);
  const parentOf = (k: number): string => (options.vlanId === undefined ? `sp${k}` : `sp${k}.${options.vlanId}`);
  let daemon: ScaleDaemon | undefined;
  let floor: Floor | undefined;
  try {
    daemon = new ScaleDaemon(ns, lab.dir);
    floor = new Floor(join(daemon.dir, 'floor.sock'));
    makeParents(ns, n, daemon.dir);
    await daemon.start();
    const networkIds: string[] = [];
    for (let k = 0; k < n; k++) {
      const id = hexId('5c', k);
      await daemon.call('/NetworkDriver.CreateNetwork', {
        NetworkID: id,
        // The driver's own cost, as in the 1,000-endpoint rows: without asking the LAN.
        Options: { 'com.docker.network.generic': { parent: parentOf(k), 'lanplug.conflict': 'off' } },
        IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: layout.subnet(k), Gateway: layout.gateway(k) }],
        IPv6Data: [],
      });
      networkIds.push(id);
    }
    const endpoints = new Endpoints(daemon, networkIds);
    // The first requests pay for the JIT and the first SQLite pages; no level should carry that.
    for (let i = 0; i < Math.min(WARM_UP_CYCLES, options.cycles * 3); i++) {
      const { network, address } = layout.cycle(i);
      const id = hexId('f0', i);
      await endpoints.attach(network, id, address);
      await endpoints.detach(network, id);
    }
    const section = `at scale, ${n} network${n === 1 ? '' : 's'}`;
    let alive = 0;
    for (const [levelIndex, level] of options.levels.entries()) {
      const fillStart = process.hrtime.bigint();
      const filled = level - alive;
      while (alive < level) {
        const { network, address } = layout.alive(alive);
        await endpoints.attach(network, hexId('a1', alive), address);
        alive++;
      }
      const fillPerSecond = filled === 0 ? NaN : filled / (sinceMs(fillStart) / 1000);
      // The reaper's last batch, the fill's garbage, and the LAN sync's read of the links the fill changed
      // (it reads them only after a change: that read is the fill's cost, not what the daemon does idle).
      await sleep(SETTLE_AFTER_FILL_MS);
      const idleWindowMs = options.idleWindowMs ?? 6_000;
      const cpuBefore = processCpuMs(daemon.pid);
      await sleep(idleWindowMs);
      const idleCpuMsPer2s = ((processCpuMs(daemon.pid) - cpuBefore) * 2000) / idleWindowMs;
      await daemon.probe(); // the window starts with the cycles
      await floor.read();
      const attachCalls: TimedCall[] = [];
      const detachCalls: TimedCall[] = [];
      for (let i = 0; i < options.cycles; i++) {
        const { network, address } = layout.cycle(i);
        const id = hexId(`c${levelIndex.toString(16)}`, i);
        attachCalls.push(await timedCall(daemon.pid, () => endpoints.attach(network, id, address)));
        detachCalls.push(await timedCall(daemon.pid, () => endpoints.detach(network, id)));
      }
      const attach = attachCalls.map((c) => c.ms);
      const detach = detachCalls.map((c) => c.ms);
      const seen = await daemon.probe();
      const machine = await floor.read();
      // The same attaches with no detach between them: no link parked, no reaper batch in the kernel
      // meanwhile. What the p99 loses here is what the detaches' removals cost the attaches.
      await sleep(500);
      const attachAlone: TimedCall[] = [];
      for (let i = 0; i < options.cycles; i++) {
        const { network, address } = layout.cycle(i);
        const id = hexId(`b${levelIndex.toString(16)}`, i);
        attachAlone.push(await timedCall(daemon.pid, () => endpoints.attach(network, id, address)));
      }
      for (let i = 0; i < options.cycles; i++)
        await endpoints.detach(layout.cycle(i).network, hexId(`b${levelIndex.toString(16)}`, i));
      const a = results.add(section, `attach (CreateEndpoint + Join), ${level} alive`, attach);
      const d = results.add(section, `detach (Leave + DeleteEndpoint), ${level} alive`, detach);
      const rss = rssMB(daemon.pid);
      results.figure(`${section}: daemon RSS with ${level} endpoints alive`, rss, 'MB');
      curves.points.push({
        networks: n,
        parent: options.vlanId === undefined ? 'veth' : `vlan ${options.vlanId}`,
        alive: level,
        attach: { p50: a.p50, p99: a.p99 },
        detach: { p50: d.p50, p99: d.p99 },
        rssMB: rss,
        loopDelay: seen.loopDelay,
        floorDelay: machine.loopDelay,
        gc: seen.gc,
        kernel: kernelCreate(ns, 50, parentOf(0)),
        fillPerSecond,
        idleCpuMsPer2s,
        tail: { attach: tailShare(attachCalls), detach: tailShare(detachCalls) },
        attachAlone: {
          p50: quantile(
            attachAlone.map((c) => c.ms),
            0.5,
          ),
          p99: quantile(
            attachAlone.map((c) => c.ms),
            0.99,
          ),
        },
      });
    }
    const first = curves.points.find((p) => p.networks === n && p.alive === Math.min(...options.levels));
    const last = curves.points.find((p) => p.networks === n && p.alive === top);
    if (first !== undefined && last !== undefined && top > first.alive)
      results.figure(
        `${section}: daemon memory per endpoint (RSS ${first.alive} → ${top})`,
        ((last.rssMB - first.rssMB) * 1e3) / (top - first.alive),
        'kB',
      );

    // The host restarts with everything in place: the same rows, the same links.
    await daemon.stop();
    const firstAnswerMs = await daemon.start();
    const attachStart = process.hrtime.bigint();
    const { network, address } = layout.cycle(0);
    await endpoints.attach(network, hexId('e0', 0), address);
    const firstAttach = sinceMs(attachStart);
    await endpoints.detach(network, hexId('e0', 0));
    const gcMs = daemon.gc();
    curves.starts.push({ networks: n, rows: top, firstAnswerMs, firstAttachMs: firstAnswerMs + firstAttach, gcMs });
    results.figure(`${section}: start with ${top} rows, spawn to first answer`, firstAnswerMs, 'ms');
    results.figure(
      `${section}: start with ${top} rows, spawn to first attach answered`,
      firstAnswerMs + firstAttach,
      'ms',
    );
    results.figure(`${section}: lanplug gc on ${top} rows`, gcMs, 'ms');
    await daemon.stop();
  } finally {
    floor?.stop();
    daemon?.close();
    // The kernel removes the namespace's links with it, in one batch.
    lab.removeNamespace(ns);
  }
}

/**
 * The scale run: one namespace and one daemon per network count, torn down after it; all in one
 * bench lab, which an interrupted run (Ctrl-C, SIGTERM) removes too.
 */
export async function scaleCurves(results: Results, options: ScaleOptions): Promise<ScaleCurves> {
  const curves: ScaleCurves = { points: [], starts: [], fleet: [], dhcp: [], vlan: [] };
  const lab = BenchLab.create();
  try {
    for (const n of options.networks) await oneNetworkCount(results, curves, n, options, lab);
  } finally {
    lab.destroy();
  }
  return curves;
}

/** The load on the machine while the run was made (/proc/loadavg: 1, 5, 15 minutes). */
export function loadAverage(): string {
  const result = run(['cat', '/proc/loadavg']);
  return result.stdout.split(' ').slice(0, 3).join(' ');
}
