/**
 * The soak's short version (`npm run soak` is the full one, about 15
 * minutes): the same lab and the same work (soak-run.ts) — driver-API
 * attach/detach cycles on networks with Docker's IPAM, the lanplug IPAM and
 * DHCP, `docker run`/`rm` on three more, resident containers renewing their
 * DHCP leases every 3 s, host access and the LAN checks on — in about a
 * minute. RSS, the heap and the files' sizes need a long span to say
 * anything; what must not grow by a single object is judged here: open
 * descriptors, sockets, timers, links, routes, rows, the server's leases —
 * each flat after the warm-up and, once the run has stopped, back where it
 * was after the warm-up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judge, METRICS } from '../bench/soak-metrics';
import { SoakLab } from '../bench/soak-run';

const RESIDENTS = 3;

test('a short soak: every count is flat after the warm-up and back to where it was once the run stops', async () => {
  const progress: string[] = [];
  const lab = await SoakLab.open({
    rounds: 10,
    apiPerRound: { dockerIpam: 300, lanplugIpam: 100, dhcp: 4 },
    workers: { dockerIpam: 3, lanplugIpam: 2, dhcp: 2 },
    dockerPerRound: 6,
    residents: RESIDENTS,
    renewSeconds: 3,
    log: (line) => progress.push(line),
  });
  try {
    const run = await lab.run();
    const judgements = judge(
      run.samples,
      0.2,
      METRICS.filter((m) => m.short),
    );
    const report = [
      ...progress,
      ...judgements.map(
        (j) =>
          `${j.metric.what}: ${j.start} -> ${j.end}, settled ${run.settled[j.metric.key]}, slope ${j.slopePer10k.toFixed(3)} / 10k cycles (limit ${j.limitPer10k.toFixed(3)})`,
      ),
    ].join('\n');
    const last = run.samples[run.samples.length - 1];
    assert.equal(last?.apiCycles, 4_040, report);
    assert.equal(last.dockerCycles, 60, report);
    const baseline = run.samples[1];
    assert.ok(baseline !== undefined);
    for (const j of judgements) {
      // Timers come and go with in-flight work for seconds (an announcement's rounds, a renewal's exchange,
      // a client's request): over a minute, three such at the last sample made a slope (CI, 17 -> 20, settled
      // 17). The short run judges them by where they settle (below: a leaked timer is in every reading); the
      // full soak's span judges their slope too.
      if (j.metric.key !== 'timers') assert.ok(j.flat, `${j.metric.what} grows\n${report}`);
      // Back where it was: an object of a round still alive after it (a link, a socket, a row, a timer) is
      // a leak. `settled` is each count's least once the run stopped (soak-run.ts, settle): what is in
      // flight then (a renewal's exchange, the warmer's probes, a keep-alive timeout) is not counted.
      assert.ok(
        (run.settled[j.metric.key] ?? NaN) <= (baseline.values[j.metric.key] ?? NaN),
        `${j.metric.what}: ${run.settled[j.metric.key]} once the run stopped, ${baseline.values[j.metric.key]} after the warm-up\n${report}`,
      );
    }
    // The residents kept their leases (and addresses) the whole time, renewing about every 3 s.
    assert.equal(run.residentsKept, RESIDENTS, report);
    const expected = (RESIDENTS * run.environment.elapsedS) / 4;
    assert.ok(
      run.renewals >= expected * 0.5,
      `${run.renewals} renewals, about ${expected.toFixed(0)} expected\n${report}`,
    );
  } finally {
    lab.close();
  }
});
