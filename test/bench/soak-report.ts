/**
 * The soak's outputs, in the bench's form (report.ts): a table on stdout
 * (each figure's start and end after the warm-up, its slope per 10,000
 * driver-API cycles, the limit and the verdict), bench/results/soak.json and
 * bench/results/soak.svg (one panel per figure: the samples, the warm-up
 * shaded, the fitted line), which docs/performance.md shows beside the
 * bench's chart.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { environmentLine, escape, formatTable, machineLine, svgDocument } from './report';
import type { Judgement } from './soak-metrics';
import { afterWarmUp, leastSquares } from './soak-metrics';
import type { Sample, SoakRun } from './soak-run';

function amount(value: number, unit: 'count' | 'bytes'): string {
  if (!Number.isFinite(value)) return String(value);
  if (unit === 'count') return Number.isInteger(value) ? String(value) : value.toFixed(3);
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${(value / 1e6).toFixed(2)} MB`;
  if (abs >= 1e3) return `${(value / 1e3).toFixed(1)} kB`;
  return `${value.toFixed(0)} B`;
}

export function printSoakTable(
  judgements: readonly Judgement[],
  run: SoakRun,
  environment: Record<string, string>,
): string {
  const header = ['figure', 'start', 'end', 'settled', 'slope / 10k cycles', 'limit', 'verdict'];
  const cells = judgements.map((j) => [
    j.metric.what,
    amount(j.start, j.metric.unit),
    amount(j.end, j.metric.unit),
    j.metric.unit === 'count' ? amount(run.settled[j.metric.key] ?? NaN, 'count') : '',
    amount(j.slopePer10k, j.metric.unit),
    `< ${amount(j.limitPer10k, j.metric.unit)}`,
    j.flat ? 'flat' : 'GROWS',
  ]);
  const last = run.samples[run.samples.length - 1];
  const fitted = afterWarmUp(run.samples, 0.2);
  return [
    environmentLine(environment),
    '',
    `${last?.apiCycles ?? 0} driver-API attach/detach cycles and ${last?.dockerCycles ?? 0} docker run/rm in ${run.samples.length} rounds, ${run.environment.elapsedS.toFixed(0)} s; ` +
      `fitted: rounds ${fitted[0]?.round ?? '-'}-${last?.round ?? '-'} (${(fitted[0]?.apiCycles ?? 0).toString()}-${(last?.apiCycles ?? 0).toString()} cycles)`,
    `resident DHCP containers: ${run.residentsKept} kept their address; ${run.renewals} renewals`,
    '',
    ...formatTable(header, cells, 1),
    '',
    judgements.every((j) => j.flat)
      ? 'every figure is flat'
      : `GROWING: ${judgements
          .filter((j) => !j.flat)
          .map((j) => j.metric.what)
          .join(', ')}`,
    '',
  ].join('\n');
}

export function writeSoakResults(
  dir: string,
  judgements: readonly Judgement[],
  run: SoakRun,
  environment: Record<string, string>,
): void {
  mkdirSync(dir, { recursive: true });
  const json = {
    environment,
    run: { ...run.environment, renewals: run.renewals, residentsKept: run.residentsKept, settled: run.settled },
    verdicts: judgements.map((j) => ({
      key: j.metric.key,
      what: j.metric.what,
      unit: j.metric.unit,
      start: j.start,
      end: j.end,
      slopePer10k: j.slopePer10k,
      limitPer10k: j.limitPer10k,
      flat: j.flat,
    })),
    samples: run.samples,
  };
  writeFileSync(join(dir, 'soak.json'), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(dir, 'soak.svg'), soakChart(judgements, run.samples, environment));
}

/** Small multiples, three a row: each figure against the API cycles, warm-up shaded, the fit drawn over the rest. */
function soakChart(
  judgements: readonly Judgement[],
  samples: readonly Sample[],
  environment: Record<string, string>,
): string {
  const columns = 3;
  const panelW = 320;
  const panelH = 150;
  const plot = { left: 56, right: 10, top: 30, bottom: 22 };
  const parts: string[] = [];
  const fitted = afterWarmUp(samples, 0.2);
  const warmEnd = fitted[0]?.apiCycles ?? 0;
  const maxX = Math.max(1, ...samples.map((s) => s.apiCycles));
  judgements.forEach((j, i) => {
    const x0 = 10 + (i % columns) * panelW;
    const y0 = 36 + Math.floor(i / columns) * panelH;
    const w = panelW - plot.left - plot.right;
    const h = panelH - plot.top - plot.bottom;
    const fit = leastSquares(fitted.map((s) => ({ x: s.apiCycles, y: s.values[j.metric.key] ?? NaN })));
    const fx = [warmEnd, maxX];
    // The fitted line's ends are on the scale too: the line never leaves the panel.
    const ys = [
      ...samples.map((s) => s.values[j.metric.key] ?? NaN),
      ...fx.map((x) => fit.intercept + fit.slope * x),
    ].filter(Number.isFinite);
    let lo = Math.min(...ys);
    let hi = Math.max(...ys);
    if (hi - lo < (j.metric.unit === 'count' ? 2 : Math.abs(hi) * 0.02 + 1)) {
      const mid = (hi + lo) / 2;
      const half = j.metric.unit === 'count' ? 1 : Math.abs(mid) * 0.01 + 1;
      lo = mid - half;
      hi = mid + half;
    }
    const px = (x: number): number => x0 + plot.left + (x / maxX) * w;
    const py = (y: number): number => y0 + plot.top + h - ((y - lo) / (hi - lo)) * h;
    const colour = j.flat ? '#2874a6' : '#c0392b';
    parts.push(
      `<text x="${x0}" y="${y0 + 14}" font-weight="bold">${escape(j.metric.what)}</text>`,
      `<text x="${x0}" y="${y0 + 26}" font-size="10">${escape(`slope ${amount(j.slopePer10k, j.metric.unit)} / 10k cycles (limit ${amount(j.limitPer10k, j.metric.unit)}): ${j.flat ? 'flat' : 'GROWS'}`)}</text>`,
      `<rect x="${px(0).toFixed(1)}" y="${y0 + plot.top}" width="${(px(warmEnd) - px(0)).toFixed(1)}" height="${h}" fill="#eeeeee"/>`,
      `<rect x="${x0 + plot.left}" y="${y0 + plot.top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`,
      `<text x="${x0 + plot.left - 4}" y="${y0 + plot.top + 8}" font-size="9" text-anchor="end">${escape(amount(hi, j.metric.unit))}</text>`,
      `<text x="${x0 + plot.left - 4}" y="${y0 + plot.top + h}" font-size="9" text-anchor="end">${escape(amount(lo, j.metric.unit))}</text>`,
      `<text x="${x0 + plot.left + w}" y="${y0 + panelH - 8}" font-size="9" text-anchor="end">${maxX} cycles</text>`,
    );
    const path = samples
      .filter((s) => Number.isFinite(s.values[j.metric.key]))
      .map(
        (s, k) => `${k === 0 ? 'M' : 'L'}${px(s.apiCycles).toFixed(1)},${py(s.values[j.metric.key] ?? 0).toFixed(1)}`,
      )
      .join(' ');
    parts.push(`<path d="${path}" fill="none" stroke="${colour}" stroke-width="1.2"/>`);
    parts.push(
      `<line x1="${px(fx[0] ?? 0).toFixed(1)}" y1="${py(fit.intercept + fit.slope * (fx[0] ?? 0)).toFixed(1)}" x2="${px(fx[1] ?? 0).toFixed(1)}" y2="${py(fit.intercept + fit.slope * (fx[1] ?? 0)).toFixed(1)}" stroke="#333" stroke-dasharray="4 3"/>`,
    );
  });
  const rows = Math.ceil(judgements.length / columns);
  return svgDocument(
    columns * panelW + 20,
    46 + rows * panelH,
    `lanplug soak: each figure after every round against driver-API cycles; warm-up shaded, least-squares fit dashed (${machineLine(environment)})`,
    parts,
  );
}
