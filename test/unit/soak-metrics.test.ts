/**
 * The soak's verdicts (test/bench/soak-metrics.ts) on made-up series shaped
 * like the soak's: the fit itself, the warm-up left out, and the limits —
 * the noise a flat series shows stays under them, the smallest leak that
 * matters crosses them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { afterWarmUp, judge, leastSquares, METRICS, type Metric, type SeriesPoint } from '../bench/soak-metrics';

const metric = (key: string): Metric => {
  const m = METRICS.find((x) => x.key === key);
  assert.ok(m !== undefined, key);
  return m;
};

/** 50 rounds of 2,000 cycles, like `npm run soak`; `value(round, cycles)` gives the figure. */
function series(key: string, value: (round: number, cycles: number) => number): SeriesPoint[] {
  return Array.from({ length: 50 }, (_, i) => {
    const cycles = (i + 1) * 2_000;
    return { apiCycles: cycles, values: { [key]: value(i + 1, cycles) } };
  });
}

/** A repeatable pseudo-random number in [0, 1) (the tests must not depend on chance). */
function noise(seed: number): number {
  const x = Math.sin(seed * 12.9898) * 43758.5453;
  return x - Math.floor(x);
}

test('the least-squares line through points on a line is that line', () => {
  const fit = leastSquares([0, 1, 2, 3].map((x) => ({ x, y: 3 * x + 2 })));
  assert.ok(Math.abs(fit.slope - 3) < 1e-12 && Math.abs(fit.intercept - 2) < 1e-12);
  assert.equal(leastSquares([{ x: 5, y: 1 }]).slope, 0);
});

test('the warm-up (the first 20 % of the rounds) is left out of the fit', () => {
  assert.deepEqual(afterWarmUp([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.2), [3, 4, 5, 6, 7, 8, 9, 10]);
  // Filling up during the warm-up (caches, V8's optimised code, SQLite's pages) is not growth.
  const [j] = judge(
    series('openFds', (round) => (round <= 10 ? 40 + round : 50)),
    0.2,
    [metric('openFds')],
  );
  assert.equal(j?.flat, true);
  assert.equal(j?.slopePer10k, 0);
});

test('a count: flat with readings one above now and then; one object leaked in 80,000 cycles grows', () => {
  const [noisy] = judge(
    series('timers', (round) => 17 + (noise(round) < 0.05 ? 1 : 0)),
    0.2,
    [metric('timers')],
  );
  assert.equal(noisy?.flat, true, `slope ${noisy?.slopePer10k}`);
  const [leak] = judge(
    series('openFds', (_, cycles) => 50 + Math.floor(cycles / 80_000)),
    0.2,
    [metric('openFds')],
  );
  assert.equal(leak?.flat, false, `slope ${leak?.slopePer10k}, limit ${leak?.limitPer10k}`);
  // The limit: less than one object over the span fitted (rounds 11-50: 78,000 cycles).
  assert.ok(Math.abs((leak?.limitPer10k ?? 0) - 10_000 / 78_000) < 1e-9);
});

test('bytes: the heap moving by ±300 kB round to round is flat; 20 bytes a cycle kept is growth', () => {
  const heap = metric('heapUsedBytes');
  const [flat] = judge(
    series('heapUsedBytes', (round) => 8e6 + (noise(round) - 0.5) * 600e3),
    0.2,
    [heap],
  );
  assert.equal(flat?.flat, true, `slope ${flat?.slopePer10k}`);
  const [leak] = judge(
    series('heapUsedBytes', (round, cycles) => 8e6 + (noise(round) - 0.5) * 600e3 + 20 * cycles),
    0.2,
    [heap],
  );
  assert.equal(leak?.flat, false, `slope ${leak?.slopePer10k}`);
});

test('RSS: steps of a few MB as V8 and the allocator take and give back pages are flat; 200 bytes a cycle grows', () => {
  const rss = metric('rssBytes');
  const steps = (round: number): number => 70e6 + (noise(round + 100) < 0.3 ? 3e6 : 0);
  const [flat] = judge(
    series('rssBytes', (round) => steps(round)),
    0.2,
    [rss],
  );
  assert.equal(flat?.flat, true, `slope ${flat?.slopePer10k}`);
  const [leak] = judge(
    series('rssBytes', (round, cycles) => steps(round) + 200 * cycles),
    0.2,
    [rss],
  );
  assert.equal(leak?.flat, false, `slope ${leak?.slopePer10k}`);
});
