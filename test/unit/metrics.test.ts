/**
 * The Prometheus metrics (metrics/registry.ts, observe/store-metrics.ts):
 * names by Prometheus's conventions, counters that move with what is
 * counted, the store's gauges read from a real store, GET /metrics on the
 * control socket's server, and --metrics-listen's checks. The DHCP e2e lab
 * reads the same page after real docker runs (test/e2e/dhcp.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlEndpoint, controlSocketPath } from '../../src/api/control';
import { PluginServer } from '../../src/api/docker/server';
import { MetricsListener, parseListenAddress } from '../../src/api/metrics-listener';
import { unixHttp } from '../../src/api/unix-http';
import { silentLogger } from '../../src/log';
import { countRequest, registry } from '../../src/metrics/registry';
import { parsePrefix } from '../../src/net/address';
import { registerStoreMetrics } from '../../src/observe/store-metrics';
import { SqliteStore } from '../../src/state/sqlite';
import { putNetworkWithThreeEndpoints } from '../support/store-fixtures';

/** The value of one sample line of an exposition, or null when absent. */
function sample(text: string, name: string, labels: string): number | null {
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}{${labels}} `) || (labels === '' && l.startsWith(`${name} `)));
  return line === undefined ? null : Number(line.split(' ').pop());
}

function withStore(fn: (store: SqliteStore) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-metrics-'));
  const store = SqliteStore.open(dir);
  return fn(store).finally(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
}

test("every lanplug metric is named by Prometheus's conventions: lanplug_ first, counters _total, durations _seconds, a HELP and a TYPE each", async () => {
  await withStore(async (store) => {
    const unregister = registerStoreMetrics(registry, store);
    try {
      countRequest('NetworkDriver.Join', 'ok', 0.004);
      const text = await registry.metrics();
      const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m): [string, string] => [m[1] ?? '', m[2] ?? '']);
      const ours = types.filter(([name]) => name.startsWith('lanplug_'));
      assert.deepEqual(ours.map(([name]) => name).sort(), [
        'lanplug_announcements_total',
        'lanplug_conflicts_total',
        'lanplug_endpoints',
        'lanplug_etcd_request_duration_seconds',
        'lanplug_etcd_requests_total',
        'lanplug_lan_sync_dumps_total',
        'lanplug_lease_renewal_failures_total',
        'lanplug_leases',
        'lanplug_pool_size_addresses',
        'lanplug_pool_used_addresses',
        'lanplug_probes_total',
        'lanplug_reconcile_actions_total',
        'lanplug_request_duration_seconds',
        'lanplug_requests_total',
      ]);
      for (const [name, type] of ours) {
        if (type === 'counter') assert.match(name, /_total$/, name);
        if (type === 'histogram') assert.match(name, /_seconds$/, name);
        assert.match(text, new RegExp(`^# HELP ${name} \\S`, 'm'), `${name} has help`);
      }
      // Node's own: memory, among prom-client's default metrics.
      assert.ok((sample(text, 'process_resident_memory_bytes', '') ?? 0) > 0, 'process memory is reported');
    } finally {
      unregister();
    }
  });
});

test('requests are counted by method and outcome, their latency observed in seconds', async () => {
  const before =
    sample(await registry.metrics(), 'lanplug_requests_total', 'method="NetworkDriver.Leave",outcome="ok"') ?? 0;
  countRequest('NetworkDriver.Leave', 'ok', 0.003);
  countRequest('NetworkDriver.Leave', 'ok', 0.2);
  countRequest('NetworkDriver.Leave', 'error', 0.001);
  const text = await registry.metrics();
  assert.equal(sample(text, 'lanplug_requests_total', 'method="NetworkDriver.Leave",outcome="ok"'), before + 2);
  assert.ok((sample(text, 'lanplug_requests_total', 'method="NetworkDriver.Leave",outcome="error"') ?? 0) >= 1);
  assert.ok(
    (sample(text, 'lanplug_request_duration_seconds_bucket', 'le="0.005",method="NetworkDriver.Leave"') ?? 0) >= 2,
  );
});

test("the store's gauges: a network's subnet size and the addresses its endpoints hold, endpoints per network, leases by state; gone once unregistered", async () => {
  await withStore(async (store) => {
    const networkId = 'a'.repeat(64);
    putNetworkWithThreeEndpoints(store, networkId);
    const unregister = registerStoreMetrics(registry, store);
    const labels = 'network="aaaaaaaaaaaa",subnet="172.16.86.0/24"';
    try {
      const text = await registry.metrics();
      assert.equal(sample(text, 'lanplug_pool_size_addresses', labels), 254);
      assert.equal(sample(text, 'lanplug_pool_used_addresses', labels), 3);
      assert.equal(sample(text, 'lanplug_endpoints', 'network="aaaaaaaaaaaa",driver="lanplug-macvlan"'), 3);
      store.deleteEndpoint(networkId, '4'.repeat(64));
      assert.equal(sample(await registry.metrics(), 'lanplug_pool_used_addresses', labels), 2, 'read at each scrape');
    } finally {
      unregister();
    }
    assert.doesNotMatch(await registry.metrics(), /lanplug_pool_used_addresses/);
  });
});

test('GET /metrics on the control socket answers the exposition; the plugin API stays POST', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-metrics-socket-'));
  const reject = (): Promise<never> => Promise.reject(new Error('not asked'));
  const server = await PluginServer.listen(
    dir,
    controlEndpoint({ gc: reject, sharedPools: reject, forget: reject }, () => ({}) as never, {
      listing: reject,
      health: reject,
      syncFailure: () => null,
    }),
    silentLogger,
  );
  try {
    // Where the daemon binds it is where every client (gc, ls, doctor, ...) asks: <stateDir>/control.sock.
    assert.equal(server.socketPath, join(dir, 'control.sock'));
    assert.equal(controlSocketPath(dir), server.socketPath);
    const page = await unixHttp(join(dir, 'control.sock'), 'GET', '/metrics');
    assert.equal(page.status, 200);
    assert.match(page.body, /^# TYPE lanplug_requests_total counter$/m);
    assert.equal((await unixHttp(join(dir, 'control.sock'), 'GET', '/Lanplug.Stats')).status, 405);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--metrics-listen: an IP address of this host and a port; anything else, a wildcard included, is one line naming the flag', async () => {
  assert.deepEqual(parseListenAddress('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseListenAddress('[::1]:9464'), { host: '::1', port: 9464 });
  assert.deepEqual(parseListenAddress('192.168.1.5:80'), { host: '192.168.1.5', port: 80 });
  // Not a wildcard: a mapped address of this host, and an IPv6 address that merely has zeros and ffff in it.
  assert.deepEqual(parseListenAddress('[::ffff:127.0.0.1]:9464'), { host: '::ffff:127.0.0.1', port: 9464 });
  assert.deepEqual(parseListenAddress('[::ffff:0:1]:9464'), { host: '::ffff:0:1', port: 9464 });
  // A link-local address needs its interface: the zone stays in the host the socket binds.
  assert.deepEqual(parseListenAddress('[fe80::1%eth0]:9464'), { host: 'fe80::1%eth0', port: 9464 });
  for (const [bad, message] of [
    ['9464', /must be ADDRESS:PORT/],
    [':9464', /must be ADDRESS:PORT/],
    ['localhost:9464', /must be ADDRESS:PORT with an IP address/],
    ['::1:9464', /must be ADDRESS:PORT/],
    ['127.0.0.1:0', /port must be 1-65535/],
    ['127.0.0.1:70000', /port must be 1-65535/],
    ['0.0.0.0:9464', /every interface: name one address/],
    ['[::]:9464', /every interface/],
    ['[::0.0.0.0]:9464', /every interface/],
    ['[::ffff:0.0.0.0]:9464', /every interface/],
    ['0.00.0.0:9464', /must be ADDRESS:PORT|every interface/],
    // The same addresses by value, however spelt: IPv4-mapped 0.0.0.0 in hex, leading zero groups.
    ['[::ffff:0:0]:9464', /every interface/],
    ['[0:0:0:0:0:ffff:0:0]:9464', /every interface/],
    ['[0::ffff:0.0.0.0]:9464', /every interface/],
    ['[0:0::0]:9464', /every interface/],
    // A zone does not make the wildcard one interface's: :: is every address, whatever follows the %.
    ['[::%lo]:9464', /every interface/],
    ['[0::0%eth0]:9464', /every interface/],
  ] as const)
    assert.throws(
      () => parseListenAddress(bad),
      (err: Error) =>
        message.test(err.message) && err.message.includes('--metrics-listen') && !err.message.includes('\n'),
      bad,
    );
  // And served there: GET /metrics over TCP on loopback.
  const listener = await MetricsListener.listen(
    { host: '127.0.0.1', port: 0 },
    new Map([['/metrics', () => Promise.resolve({ status: 200, contentType: 'text/plain', body: 'lanplug_x 1\n' })]]),
    silentLogger,
  );
  try {
    const address = listener.address();
    const answer = await fetch(`http://127.0.0.1:${address.port}/metrics`);
    assert.equal(answer.status, 200);
    assert.equal(await answer.text(), 'lanplug_x 1\n');
    assert.equal((await fetch(`http://127.0.0.1:${address.port}/other`)).status, 404);
  } finally {
    await listener.close();
  }
});

test("a pool's size is what its containers may have: a lanplug IPAM network's --ip-range (without the subnet's network and broadcast addresses), the whole subnet otherwise", async () => {
  await withStore(async (store) => {
    const network = (networkId: string, ipv4: string, ipv6: string | null): void =>
      store.insertNetwork({
        spec: {
          networkId,
          mode: { kind: 'macvlan', mode: 'bridge' },
          parent: { kind: 'existing', name: 'eth0' },
          mtu: null,
          internal: false,
          ipv4: [{ pool: parsePrefix(ipv4), gateway: null }],
          ipv6: ipv6 === null ? [] : [{ pool: parsePrefix(ipv6), gateway: null }],
          hostAccess: null,
          conflict: 'refuse',
          announce: { count: 3, intervalMs: 100 },
          dhcp: null,
        },
        parentCreated: false,
      });
    // lanplug IPAM: --subnet 172.16.86.0/24 --ip-range 172.16.86.128/25 (its last address is the broadcast).
    network('b'.repeat(64), '172.16.86.0/24', 'fd77::/64');
    store.insertPool({
      poolId: 'LocalDefault/172.16.86.0/24',
      addressSpace: 'LocalDefault',
      pool: parsePrefix('172.16.86.0/24'),
      range: parsePrefix('172.16.86.128/25'),
    });
    store.insertPool({
      poolId: 'LocalDefault/fd77::/64',
      addressSpace: 'LocalDefault',
      pool: parsePrefix('fd77::/64'),
      range: parsePrefix('fd77::/120'),
    });
    // Another network, its pool with no --ip-range; and one of Docker's IPAM (no pool of lanplug's).
    network('c'.repeat(64), '10.20.0.0/24', null);
    store.insertPool({
      poolId: 'LocalDefault/10.20.0.0/24',
      addressSpace: 'LocalDefault',
      pool: parsePrefix('10.20.0.0/24'),
      range: null,
    });
    network('d'.repeat(64), '10.30.0.0/28', null);
    const unregister = registerStoreMetrics(registry, store);
    try {
      const text = await registry.metrics();
      const size = (network: string, subnet: string): number | null =>
        sample(text, 'lanplug_pool_size_addresses', `network="${network.repeat(12)}",subnet="${subnet}"`);
      assert.equal(size('b', '172.16.86.0/24'), 127, '.128-.254');
      assert.equal(size('b', 'fd77::/64'), 255, 'fd77::1-fd77::ff');
      assert.equal(size('c', '10.20.0.0/24'), 254);
      assert.equal(size('d', '10.30.0.0/28'), 14);
    } finally {
      unregister();
    }
  });
});
