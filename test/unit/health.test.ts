/**
 * /healthz (observe/health.ts, api/control-health.ts): every probe listed
 * with what it saw, 200 only when all pass, 503 naming the one that failed;
 * a probe that hangs fails at its deadline instead of hanging the page. The
 * store and socket probes run against a real database and real sockets; the
 * DHCP e2e lab reads the running daemon's page and `lanplug doctor`'s line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlPages } from '../../src/api/control';
import { daemonHealth } from '../../src/api/control-health';
import { PluginServer } from '../../src/api/docker/server';
import { silentLogger } from '../../src/log';
import { checkHealth } from '../../src/observe/health';
import { SqliteStore } from '../../src/state/sqlite';

test('the store opened afresh and each served socket connected: 200 when all answer; a socket that does not, 503 naming it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-health-'));
  SqliteStore.open(dir).close();
  const server = await PluginServer.listen(dir, { name: 'live', routes: new Map(), errorField: 'Err' }, silentLogger);
  const served = [server.socketPath];
  const pages = controlPages({ health: daemonHealth({ stateDir: dir, sockets: () => served, etcd: null }) });
  const healthz = pages.get('/healthz');
  assert.ok(healthz !== undefined);
  try {
    const fine = await healthz(new URLSearchParams());
    assert.equal(fine.status, 200);
    const body = JSON.parse(fine.body) as { ok: boolean; checks: { check: string; ok: boolean; detail: string }[] };
    assert.equal(body.ok, true);
    assert.deepEqual(
      body.checks.map((c) => c.check),
      ['store', `socket ${join(dir, 'live.sock')}`],
    );
    assert.match(body.checks[0]?.detail ?? '', /lanplug\.db opens and reads \(0 network\(s\)\)/);
    served.push(join(dir, 'gone.sock'));
    // Asked again at once, the answer is the check just made (shared for a second, so that a checker
    // hammering /healthz does not open the database and every socket each time); then a new one.
    assert.equal((await healthz(new URLSearchParams())).status, 200, 'shared within a second');
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const broken = await healthz(new URLSearchParams());
    assert.equal(broken.status, 503);
    const failed = (
      JSON.parse(broken.body) as { checks: { check: string; ok: boolean; detail: string }[] }
    ).checks.filter((c) => !c.ok);
    assert.deepEqual(failed, [
      {
        check: `socket ${join(dir, 'gone.sock')}`,
        ok: false,
        detail: `${join(dir, 'gone.sock')} does not accept connections`,
      },
    ]);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a state directory without a database fails the store probe', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-health-empty-'));
  try {
    const health = await daemonHealth({ stateDir: dir, sockets: () => [], etcd: null })();
    assert.equal(health.ok, false);
    assert.equal(health.checks[0]?.check, 'store');
    assert.equal(health.checks[0]?.ok, false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a probe that hangs fails at the deadline; one that throws fails with its message; the others still pass', async () => {
  const started = Date.now();
  const health = await checkHealth(
    [
      { name: 'hangs', run: () => new Promise<string>(() => undefined) },
      {
        name: 'throws',
        run: () => {
          throw new Error('etcd did not answer');
        },
      },
      { name: 'fine', run: () => 'answers' },
    ],
    100,
  );
  assert.ok(Date.now() - started < 1_000);
  assert.deepEqual(health, {
    ok: false,
    checks: [
      { check: 'hangs', ok: false, detail: 'no answer within 100 ms' },
      { check: 'throws', ok: false, detail: 'etcd did not answer' },
      { check: 'fine', ok: true, detail: 'answers' },
    ],
  });
});

test('a health check is shared for a second on the monotonic clock: a wall clock set back an hour does not have /healthz repeat it for the hour, one set forward a day does not end the sharing at once', async (t) => {
  let wall = Date.UTC(2026, 11, 6);
  t.mock.method(Date, 'now', () => wall);
  let monotonic = 5_000;
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-health-clock-'));
  try {
    SqliteStore.open(dir).close();
    const health = daemonHealth({ stateDir: dir, sockets: () => [], etcd: null }, () => monotonic);
    const first = health();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    wall += 24 * 3_600_000; // set forward a day, 200 ms after the check: still shared
    monotonic += 200;
    assert.equal(health(), first, 'a clock set forward ended the sharing at once');
    wall -= 25 * 3_600_000; // set back: a second after the check, a new one
    monotonic += 1_000;
    const second = health();
    assert.notEqual(second, first, 'a clock set back had the check repeated');
    await second;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
