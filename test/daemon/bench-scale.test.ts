/**
 * The scale bench's code path (test/bench/scale.ts, `npm run bench -- --scale`)
 * at tiny counts, so that it cannot rot between the rare full runs: the
 * daemon with the bench's probe loaded, networks on veth parents, endpoints
 * filled and cycled, the restart on the rows and `lanplug gc`, the report.
 * Nothing here is timed: it asserts that every figure was measured and that
 * the run leaves nothing behind; the fleet's rounds give no address twice.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { issuedLabIds } from '../lab/names';
import { delNetns } from '../lab/ns';
import { labLeftoversOf } from '../lab/sweep';
import { allPids, isAlive, nsIdentity, readOr, signal, sleep, waitGoneSync } from '../lab/proc';
import { repoRoot } from '../support/repo';
import { dhcpBesideReference } from '../bench/dhcp-reference';
import { fleetOnEtcd } from '../bench/fleet';
import { scaleCurves } from '../bench/scale';
import { judgeScale, printScale } from '../bench/scale-report';
import { Results } from '../bench/stats';

test('the scale bench runs at tiny counts: every point measured, the restart and gc done, nothing left', async () => {
  assert.equal(process.getuid?.(), 0, 'the daemon lane needs root');
  const results = new Results();
  const curves = await scaleCurves(results, { networks: [3], levels: [0, 12], cycles: 5, idleWindowMs: 1_000 });

  assert.deepEqual(
    curves.points.map((p) => [p.networks, p.alive]),
    [
      [3, 0],
      [3, 12],
    ],
  );
  for (const p of curves.points) {
    for (const v of [p.attach.p50, p.attach.p99, p.detach.p50, p.detach.p99, p.rssMB, p.kernel.createP50])
      assert.ok(Number.isFinite(v) && v > 0, `a figure at ${p.networks}/${p.alive} is ${v}`);
    assert.ok(p.loopDelay.samples > 0, 'the probe in the daemon saw its event loop');
    assert.ok(Number.isFinite(p.idleCpuMsPer2s) && p.idleCpuMsPer2s >= 0, 'the idle CPU time read');
    assert.ok(Number.isFinite(p.floorDelay.p99), 'the idle process saw its event loop');
  }
  assert.deepEqual(
    curves.starts.map((s) => [s.networks, s.rows]),
    [[3, 12]],
  );
  for (const s of curves.starts) assert.ok(s.firstAnswerMs > 0 && s.firstAttachMs >= s.firstAnswerMs && s.gcMs > 0);

  judgeScale(results, curves);
  const table = printScale(curves, results, { date: 'today' });
  assert.match(table, /^ {7}3 {5}12 /m, 'a row per point in the tables');
  assert.equal(results.verdicts.length, 3, 'attach and RSS at the top, and the start');

  assertNothingLeft();
});

test('the fleet bench runs at tiny counts: two daemons on one etcd, every address given once, released after', async () => {
  const results = new Results();
  const points = await fleetOnEtcd(results, { hosts: [2], perHost: 6, concurrency: 3 });
  assert.deepEqual(
    points.map((p) => [p.hosts, p.etcdMembers, p.allocations, p.duplicates, p.failed]),
    [
      [2, 3, 12, 0, 0],
      [2, 2, 12, 0, 0],
    ],
  );
  for (const p of points) assert.ok(p.perSecond > 0 && p.p99 >= p.p50);
  assertNothingLeft();
});

test('the DHCP bench runs at tiny counts: the reference and lanplug each acquire from one dnsmasq, one by one and at once, and renew', async () => {
  const results = new Results();
  const beside = await dhcpBesideReference(results, { cycles: 1, burst: 2, t1Seconds: 3, holdPastT1Ms: 1_500 });
  assert.deepEqual(
    beside.map((d) => [d.kind, d.burst.n, d.burst.failed]),
    [
      ['reference', 2, 0],
      ['lanplug', 2, 0],
    ],
  );
  for (const d of beside) assert.ok(d.add.p50 > 0 && d.del.p50 > 0 && d.burst.wallMs > 0);
  assert.deepEqual(
    beside.map((d) => [d.kind, d.renewal.held, d.renewal.renewed, d.renewal.failed]),
    [
      ['reference', 2, 2, 0],
      ['lanplug', 2, 2, 0],
    ],
    'each held lease renewed once past its T1, as the LAN saw it',
  );
  for (const d of beside)
    assert.ok(
      Number.isFinite(d.renewal.t1ToAck.p50) && d.renewal.requestToAck.p50 >= 0 && d.renewal.daemonCpuMs >= 0,
      `${d.kind}: the renewal's latency and the holder's CPU time measured`,
    );
  assert.equal(results.rows.filter((r) => r.section === 'DHCP (dnsmasq on the LAN)').length, 2, 'probe on and off');
  assertNothingLeft();
});

/** The pids below `root` (its children, theirs, …). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const pid of allPids()) {
    const stat = readOr(`/proc/${pid}/stat`, '');
    parent.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
  }
  const below = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parent)
      if (below.has(ppid) && !below.has(pid)) {
        below.add(pid);
        grew = true;
      }
  }
  below.delete(root);
  return [...below];
}

/**
 * Nothing of this file's benches is left: no namespace (the scale run's, the fleet's hosts, the DHCP
 * runtime's containers), directory or process (a daemon, the idle probe, the reference dhcp daemon,
 * etcd, dnsmasq) of the labs it made, and no child process of its own. Other test files' labs may be
 * running meanwhile: only this process's lab ids are looked at.
 */
function assertNothingLeft(): void {
  assert.ok(issuedLabIds().size > 0, 'the bench made its things in labs');
  assert.deepEqual(labLeftoversOf(issuedLabIds()), { namespaces: [], dirs: [], processes: [] });
  assert.deepEqual(
    // a child killed a moment ago may be a zombie until node reaps it: gone all the same
    descendants(process.pid)
      .filter(isAlive)
      .map((p) => `${p} ${argvOf(p).join(' ')}`),
    [],
    'no process of the bench is left',
  );
}

const argvOf = (pid: number): string[] => readOr(`/proc/${pid}/cmdline`, '').split('\0');

test('the scale bench interrupted (SIGINT) mid-run leaves no daemon, process, namespace or directory', async () => {
  const bench = `require(${JSON.stringify(join(repoRoot(), 'dist', 'test', 'bench', 'scale.js'))})
    .scaleCurves(new (require(${JSON.stringify(join(repoRoot(), 'dist', 'test', 'bench', 'stats.js'))}).Results)(),
      { networks: [2], levels: [0], cycles: 1000000 })`;
  const child = spawn(process.execPath, ['-e', bench], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once('exit', (code, sig) => resolve([code, sig])),
  );
  let daemon: number | undefined;
  let below: number[] = [];
  let ns: string | undefined;
  let daemonDir: string | undefined;
  try {
    for (let waited = 0; daemon === undefined; waited += 100) {
      assert.ok(waited < 60_000 && child.exitCode === null, `the bench did not start its daemon: ${stderr}`);
      await sleep(100);
      below = descendants(child.pid as number);
      daemon = below.find((p) => argvOf(p).includes('daemon') && argvOf(p).includes('--state-dir'));
    }
    await sleep(1_000); // into the cycles
    below = descendants(child.pid as number);
    const argv = argvOf(daemon);
    daemonDir = dirname(argv[argv.indexOf('--state-dir') + 1] ?? '/nonexistent/state');
    const net = nsIdentity('net', `/proc/${daemon}/ns/net`);
    ns = readdirSync('/run/netns').find((n) => nsIdentity('net', `/run/netns/${n}`) === net);
    assert.ok(
      ns !== undefined && existsSync(daemonDir),
      'the daemon runs in a namespace of the bench, on its directory',
    );

    signal(child.pid as number, 'SIGINT');
    const [code] = await exited;
    assert.equal(code, 130, 'the bench exits as interrupted, after its cleanup');
    assert.deepEqual(waitGoneSync(below, 5_000), [], 'no process of the bench is left (the daemon, the idle probe)');
    assert.equal(existsSync(`/run/netns/${ns}`), false, `namespace ${ns} is gone`);
    assert.equal(existsSync(daemonDir), false, `${daemonDir} is gone`);
  } finally {
    // what a failed run left, so that it leaves nothing on the machine either
    signal(child.pid as number, 'SIGKILL');
    for (const pid of below) if (isAlive(pid)) signal(pid, 'SIGKILL');
    waitGoneSync(below, 5_000);
    if (ns !== undefined) delNetns(ns);
    if (daemonDir !== undefined) rmSync(daemonDir, { recursive: true, force: true });
  }
});
