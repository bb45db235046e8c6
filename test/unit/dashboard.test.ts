/**
 * The Grafana dashboard (docs/grafana/lanplug-dashboard.json) cannot rot:
 * its every query names only metrics the daemon's real registry exports
 * (metrics/registry.ts and observe/store-metrics.ts over a real store),
 * reads in the part of PromQL the lab rendering draws (test/support/
 * promql.ts), gives series over two real scrapes, and its legends name
 * labels those series have. Its data source is an input, as Grafana's
 * import asks for one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  countConflict,
  countEtcdRequest,
  countProbe,
  countRenewalFailure,
  countRequest,
  registry,
} from '../../src/metrics/registry';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { registerStoreMetrics } from '../../src/observe/store-metrics';
import { SqliteStore } from '../../src/state/sqlite';
import { evaluate, legendOf, metricNames, parseExposition, parseQuery, type Scrape } from '../support/promql';
import { repoRoot } from '../support/repo';
import { putNetworkWithThreeEndpoints } from '../support/store-fixtures';

interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets: Target[];
}
interface Dashboard {
  __inputs: { name: string; type: string; pluginId: string }[];
  uid: string;
  title: string;
  panels: Panel[];
}

const DASHBOARD = join(repoRoot(), 'docs', 'grafana', 'lanplug-dashboard.json');
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const RATE_INTERVAL_S = 60;

/** A static network with three endpoints, and a DHCP lease: every store gauge has a series. */
function fillStore(store: SqliteStore): void {
  putNetworkWithThreeEndpoints(store, 'a'.repeat(64));
  store.putLease(
    {
      networkId: 'c'.repeat(64),
      endpointId: 'd'.repeat(64),
      identity: {
        mac: '02:00:00:00:00:09',
        clientId: '0102000000000009',
        duid: '00030001020000000009',
        iaid: 1,
        stable: true,
        hostname: 'web',
        broadcast: true,
      },
      leases: [
        {
          family: 4,
          address: parsePrefix('172.16.86.50/24'),
          router: parseAddress('172.16.86.1'),
          dns: [],
          serverId: parseAddress('172.16.86.1'),
          serverMac: '02:00:00:00:00:01',
          serverDuid: null,
          leaseSeconds: 3600,
          renewSeconds: 1800,
          rebindSeconds: 3150,
          boundAt: Date.now(),
          state: 'bound',
        },
      ],
      dockerAddresses: [parseAddress('172.16.86.50')],
      sandboxKey: null,
      renewedAt: null,
      failures: 0,
      lastError: null,
    },
    true,
  );
}

/** What each of the dashboard's counters and histograms needs to show: one of each. */
function act(): void {
  for (const method of [
    'NetworkDriver.CreateEndpoint',
    'NetworkDriver.Join',
    'NetworkDriver.Leave',
    'NetworkDriver.DeleteEndpoint',
  ])
    countRequest(method, 'ok', 0.004);
  countRequest('NetworkDriver.Join', 'error', 0.2);
  countProbe(4, 'in_use');
  countConflict('probe');
  countRenewalFailure(4);
  countEtcdRequest('ok', 0.002);
}

/** Two scrapes of the real registry a second apart on the clock the queries see, the counters moved between. */
async function twoScrapes(): Promise<{ scrapes: Scrape[]; exported: Set<string> }> {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-dashboard-'));
  const store = SqliteStore.open(dir);
  const unregister = registerStoreMetrics(registry, store);
  try {
    fillStore(store);
    act();
    const first = await registry.metrics();
    act();
    const second = await registry.metrics();
    // Every name a query may read: each family's samples (a histogram's _bucket, _sum and _count included).
    const exported = new Set<string>();
    for (const m of second.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      const [name = '', type = ''] = [m[1], m[2]];
      const suffixes =
        type === 'histogram' ? ['_bucket', '_sum', '_count'] : type === 'summary' ? ['_sum', '_count', ''] : [''];
      for (const s of suffixes) exported.add(`${name}${s}`);
    }
    return {
      scrapes: [
        { at: 0, samples: parseExposition(first) },
        { at: 1000, samples: parseExposition(second) },
      ],
      exported,
    };
  } finally {
    unregister();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const targets = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, ...t })));

test('the dashboard asks for its Prometheus as an input on import, and every panel and query uses it', () => {
  assert.deepEqual(
    dashboard.__inputs.map((i) => [i.name, i.type, i.pluginId]),
    [['DS_PROMETHEUS', 'datasource', 'prometheus']],
  );
  assert.equal(dashboard.uid, 'lanplug');
  for (const p of dashboard.panels) assert.equal(p.datasource?.uid, '${DS_PROMETHEUS}', p.title);
  for (const t of targets) assert.equal(t.datasource?.uid, '${DS_PROMETHEUS}', `${t.panel} ${t.refId}`);
  const ids = dashboard.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  assert.ok(targets.length >= 10, 'the panels have queries');
});

test("every query of the dashboard names only metrics the daemon's registry exports, and gives series whose labels its legend names", async () => {
  const { scrapes, exported } = await twoScrapes();
  assert.ok(exported.has('lanplug_request_duration_seconds_bucket'), 'the scrape is the real registry');
  const panelsWithData = new Set<string>();
  for (const t of targets) {
    const where = `${t.panel} ${t.refId}: ${t.expr}`;
    const expr = parseQuery(t.expr, RATE_INTERVAL_S);
    for (const name of metricNames(expr)) assert.ok(exported.has(name), `${where}: ${name} is not exported`);
    const series = evaluate(expr, scrapes, 1);
    assert.ok(series.length > 0, `${where}: no series`);
    for (const s of series) {
      for (const [, label] of (t.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g))
        assert.ok(
          label !== undefined && s.labels[label] !== undefined,
          `${where}: legend's ${label} is not a label of ${legendOf(undefined, s.labels)}`,
        );
    }
    panelsWithData.add(t.panel);
  }
  assert.equal(panelsWithData.size, dashboard.panels.length);
});

test('the queries read what was counted: attach p50 between 2.5 and 5 ms, a probe conflict, 3 of 254 addresses used, a bound lease', async () => {
  const { scrapes } = await twoScrapes();
  const value = (panel: string, refId: string, labels: Record<string, string>): number | undefined => {
    const t = targets.find((x) => x.panel === panel && x.refId === refId);
    assert.ok(t !== undefined, `${panel} ${refId}`);
    return evaluate(parseQuery(t.expr, RATE_INTERVAL_S), scrapes, 1).find((s) =>
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    )?.value;
  };
  const p50 = value('Attach latency (p50, p99)', 'A', { method: 'NetworkDriver.CreateEndpoint' }) ?? NaN;
  assert.ok(p50 > 0.0025 && p50 <= 0.005, `p50 ${p50}`);
  assert.equal(value('Conflicts by kind', 'A', { kind: 'probe' }), 60, 'one more in 1 s is 60 in a minute');
  assert.equal(value('Pool size and used', 'A', { subnet: '172.16.86.0/24' }), 254);
  assert.equal(value('Pool size and used', 'B', { subnet: '172.16.86.0/24' }), 3);
  assert.equal(value('DHCP leases by state', 'A', { family: '4', state: 'bound' }), 1);
});

test('a query outside the part of PromQL the checks read is refused by name', () => {
  assert.throws(() => parseQuery('avg_over_time(lanplug_endpoints[5m])', 60), /avg_over_time\(\) is not in the part/);
  assert.throws(() => parseQuery('lanplug_endpoints[5m]', 60), /a range outside rate/);
});
