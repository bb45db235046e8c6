/**
 * `bash scripts/dashboard-snapshot`: the Grafana dashboard
 * (docs/grafana/lanplug-dashboard.json) drawn from a lab run, for the docs,
 * where Grafana itself is not at hand (Debian packages no Grafana, and the
 * lab has no internet). About two minutes of a small workload on one lab
 * LAN — attach/detach cycles over the driver API, containers kept, DHCP
 * leases held while the server stops and comes back, attaches refused
 * because a LAN device holds the address — with the daemon's /metrics
 * scraped every SCRAPE_MS; then each panel's queries evaluated over those
 * scrapes (test/support/promql.ts, the part of PromQL the dashboard's test
 * holds it to) and drawn as the bench draws its charts, into
 * docs/images/dashboard-lab.svg. Not part of `npm test`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { unixHttp } from '../../src/api/unix-http';
import { createDockerHost } from '../lab/docker-host';
import { createLan } from '../lab/lan';
import { startLanplug } from '../lab/lanplug';
import { dhcpNetworkArgs, startDhcpServer } from '../lab/dhcp-server';
import { evaluate, legendOf, parseExposition, parseQuery, type Scrape } from '../support/promql';
import { repoRoot } from '../support/repo';
import { closeAgents, DriverClient } from './driver-api';
import { escape, svgDocument } from './report';
import { sleep } from './stats';

const SCRAPE_MS = 2000;
/** Grafana's $__rate_interval for that scrape interval: four scrapes. */
const RATE_INTERVAL_S = (4 * SCRAPE_MS) / 1000;

interface Panel {
  title: string;
  fieldConfig: { defaults: { unit: string } };
  targets: { refId: string; expr: string; legendFormat?: string }[];
}

/** What the workload did when, for the chart's marks. */
interface Mark {
  at: number;
  what: string;
}

function endpointId(prefix: string, i: number): string {
  return `${prefix}${i.toString(16).padStart(10, '0')}`.padEnd(64, '0');
}

async function main(): Promise<void> {
  const lan = createLan({ addresses: ['172.16.86.1/24'] });
  try {
    const host = await createDockerHost(lan);
    const plugin = await startLanplug(host, { sockets: ['lanplug-macvlan.sock', 'lanplug.sock'] });
    const server = await startDhcpServer(lan, {
      range: ['172.16.86.100', '172.16.86.150'],
      renewSeconds: 5,
      rebindSeconds: 10,
    });
    host.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.86.0/24',
      '--ip-range=172.16.86.0/25',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      'office',
    ]);
    host.dockerOk(dhcpNetworkArgs('leased'));
    const idOf = (name: string): string => host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', name]).trim();
    const driver = join(plugin.pluginDir, 'lanplug-macvlan.sock');
    const office = new DriverClient(driver, idOf('office'));
    // A device of the LAN's own on an address the workload will ask for.
    lan.addLanHost('squat', '172.16.86.20/24');

    const started = Date.now();
    const marks: Mark[] = [];
    const mark = (what: string): void => {
      marks.push({ at: Date.now() - started, what });
    };
    const scrapes: Scrape[] = [];
    let scraping = true;
    const scraper = (async () => {
      while (scraping) {
        const page = await unixHttp(join(plugin.stateDir, 'control.sock'), 'GET', '/metrics');
        scrapes.push({ at: Date.now() - started, samples: parseExposition(page.body) });
        await sleep(SCRAPE_MS);
      }
    })();
    // In the background all along: a container started and removed every half second.
    let cycling = true;
    const cycler = (async () => {
      for (let i = 0; cycling; i++) {
        const id = endpointId('c1', i);
        await office.attach(id, `172.16.86.${30 + (i % 30)}/24`);
        await office.detach(id);
        await sleep(500);
      }
    })();

    await sleep(10_000);
    mark('20 containers start');
    const kept: string[] = [];
    for (let i = 0; i < 20; i++) {
      const id = endpointId('a1', i);
      await office.attach(id, `172.16.86.${70 + i}/24`);
      kept.push(id);
      await sleep(250);
    }
    await sleep(5_000);
    mark('4 DHCP containers (docker run)');
    // Real containers: renewals run in the container's namespace, on the link dockerd moved there.
    for (let i = 0; i < 4; i++)
      host.dockerOk([
        'run',
        '-d',
        '--network',
        'leased',
        '--mac-address',
        `02:d1:00:00:00:0${i}`,
        '--name',
        `dhcp${i}`,
        'alpine:latest',
        'sleep',
        '3600',
      ]);
    await sleep(10_000);
    mark('3 attaches on an address a LAN device holds');
    for (let i = 0; i < 3; i++) {
      await office.attach(endpointId('b1', i), '172.16.86.20/24').then(
        () => {
          throw new Error('dashboard-snapshot: an attach on the squatted address succeeded');
        },
        () => undefined,
      );
      await sleep(1000);
    }
    await sleep(5_000);
    mark('DHCP server stopped');
    server.stop();
    await sleep(25_000);
    mark('DHCP server back');
    await server.start();
    await sleep(15_000);
    mark('containers removed');
    for (const id of kept) await office.detach(id);
    host.dockerOk(['rm', '-f', 'dhcp0', 'dhcp1', 'dhcp2', 'dhcp3']);
    await sleep(10_000);
    cycling = false;
    await cycler;
    scraping = false;
    await scraper;
    closeAgents();
    server.stop();
    const leaseLines = plugin
      .stderr()
      .split('\n')
      .filter((l) => /dhcp|lease/i.test(l));
    process.stderr.write(`${leaseLines.slice(-12).join('\n')}\n`);
    await plugin.stop();

    const dashboard = JSON.parse(
      readFileSync(join(repoRoot(), 'docs', 'grafana', 'lanplug-dashboard.json'), 'utf8'),
    ) as { panels: Panel[] };
    const out = join(repoRoot(), 'docs', 'images', 'dashboard-lab.svg');
    writeFileSync(out, drawDashboard(dashboard.panels, scrapes, marks));
    process.stdout.write(`${scrapes.length} scrapes over ${(scrapes.at(-1)?.at ?? 0) / 1000} s; wrote ${out}\n`);
  } finally {
    lan.destroy();
  }
}

const COLOURS = ['#2874a6', '#c0392b', '#27ae60', '#8e44ad', '#d35400', '#16a085', '#7f8c8d', '#f1c40f'];

/** A value in a panel's unit, as Grafana would label it. */
function formatValue(value: number, unit: string): string {
  if (unit === 's') return value >= 1 ? `${value.toFixed(2)} s` : `${(value * 1000).toFixed(value < 0.01 ? 2 : 1)} ms`;
  if (unit === 'bytes') return `${(value / 1e6).toFixed(0)} MB`;
  if (unit === 'reqps') return `${value.toFixed(1)}/s`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/** The panels two a row, as the dashboard lays them out: each query's series over the run, the workload's marks. */
function drawDashboard(panels: readonly Panel[], scrapes: readonly Scrape[], marks: readonly Mark[]): string {
  const panelW = 490;
  const panelH = 250;
  const plot = { left: 62, right: 12, top: 28, bottom: 78 };
  const w = panelW - plot.left - plot.right;
  const h = panelH - plot.top - plot.bottom;
  const endMs = Math.max(1, ...scrapes.map((s) => s.at));
  const parts: string[] = [];
  panels.forEach((panel, i) => {
    const x0 = 10 + (i % 2) * panelW;
    const y0 = 34 + Math.floor(i / 2) * panelH;
    const unit = panel.fieldConfig.defaults.unit;
    const series = new Map<string, { x: number; y: number }[]>();
    for (const t of panel.targets) {
      const expr = parseQuery(t.expr, RATE_INTERVAL_S);
      scrapes.forEach((scrape, k) => {
        for (const s of evaluate(expr, scrapes, k)) {
          const name = legendOf(t.legendFormat, s.labels);
          const points = series.get(name) ?? [];
          points.push({ x: scrape.at, y: s.value });
          series.set(name, points);
        }
      });
    }
    const hi = Math.max(0, ...[...series.values()].flat().map((p) => p.y)) || 1;
    const px = (x: number): number => x0 + plot.left + (x / endMs) * w;
    const py = (y: number): number => y0 + plot.top + h - (y / hi) * h;
    parts.push(
      `<text x="${x0}" y="${y0 + 16}" font-weight="bold">${escape(panel.title)}</text>`,
      `<rect x="${x0 + plot.left}" y="${y0 + plot.top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`,
      `<text x="${x0 + plot.left - 4}" y="${y0 + plot.top + 8}" font-size="9" text-anchor="end">${escape(formatValue(hi, unit))}</text>`,
      `<text x="${x0 + plot.left - 4}" y="${y0 + plot.top + h}" font-size="9" text-anchor="end">0</text>`,
      `<text x="${x0 + plot.left + w}" y="${y0 + plot.top + h + 12}" font-size="9" text-anchor="end">${(endMs / 1000).toFixed(0)} s</text>`,
    );
    for (const m of marks)
      parts.push(
        `<line x1="${px(m.at).toFixed(1)}" y1="${y0 + plot.top}" x2="${px(m.at).toFixed(1)}" y2="${y0 + plot.top + h}" stroke="#bbb" stroke-dasharray="3 3"/>`,
      );
    if (series.size === 0)
      parts.push(
        `<text x="${x0 + plot.left + w / 2}" y="${y0 + plot.top + h / 2}" text-anchor="middle" fill="#999">no data in this run</text>`,
      );
    [...series.entries()].forEach(([name, points], k) => {
      const colour = COLOURS[k % COLOURS.length] ?? '#333';
      // A series absent from a scrape (no requests of that method in the window) is a gap, as in Grafana.
      let path = '';
      let last = -1;
      for (const p of points) {
        const index = scrapes.findIndex((s) => s.at === p.x);
        path += `${index === last + 1 && path !== '' ? 'L' : 'M'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)} `;
        last = index;
      }
      parts.push(`<path d="${path.trim()}" fill="none" stroke="${colour}" stroke-width="1.3"/>`);
      const lx = x0 + plot.left + (k % 2) * (w / 2);
      const ly = y0 + plot.top + h + 26 + Math.floor(k / 2) * 13;
      if (k < 8)
        parts.push(
          `<rect x="${lx}" y="${ly - 8}" width="10" height="3" fill="${colour}"/>`,
          `<text x="${lx + 14}" y="${ly}" font-size="10">${escape(name.length > 40 ? `${name.slice(0, 39)}…` : name)}</text>`,
        );
    });
  });
  const rows = Math.ceil(panels.length / 2);
  const markLines = marks.map((m) => `${(m.at / 1000).toFixed(0)} s: ${m.what}`).join('; ');
  parts.push(`<text x="10" y="${44 + rows * panelH}" font-size="10">${escape(`dashed lines: ${markLines}`)}</text>`);
  return svgDocument(
    2 * panelW + 20,
    56 + rows * panelH,
    `lanplug's Grafana dashboard (docs/grafana/lanplug-dashboard.json), its queries over ${scrapes.length} scrapes of a lab run every ${SCRAPE_MS / 1000} s — drawn from the scrapes, not a Grafana screenshot`,
    parts,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(
    `dashboard-snapshot failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
