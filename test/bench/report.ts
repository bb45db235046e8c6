/**
 * The bench's outputs: the table on stdout, bench/results/latest.json, and
 * an SVG chart (bench/results/chart.svg) that docs/performance.md shows.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Results, Row } from './stats';

/** Columns padded to their widest cell: the first `textColumns` left-aligned, the rest (numbers) right-aligned. */
export function formatTable(header: readonly string[], cells: readonly string[][], textColumns: number): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: readonly string[]): string =>
    c.map((v, i) => (i < textColumns ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)];
}

export function environmentLine(environment: Record<string, string>): string {
  return Object.entries(environment)
    .map(([k, v]) => `${k}: ${v}`)
    .join('; ');
}

export function printTable(results: Results, environment: Record<string, string>): string {
  const header = ['section', 'what', 'n', 'p50 ms', 'p99 ms'];
  const cells = results.rows.map((r) => [r.section, r.what, String(r.n), r.p50.toFixed(2), r.p99.toFixed(2)]);
  const out = [
    environmentLine(environment),
    '',
    ...formatTable(header, cells, 2),
    '',
    ...results.figures.map((f) => `${f.what}: ${f.value.toFixed(f.unit === 'ms' ? 1 : 2)} ${f.unit}`),
    '',
    ...results.verdicts.map((v) => `${v.met ? 'met   ' : 'MISSED'}  ${v.target}: ${v.measured}`),
  ];
  return `${out.join('\n')}\n`;
}

export function writeResults(dir: string, results: Results, environment: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  // The scale run's section (`--scale`, scale-report.ts) is its own: a default run keeps it.
  const path = join(dir, 'latest.json');
  const scale = existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { scale?: unknown }).scale : undefined;
  const json = {
    environment,
    rows: results.rows,
    figures: results.figures,
    verdicts: results.verdicts,
    ...(scale === undefined ? {} : { scale }),
  };
  writeFileSync(path, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(dir, 'chart.svg'), chart(results.rows, environment));
}

/** One panel per section: p50 as a bar, p99 as a tick, each panel on its own scale. */
function chart(rows: readonly Row[], environment: Record<string, string>): string {
  const sections = [...new Set(rows.map((r) => r.section))];
  const width = 980;
  const labelWidth = 430;
  const barArea = width - labelWidth - 140;
  const rowHeight = 18;
  const parts: string[] = [];
  let y = 40;
  for (const section of sections) {
    const mine = rows.filter((r) => r.section === section);
    const max = Math.max(...mine.map((r) => r.p99), ...mine.map((r) => r.p50)) || 1;
    parts.push(`<text x="10" y="${y}" font-weight="bold">${escape(section)}</text>`);
    y += 8;
    for (const r of mine) {
      const w = Math.max(1, (r.p50 / max) * barArea);
      const tick = labelWidth + (r.p99 / max) * barArea;
      const colour = colourOf(r.what);
      parts.push(
        `<text x="10" y="${y + 13}">${escape(r.what)}</text>`,
        `<rect x="${labelWidth}" y="${y + 3}" width="${w.toFixed(1)}" height="12" fill="${colour}"/>`,
        `<line x1="${tick.toFixed(1)}" y1="${y + 1}" x2="${tick.toFixed(1)}" y2="${y + 17}" stroke="#333"/>`,
        `<text x="${(labelWidth + Math.max(w, tick - labelWidth) + 6).toFixed(1)}" y="${y + 13}">${r.p50.toFixed(2)} / ${r.p99.toFixed(2)}</text>`,
      );
      y += rowHeight;
    }
    y += 22;
  }
  return svgDocument(width, y, `lanplug bench: p50 bar, p99 tick, ms (${machineLine(environment)})`, parts);
}

/** The machine, kernel and engine a chart was measured on, for its title. */
export function machineLine(environment: Record<string, string>): string {
  return `${environment['machine'] ?? ''}; kernel ${environment['kernel'] ?? ''}; ${environment['docker'] ?? ''}`;
}

/** A white SVG page with `title` on top and `parts` (already escaped) below it. */
export function svgDocument(width: number, height: number, title: string, parts: readonly string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="13">${escape(title)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

function colourOf(what: string): string {
  if (what.includes('built-in')) return '#7f8c8d';
  if (what.includes('reference')) return '#c0392b';
  return '#2874a6';
}

export function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
