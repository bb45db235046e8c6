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
import { existsSync, readdirSync } from 'node:fs';
import { dhcpBesideReference } from '../bench/dhcp-reference';
import { fleetOnEtcd } from '../bench/fleet';
import { scaleCurves } from '../bench/scale';
import { judgeScale, printScale } from '../bench/scale-report';
import { Results } from '../bench/stats';

test('the scale bench runs at tiny counts: every point measured, the restart and gc done, nothing left', async () => {
  assert.equal(process.getuid?.(), 0, 'the daemon lane needs root');
  const results = new Results();
  const curves = await scaleCurves(results, { networks: [3], levels: [0, 12], cycles: 5 });

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

  const left = readdirSync('/run/netns').filter((n) => n.startsWith(`lpb-scale-${process.pid.toString(36)}-`));
  assert.deepEqual(left, [], 'the namespaces are gone');
  assert.equal(existsSync('/run/netns'), true);
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
});

test('the DHCP bench runs at tiny counts: the reference and lanplug each acquire from one dnsmasq, one by one and at once', async () => {
  const results = new Results();
  const beside = await dhcpBesideReference(results, { cycles: 1, burst: 2 });
  assert.deepEqual(
    beside.map((d) => [d.kind, d.burst.n, d.burst.failed]),
    [
      ['reference', 2, 0],
      ['lanplug', 2, 0],
    ],
  );
  for (const d of beside) assert.ok(d.add.p50 > 0 && d.del.p50 > 0 && d.burst.wallMs > 0);
  assert.equal(results.rows.filter((r) => r.section === 'DHCP (dnsmasq on the LAN)').length, 2, 'probe on and off');
});
