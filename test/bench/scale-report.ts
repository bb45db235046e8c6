/**
 * The scale run's outputs: its tables and verdicts on stdout, a `scale`
 * section in bench/results/latest.json (the rest of the file, the default
 * bench's, is kept), and bench/results/scale.svg: each figure against the
 * number of endpoints alive on a log axis, one line per number of networks.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { environmentLine, escape, formatTable, machineLine, svgDocument } from './report';
import type { ScaleCurves, ScalePoint } from './scale';
import type { Results, Row } from './stats';

const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '-');
const f0 = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : '-');

/** The targets of issue 34 that this run can judge, at the top level of each network count. */
export function judgeScale(results: Results, curves: ScaleCurves): void {
  const top = Math.max(...curves.points.map((p) => p.alive));
  for (const p of curves.points.filter((q) => q.alive === top)) {
    const on = `${p.networks} network${p.networks === 1 ? '' : 's'}`;
    results.judge(
      `attach p50 ≤ 1 ms and p99 ≤ 3 ms with ${top} endpoints alive, ${on}`,
      `p50 ${f2(p.attach.p50)} ms, p99 ${f2(p.attach.p99)} ms`,
      p.attach.p50 <= 1 && p.attach.p99 <= 3,
    );
    results.judge(`daemon RSS ≤ 150 MB with ${top} endpoints alive, ${on}`, `${p.rssMB.toFixed(1)} MB`, p.rssMB <= 150);
  }
  const tenHosts = curves.fleet.find((p) => p.hosts === 10 && p.etcdMembers === 3);
  if (tenHosts !== undefined)
    results.judge(
      '10 hosts on etcd ≥ 200 allocations per second with 0 duplicates',
      `${tenHosts.perSecond.toFixed(0)} /s, ${tenHosts.duplicates} duplicates`,
      tenHosts.perSecond >= 200 && tenHosts.duplicates === 0,
    );
  const reference = curves.dhcp.find((d) => d.kind === 'reference');
  const lanplug = curves.dhcp.find((d) => d.kind === 'lanplug');
  if (reference !== undefined && lanplug !== undefined)
    results.judge(
      "lanplug's DHCPv4 acquire no slower than the CNI reference's dhcp plugin (ADD p50, and 100 at once: wall)",
      `ADD ${f2(lanplug.add.p50)} ms against ${f2(reference.add.p50)} ms; at once ${f0(lanplug.burst.wallMs)} ms (${lanplug.burst.failed} failed) against ${f0(reference.burst.wallMs)} ms (${reference.burst.failed} failed)`,
      lanplug.add.p50 <= reference.add.p50 &&
        lanplug.burst.wallMs <= reference.burst.wallMs &&
        lanplug.burst.failed <= reference.burst.failed,
    );
  const duplicates = curves.fleet.reduce((sum, p) => sum + p.duplicates, 0);
  if (curves.fleet.length > 0)
    results.judge('no address given twice in the fleet (every round)', `${duplicates} duplicates`, duplicates === 0);
  for (const s of curves.starts)
    results.judge(
      `start with ${s.rows} rows ≤ 2 s to the first answer, ${s.networks} network${s.networks === 1 ? '' : 's'}`,
      `${f0(s.firstAnswerMs)} ms (first attach answered at ${f0(s.firstAttachMs)} ms)`,
      s.firstAnswerMs <= 2000,
    );
}

export function printScale(curves: ScaleCurves, results: Results, environment: Record<string, string>): string {
  const cost = formatTable(
    [
      'networks',
      'alive',
      'attach p50',
      'attach p99',
      'detach p50',
      'detach p99',
      'RSS MB',
      'fill /s',
      'idle CPU ms/2 s',
    ],
    curves.points.map((p) => [
      String(p.networks),
      String(p.alive),
      f2(p.attach.p50),
      f2(p.attach.p99),
      f2(p.detach.p50),
      f2(p.detach.p99),
      p.rssMB.toFixed(1),
      f0(p.fillPerSecond),
      f0(p.idleCpuMsPer2s),
    ]),
    0,
  );
  const where = formatTable(
    [
      'networks',
      'alive',
      'attach p99',
      'detach p99',
      'attach p99, no detach between',
      'loop delay p99',
      'loop delay max',
      'idle p99',
      'idle max',
      'GCs',
      'GC max',
      'GCs > 1 ms',
      'kernel create p50',
      'kernel create p99',
      'slowest 1% attach',
      'daemon on CPU',
      'daemon runnable',
      'bench runnable',
      'slowest 1% detach',
      'daemon on CPU',
      'daemon runnable',
      'bench runnable',
    ],
    curves.points.map((p) => [
      String(p.networks),
      String(p.alive),
      f2(p.attach.p99),
      f2(p.detach.p99),
      f2(p.attachAlone.p99),
      f2(p.loopDelay.p99),
      f2(p.loopDelay.max),
      f2(p.floorDelay.p99),
      f2(p.floorDelay.max),
      String(p.gc.count),
      f2(p.gc.maxMs),
      String(p.gc.over1ms),
      f2(p.kernel.createP50),
      f2(p.kernel.createP99),
      f2(p.tail.attach.ms),
      f2(p.tail.attach.daemonOnCpuMs),
      f2(p.tail.attach.daemonRunnableMs),
      f2(p.tail.attach.benchRunnableMs),
      f2(p.tail.detach.ms),
      f2(p.tail.detach.daemonOnCpuMs),
      f2(p.tail.detach.daemonRunnableMs),
      f2(p.tail.detach.benchRunnableMs),
    ]),
    0,
  );
  const starts = formatTable(
    ['networks', 'rows', 'spawn to first answer ms', 'to first attach ms', 'lanplug gc ms'],
    curves.starts.map((s) => [
      String(s.networks),
      String(s.rows),
      f0(s.firstAnswerMs),
      f0(s.firstAttachMs),
      f0(s.gcMs),
    ]),
    0,
  );
  const fleet = formatTable(
    [
      'hosts',
      'etcd members up',
      'allocations',
      'per second',
      'p50 ms',
      'p99 ms',
      'duplicates',
      'failed',
      'etcd trips per allocation',
      'etcd trip ms (mean)',
    ],
    curves.fleet.map((p) => [
      String(p.hosts),
      `${p.etcdMembers} of 3`,
      String(p.allocations),
      f0(p.perSecond),
      f2(p.p50),
      f2(p.p99),
      String(p.duplicates),
      String(p.failed),
      f2(p.etcdTripsPerAllocation),
      f2(p.etcdTripMs),
    ]),
    0,
  );
  const dhcp = formatTable(
    ['plugin', 'ADD p50', 'ADD p99', 'DEL p50', 'DEL p99', 'at once', 'each p50', 'each p99', 'wall ms', 'failed'],
    curves.dhcp.map((d) => [
      d.kind,
      f2(d.add.p50),
      f2(d.add.p99),
      f2(d.del.p50),
      f2(d.del.p99),
      String(d.burst.n + d.burst.failed),
      f2(d.burst.p50),
      f2(d.burst.p99),
      f0(d.burst.wallMs),
      String(d.burst.failed),
    ]),
    1,
  );
  const renewal = formatTable(
    [
      'plugin',
      'held',
      'renewed',
      'failed',
      'T1 s',
      'renewals /s',
      'T1 to ACK p50',
      'T1 to ACK p99',
      'REQUEST to ACK p50',
      'REQUEST to ACK p99',
      'daemon CPU ms',
      'over s',
    ],
    curves.dhcp.map((d) => [
      d.kind,
      String(d.renewal.held),
      String(d.renewal.renewed),
      String(d.renewal.failed),
      String(d.renewal.t1Seconds),
      f2(d.renewal.perSecond),
      f2(d.renewal.t1ToAck.p50),
      f2(d.renewal.t1ToAck.p99),
      f2(d.renewal.requestToAck.p50),
      f2(d.renewal.requestToAck.p99),
      f0(d.renewal.daemonCpuMs),
      (d.renewal.holdMs / 1000).toFixed(0),
    ]),
    1,
  );
  const vlan = formatTable(
    [
      'parent',
      'networks',
      'alive',
      'attach p50',
      'attach p99',
      'detach p50',
      'detach p99',
      'RSS MB',
      'kernel create p50',
      'idle CPU ms/2 s',
    ],
    curves.vlan.map((p) => [
      p.parent,
      String(p.networks),
      String(p.alive),
      f2(p.attach.p50),
      f2(p.attach.p99),
      f2(p.detach.p50),
      f2(p.detach.p99),
      p.rssMB.toFixed(1),
      f2(p.kernel.createP50),
      f0(p.idleCpuMsPer2s),
    ]),
    1,
  );
  const dhcpRows = results.rows.filter((r) => r.section === 'DHCP (dnsmasq on the LAN)');
  const out = [
    environmentLine(environment),
    '',
    'attach and detach (ms) and the daemon at each number of endpoints alive (idle CPU: the daemon asked nothing',
    'for 6 s, its CPU time per 2 s, the period of its LAN sync)',
    ...cost,
    '',
    "where the p99 goes (ms): the daemon's event loop delay over the same cycles (beyond its 1 ms tick),",
    "an idle node process's over the same window (idle: the machine's floor), the daemon's V8 GC pauses,",
    'the kernel creating one macvlan beside the endpoints alive (the bench itself, 50 times), and the slowest',
    "1% of the calls beside the time the daemon's and the bench's main threads waited for a CPU meanwhile",
    '(/proc/PID/schedstat run_delay; means over those calls)',
    ...where,
    '',
    'the daemon started again on its rows, and lanplug gc on them',
    ...starts,
    '',
    "DHCP beside the reference: CNI ADD/DEL exec'd as a runtime does (ms), one dnsmasq",
    ...dhcp,
    '',
    "DHCP renewal beside the reference: the burst's leases held past their T1, each renewal as the LAN saw it",
    "(ms; T1 to ACK: the lease's T1 after its ACK, to the renewal's ACK), and the holding daemon's CPU meanwhile",
    ...renewal,
    '',
    ...dhcpRows.map((r) => `lanplug driver API: ${r.what}: p50 ${f2(r.p50)} ms, p99 ${f2(r.p99)} ms (n ${r.n})`),
    '',
    'a fleet on etcd: RequestAddress from one shared pool, every host at once',
    ...fleet,
    '',
    'VLAN parents: a veth parent and a VLAN on a veth (made by lanplug) in the full-kernel VM, under emulation (TCG):',
    'only the rows beside each other compare (ms)',
    ...(curves.vlan.length > 0 ? vlan : [`not run: ${curves.vlanNotRun ?? 'not asked for'}`.slice(0, 400)]),
    '',
    ...results.figures
      .filter((f) => f.what.includes('per endpoint'))
      .map((f) => `${f.what}: ${f.value.toFixed(2)} ${f.unit}`),
    '',
    ...results.verdicts.map((v) => `${v.met ? 'met   ' : 'MISSED'}  ${v.target}: ${v.measured}`),
  ];
  return `${out.join('\n')}\n`;
}

/** Adds the scale run to latest.json (the default bench's rows stay) and draws scale.svg. */
export function writeScale(
  dir: string,
  curves: ScaleCurves,
  results: Results,
  environment: Record<string, string>,
): void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'latest.json');
  const existing = existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>) : {};
  const previousRows = (existing['rows'] ?? []) as Row[];
  existing['scale'] = {
    environment,
    points: curves.points,
    starts: curves.starts,
    fleet: curves.fleet,
    dhcp: curves.dhcp,
    vlan: curves.vlan,
    dhcpRows: results.rows.filter((r) => r.section.startsWith('DHCP')),
    figures: results.figures,
    verdicts: results.verdicts,
  };
  writeFileSync(path, `${JSON.stringify(existing, null, 2)}\n`);
  writeFileSync(join(dir, 'scale.svg'), scaleChart(curves, previousRows, environment));
}

const COLOURS = ['#2874a6', '#d68910', '#7d3c98', '#1e8449', '#922b21'];

interface Panel {
  title: string;
  unit: string;
  value: (p: ScalePoint) => number;
  /** Horizontal lines for a peer's figure at one point, where the default bench measured one. */
  peers?: { label: string; value: number }[];
  goal?: number;
}

/** One panel per figure: x = endpoints alive (log; 0 at the left edge), y linear from 0. */
function scaleChart(curves: ScaleCurves, rows: readonly Row[], environment: Record<string, string>): string {
  const peer = (what: string): number | undefined => rows.find((r) => r.what === what)?.p50;
  const referenceAdd = peer('reference CNI macvlan + host-local ADD (exec)');
  const panels: Panel[] = [
    {
      title: 'attach p50',
      unit: 'ms',
      value: (p) => p.attach.p50,
      goal: 1,
      ...(referenceAdd === undefined
        ? {}
        : { peers: [{ label: 'reference CNI ADD p50, 0 alive', value: referenceAdd }] }),
    },
    { title: 'attach p99', unit: 'ms', value: (p) => p.attach.p99, goal: 3 },
    { title: 'detach p99', unit: 'ms', value: (p) => p.detach.p99, goal: 3 },
    { title: 'event loop delay p99 in the daemon over the cycles', unit: 'ms', value: (p) => p.loopDelay.p99 },
    { title: 'daemon RSS', unit: 'MB', value: (p) => p.rssMB, goal: 150 },
  ];
  const networks = [...new Set(curves.points.map((p) => p.networks))];
  const alive = [...new Set(curves.points.map((p) => p.alive))].sort((a, b) => a - b);
  const positive = alive.filter((a) => a > 0);
  const lo = Math.log10(Math.min(...positive, 10)) - 0.5;
  const hi = Math.log10(Math.max(...positive, 10));
  const width = 980;
  const plotLeft = 70;
  const plotWidth = 640;
  const plotHeight = 150;
  const xOf = (n: number): number => plotLeft + ((Math.log10(n > 0 ? n : 10 ** lo) - lo) / (hi - lo || 1)) * plotWidth;
  const parts: string[] = [];
  let y = 40;
  networks.forEach((n, i) =>
    parts.push(
      `<rect x="${plotLeft + plotWidth + 30}" y="${y + i * 18}" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/>`,
      `<text x="${plotLeft + plotWidth + 48}" y="${y + i * 18 + 11}">${n} network${n === 1 ? '' : 's'}</text>`,
    ),
  );
  for (const panel of panels) {
    const values = curves.points.map(panel.value).filter(Number.isFinite);
    const max = Math.max(...values, panel.goal ?? 0, ...(panel.peers ?? []).map((p) => p.value)) * 1.1 || 1;
    const top = y + 20;
    const yOf = (v: number): number => top + plotHeight - (v / max) * plotHeight;
    parts.push(
      `<text x="10" y="${y + 12}" font-weight="bold">${escape(`${panel.title} (${panel.unit})`)}</text>`,
      `<line x1="${plotLeft}" y1="${top + plotHeight}" x2="${plotLeft + plotWidth}" y2="${top + plotHeight}" stroke="#333"/>`,
      `<line x1="${plotLeft}" y1="${top}" x2="${plotLeft}" y2="${top + plotHeight}" stroke="#333"/>`,
      `<text x="${plotLeft - 6}" y="${top + 4}" text-anchor="end">${max.toFixed(1)}</text>`,
      `<text x="${plotLeft - 6}" y="${top + plotHeight + 4}" text-anchor="end">0</text>`,
    );
    for (const a of alive)
      parts.push(`<text x="${xOf(a).toFixed(1)}" y="${top + plotHeight + 16}" text-anchor="middle">${a}</text>`);
    if (panel.goal !== undefined)
      parts.push(
        `<line x1="${plotLeft}" y1="${yOf(panel.goal).toFixed(1)}" x2="${plotLeft + plotWidth}" y2="${yOf(panel.goal).toFixed(1)}" stroke="#27ae60" stroke-dasharray="6 4"/>`,
        `<text x="${plotLeft + plotWidth - 4}" y="${(yOf(panel.goal) - 4).toFixed(1)}" text-anchor="end" fill="#27ae60">goal ${panel.goal}</text>`,
      );
    for (const p of panel.peers ?? [])
      parts.push(
        `<line x1="${plotLeft}" y1="${yOf(p.value).toFixed(1)}" x2="${plotLeft + plotWidth}" y2="${yOf(p.value).toFixed(1)}" stroke="#c0392b" stroke-dasharray="2 3"/>`,
        `<text x="${plotLeft + 4}" y="${(yOf(p.value) - 4).toFixed(1)}" fill="#c0392b">${escape(`${p.label}: ${p.value.toFixed(2)}`)}</text>`,
      );
    networks.forEach((n, i) => {
      const mine = curves.points.filter((p) => p.networks === n).sort((a, b) => a.alive - b.alive);
      const colour = COLOURS[i % COLOURS.length] ?? '#333';
      const path = mine.map((p) => `${xOf(p.alive).toFixed(1)},${yOf(panel.value(p)).toFixed(1)}`).join(' ');
      parts.push(`<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2"/>`);
      for (const p of mine)
        parts.push(
          `<circle cx="${xOf(p.alive).toFixed(1)}" cy="${yOf(panel.value(p)).toFixed(1)}" r="3" fill="${colour}"/>`,
        );
    });
    y = top + plotHeight + 40;
  }
  return svgDocument(
    width,
    y,
    `lanplug at scale: against endpoints alive, log axis (${machineLine(environment)})`,
    parts,
  );
}
