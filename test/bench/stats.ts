/**
 * What every bench section shares: timing, quantiles, and the results the
 * run collects (rows of the table, single figures, the targets' verdicts).
 */

export interface Row {
  section: string;
  what: string;
  n: number;
  p50: number;
  p99: number;
}

export interface Figure {
  what: string;
  value: number;
  unit: string;
}

export interface Verdict {
  target: string;
  measured: string;
  met: boolean;
}

export class Results {
  readonly rows: Row[] = [];
  readonly figures: Figure[] = [];
  readonly verdicts: Verdict[] = [];

  add(section: string, what: string, samples: readonly number[]): Row {
    const row = { section, what, n: samples.length, p50: quantile(samples, 0.5), p99: quantile(samples, 0.99) };
    this.rows.push(row);
    return row;
  }

  figure(what: string, value: number, unit: string): void {
    this.figures.push({ what, value, unit });
  }

  judge(target: string, measured: string, met: boolean): void {
    this.verdicts.push({ target, measured, met });
  }
}

/** Nearest-rank quantile: the smallest sample with at least q of all samples at or below it. */
export function quantile(samples: readonly number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

export function median(samples: readonly number[]): number {
  return quantile(samples, 0.5);
}

export function sinceMs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export async function timed(fn: () => unknown): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return sinceMs(start);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
