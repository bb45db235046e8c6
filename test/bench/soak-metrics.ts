/**
 * What the soak judges: each figure's least-squares slope against the
 * driver-API cycle count after the warm-up, per 10,000 cycles, and whether
 * that is growth. Pure functions of the samples, so that the verdicts can be
 * checked on made-up series (test/unit/soak-metrics.test.ts).
 *
 * Two kinds of figure, two limits:
 *
 * - Counts (descriptors, sockets, timers, links, routes, rows, the
 *   server's leases): every object a round makes it also ends, so the
 *   count is back where it was after each round. The limit is less than one
 *   object over the whole measured span (slope × span < 1): a leak of one
 *   descriptor in 80,000 cycles fails the full run. Samples are the least
 *   of three readings, so a renewal in flight at the moment of the
 *   reading adds nothing. The unix connections a client (dockerd, the soak)
 *   still holds open are not the daemon's to close: descriptors and unix
 *   sockets are counted without them (soak-run.ts says how).
 * - Bytes (RSS, heap, the database and its WAL), which move in steps (V8's
 *   pages, the allocator's arenas, SQLite's pages and checkpoints). The
 *   limits sit above what those steps make of a flat series and below the
 *   smallest leak that matters: one small object per cycle. The heap is
 *   read after a full collection (Lanplug.Stats): 100 kB per 10,000
 *   cycles is 10 bytes a cycle, and a leaked Map entry of an endpoint id
 *   is 150 or more. RSS also holds what V8 keeps of the heap's high-water
 *   mark and native memory (SQLite, koffi): 1 MB per 10,000 cycles is 100
 *   bytes a cycle, 10 MB over a 100,000-cycle soak. The files: 64 kB per
 *   10,000 cycles, well under one row a cycle (100-300 bytes).
 */

export interface Metric {
  key: string;
  what: string;
  unit: 'count' | 'bytes';
  /** For bytes: the largest slope per 10,000 cycles that is not growth. Counts: see countLimit. */
  limitPer10k?: number;
  /** Judged by the short run in `npm test` (which leaves out what needs a long span to be seen). */
  short: boolean;
}

export const METRICS: readonly Metric[] = [
  { key: 'rssBytes', what: 'daemon RSS', unit: 'bytes', limitPer10k: 1_000_000, short: false },
  {
    key: 'heapUsedBytes',
    what: 'daemon heap used (after a full GC)',
    unit: 'bytes',
    limitPer10k: 100_000,
    short: false,
  },
  { key: 'openFds', what: 'open file descriptors (less client-held connections)', unit: 'count', short: true },
  { key: 'packetSockets', what: 'packet sockets', unit: 'count', short: true },
  { key: 'netlinkSockets', what: 'netlink sockets', unit: 'count', short: true },
  { key: 'unixSockets', what: 'unix sockets (less client-held connections)', unit: 'count', short: true },
  { key: 'otherSockets', what: 'other sockets (inet; in other namespaces)', unit: 'count', short: true },
  { key: 'timers', what: 'timers (Timeout objects alive)', unit: 'count', short: true },
  { key: 'links', what: "links in the Docker host's namespace", unit: 'count', short: true },
  { key: 'hostRoutes', what: 'host-access routes (proto 76)', unit: 'count', short: true },
  { key: 'rows', what: 'SQLite rows (all tables)', unit: 'count', short: true },
  { key: 'rows.endpoints', what: 'SQLite rows: endpoints', unit: 'count', short: true },
  { key: 'rows.addresses', what: 'SQLite rows: IPAM addresses', unit: 'count', short: true },
  { key: 'rows.leases', what: 'SQLite rows: DHCP leases', unit: 'count', short: true },
  { key: 'rows.dhcp_last', what: 'SQLite rows: last DHCP address per client', unit: 'count', short: true },
  { key: 'rows.leftovers', what: 'SQLite rows: leftovers', unit: 'count', short: true },
  { key: 'rows.lan_seen', what: 'SQLite rows: LAN sightings', unit: 'count', short: true },
  // One per distinct query: a periodic pass's first run (every 30 s in the soak) prepares its own, a
  // step after the short run's warm-up of a few seconds; the full run's warm-up holds several passes.
  { key: 'statements', what: 'prepared SQLite statements', unit: 'count', short: false },
  { key: 'databaseBytes', what: 'SQLite database file', unit: 'bytes', limitPer10k: 64_000, short: false },
  { key: 'walBytes', what: 'SQLite WAL file', unit: 'bytes', limitPer10k: 64_000, short: false },
  { key: 'serverLeases', what: "the DHCP server's leases", unit: 'count', short: true },
];

export interface Point {
  x: number;
  y: number;
}

/** The least-squares line through the points: slope and intercept (slope 0 for fewer than two distinct x). */
export function leastSquares(points: readonly Point[]): { slope: number; intercept: number } {
  const n = points.length;
  if (n === 0) return { slope: 0, intercept: NaN };
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (const p of points) {
    sxx += (p.x - mx) ** 2;
    sxy += (p.x - mx) * (p.y - my);
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

export interface SeriesPoint {
  apiCycles: number;
  values: Record<string, number>;
}

export interface Judgement {
  metric: Metric;
  /** The first sample after the warm-up, and the last. */
  start: number;
  end: number;
  /** Least-squares slope per 10,000 driver-API cycles, after the warm-up. */
  slopePer10k: number;
  limitPer10k: number;
  /** The slope times the measured span: what the fit says grew over the run. */
  growth: number;
  flat: boolean;
}

/** The samples after the warm-up: the first `fraction` of them (at least one) is left out, the rest fitted. */
export function afterWarmUp<T>(samples: readonly T[], fraction: number): T[] {
  const skip = Math.min(samples.length - 2, Math.max(1, Math.ceil(samples.length * fraction)));
  return samples.slice(Math.max(0, skip));
}

/** For counts: less than one object over the measured span. */
export function countLimit(spanCycles: number): number {
  return spanCycles <= 0 ? Infinity : 10_000 / spanCycles;
}

export function judge(samples: readonly SeriesPoint[], warmUpFraction: number, metrics = METRICS): Judgement[] {
  const fitted = afterWarmUp(samples, warmUpFraction);
  const first = fitted[0];
  const last = fitted[fitted.length - 1];
  const span = first === undefined || last === undefined ? 0 : last.apiCycles - first.apiCycles;
  return metrics
    .filter((m) => fitted.some((s) => s.values[m.key] !== undefined))
    .map((metric) => {
      const points = fitted.map((s) => ({ x: s.apiCycles, y: s.values[metric.key] ?? NaN }));
      const slopePer10k = leastSquares(points).slope * 10_000;
      const limitPer10k = metric.unit === 'count' ? countLimit(span) : (metric.limitPer10k ?? 0);
      return {
        metric,
        start: first?.values[metric.key] ?? NaN,
        end: last?.values[metric.key] ?? NaN,
        slopePer10k,
        limitPer10k,
        growth: (slopePer10k * span) / 10_000,
        flat: slopePer10k < limitPer10k,
      };
    });
}
