/**
 * `lanplug events` (metrics/events.ts, the control socket's /events, cli/events.ts): a bounded
 * ring read from a time on, followed over a real control socket until the daemon ends the
 * follow, and the lines for people. The DHCP e2e lab reads a real daemon's events in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlEndpoint } from '../../src/api/control';
import { PluginServer } from '../../src/api/docker/server';
import { formatEvent, parseSince, streamEvents } from '../../src/cli/events';
import { recordGcEvents, type GcResult } from '../../src/housekeeping';
import { silentLogger } from '../../src/log';
import { events, RING_SIZE, recordEvent } from '../../src/metrics/events';
import { StateLock } from '../../src/state/lock';

test('the ring keeps the last RING_SIZE events, numbered without gaps, read back from a time on', () => {
  const start = Date.now();
  for (let i = 0; i < RING_SIZE + 5; i++) events.record('test.filled', { i }, start + i);
  assert.equal(events.size, RING_SIZE);
  const kept = events.since(start);
  assert.equal(kept[0]?.fields['i'], 5, 'the oldest went first');
  assert.equal((kept.at(-1)?.seq ?? 0) - (kept[0]?.seq ?? 0), RING_SIZE - 1);
  assert.deepEqual(
    events.since(start + RING_SIZE + 3).map((e) => e.fields['i']),
    [RING_SIZE + 3, RING_SIZE + 4],
  );
});

test('a line for people: the time, the kind, the fields (quoted when they have spaces); --since durations', () => {
  assert.equal(
    formatEvent({
      seq: 1,
      at: Date.parse('2026-12-05T02:00:00Z'),
      kind: 'conflict.found',
      fields: { address: '172.16.86.120', mac: '02:aa:00:00:00:01', how: 'it answered an ARP probe on eth0' },
    }),
    '2026-12-05T02:00:00Z conflict.found address=172.16.86.120 mac=02:aa:00:00:00:01 how="it answered an ARP probe on eth0"',
  );
  assert.deepEqual(['90', '90s', '15m', '2h', '1d'].map(parseSince), [90_000, 90_000, 900_000, 7_200_000, 86_400_000]);
  assert.throws(() => parseSince('1w'), /--since must be a duration such as 90s, 15m, 2h or 1d; got '1w'/);
});

test('over the control socket: the kept events, then with follow each new one as it comes, until the daemon ends the follow', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-events-'));
  const reject = (): Promise<never> => Promise.reject(new Error('not asked'));
  const lock = StateLock.acquire(dir, { kind: 'daemon' });
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
    recordEvent('endpoint.joined', { network: 'aaaaaaaaaaaa', endpoint: 'bbbbbbbbbbbb' });
    const once: string[] = [];
    await streamEvents(dir, { sinceMs: 60_000, follow: false, json: true }, (t) => once.push(t));
    const last = JSON.parse(once.at(-1) ?? '{}') as { kind: string; fields: Record<string, string> };
    assert.equal(last.kind, 'endpoint.joined');
    assert.deepEqual(last.fields, { network: 'aaaaaaaaaaaa', endpoint: 'bbbbbbbbbbbb' });
    const followed: string[] = [];
    const streaming = streamEvents(dir, { sinceMs: 0, follow: true, json: false }, (t) => followed.push(t));
    await new Promise((r) => setTimeout(r, 200));
    recordEvent('endpoint.left', { network: 'aaaaaaaaaaaa', endpoint: 'bbbbbbbbbbbb' });
    await new Promise((r) => setTimeout(r, 200));
    events.endFollowers();
    await streaming;
    assert.match(followed.join(''), /^\S+Z endpoint\.left network=aaaaaaaaaaaa endpoint=bbbbbbbbbbbb$/m);
  } finally {
    await server.close();
    lock.release();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a gc pass's actions are events: rows Docker forgot, vanished CNI attachments, claims no endpoint held, pool releases made at last", () => {
  const from = Date.now();
  const result: GcResult = {
    Reconcile: { actions: [], networks: 0, endpoints: 0, leftovers: 0, links: 0 },
    Forgotten: { asked: true, networks: ['a'.repeat(64)], endpoints: ['b'.repeat(64)] },
    Vanished: ['cni:labnet container ctr100000000 eth0: /run/netns/x is gone'],
    Claims: { released: ['10.1.0.7'], suspected: ['10.1.0.8'] },
    PoolReleases: { released: ['LocalDefault/10.1.0.0/24'], pending: [] },
  };
  recordGcEvents(result);
  assert.deepEqual(
    events
      .since(from)
      .filter((e) => e.kind.startsWith('gc.'))
      .map((e) => [e.kind, Object.values(e.fields)[0]]),
    [
      ['gc.network-forgotten', 'aaaaaaaaaaaa'],
      ['gc.endpoint-forgotten', 'bbbbbbbbbbbb'],
      ['gc.attachment-vanished', 'cni:labnet container ctr100000000 eth0: /run/netns/x is gone'],
      ['gc.claim-released', '10.1.0.7'],
      ['gc.pool-released', 'LocalDefault/10.1.0.0/24'],
    ],
  );
});
