/**
 * `lanplug doctor` against a daemon that is hung: it holds the state directory's lock and its
 * control socket takes connections, but answers nothing. Doctor asks it once, waits one timeout,
 * and says of its later asks that they were not asked (cli/control-client.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { controlSocketPath } from '../../src/api/control';
import { NoAnswerError } from '../../src/api/unix-http';
import { ControlClient, NotAskedError } from '../../src/cli/control-client';
import { formatChecks, runDoctor, type Check } from '../../src/cli/doctor';
import { askSyncFailure } from '../../src/cli/doctor/state';
import { StateLock } from '../../src/state/lock';

const TIMEOUT_MS = 1_000;

interface HungDaemon {
  dir: string;
  /** The requests it was sent (method and path), one per connection. */
  asked: string[];
}

/**
 * A state directory held as a daemon holds it, whose control socket answers GET /healthz (when
 * `healthy`) and nothing else: it reads each request and never answers it.
 */
async function withHungDaemon(healthy: boolean, fn: (daemon: HungDaemon) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-doctor-'));
  const lock = StateLock.acquire(dir, { kind: 'daemon' });
  const held: Socket[] = [];
  const asked: string[] = [];
  const server: Server = createServer((socket) => {
    held.push(socket);
    socket.once('data', (chunk: Buffer) => {
      const request = chunk.toString('utf8').split(' ', 2).join(' ');
      asked.push(request);
      if (healthy && request === 'GET /healthz') {
        const body = JSON.stringify({ ok: true, checks: [{ check: 'store', ok: true, detail: 'answers' }] });
        socket.end(
          `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(controlSocketPath(dir), resolve));
  try {
    await fn({ dir, asked });
  } finally {
    for (const socket of held) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    lock.release();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Doctor on `dir` with nothing else there (no dockerd, no plugin sockets, no CNI socket), timed. */
async function timedDoctor(dir: string): Promise<{ checks: Check[]; ms: number }> {
  const started = performance.now();
  const checks = await runDoctor(
    { stateDir: dir, pluginDir: join(dir, 'plugins'), dockerSocket: join(dir, 'docker.sock'), cniSocket: null },
    new ControlClient(dir, TIMEOUT_MS),
  );
  return { checks, ms: performance.now() - started };
}

function only(checks: readonly Check[], name: string): Check {
  const found = checks.filter((c) => c.check === name);
  assert.equal(found.length, 1, `one ${name} line: ${formatChecks(checks)}`);
  return found[0] as Check;
}

test('doctor on a hung daemon: one ask, one timeout, the daemon named once; the state directory and shared pools say they did not ask', async () => {
  await withHungDaemon(false, async ({ dir, asked }) => {
    const { checks, ms } = await timedDoctor(dir);
    const text = formatChecks(checks);
    assert.ok(ms >= TIMEOUT_MS && ms < 1.5 * TIMEOUT_MS, `doctor took ${Math.round(ms)} ms:\n${text}`);
    assert.deepEqual(asked, ['GET /healthz'], 'asked once');
    assert.equal(text.split(controlSocketPath(dir)).length - 1, 1, `the socket named once:\n${text}`);
    assert.equal(text.match(/did not answer within/g)?.length, 1, text);
    const health = only(checks, 'daemon health');
    assert.equal(health.status, 'fail');
    assert.equal(
      health.detail,
      `the daemon did not answer /healthz: ${controlSocketPath(dir)} did not answer within ${TIMEOUT_MS} ms`,
    );
    assert.deepEqual(only(checks, 'state directory'), {
      check: 'state directory',
      status: 'warn',
      detail: `${dir} (owner root, no group or world write); the daemon's failed fsyncs: not asked: the daemon did not answer /healthz`,
    });
    assert.deepEqual(only(checks, 'shared pools'), {
      check: 'shared pools',
      status: 'warn',
      detail: 'not asked: the daemon did not answer /healthz',
    });
  });
});

test('doctor on a daemon that answers /healthz and hangs on Lanplug.SyncFailure: one timeout, named on the state directory line; shared pools not asked', async () => {
  await withHungDaemon(true, async ({ dir, asked }) => {
    const { checks, ms } = await timedDoctor(dir);
    const text = formatChecks(checks);
    assert.ok(ms >= TIMEOUT_MS && ms < 1.5 * TIMEOUT_MS, `doctor took ${Math.round(ms)} ms:\n${text}`);
    assert.deepEqual(asked, ['GET /healthz', 'POST /Lanplug.SyncFailure']);
    assert.equal(only(checks, 'daemon health').status, 'ok');
    assert.deepEqual(only(checks, 'state directory'), {
      check: 'state directory',
      status: 'warn',
      detail: `${dir} (owner root, no group or world write); the daemon's failed fsyncs: the daemon did not answer (${controlSocketPath(dir)} did not answer within ${TIMEOUT_MS} ms)`,
    });
    assert.equal(only(checks, 'shared pools').detail, 'not asked: the daemon did not answer /Lanplug.SyncFailure');
    assert.equal(text.split(controlSocketPath(dir)).length - 1, 1, `the socket named once:\n${text}`);
  });
});

test('a control socket in a state directory another user can write is not asked: its answers may be theirs', async () => {
  await withHungDaemon(true, async ({ dir, asked }) => {
    chmodSync(dir, 0o777);
    try {
      await assert.rejects(
        new ControlClient(dir, TIMEOUT_MS).ask('GET', '/healthz'),
        (err: unknown) =>
          err instanceof NotAskedError &&
          /^not asked: the state directory \S+ is writable by everyone/.test(err.message),
      );
      assert.deepEqual(asked, [], 'nothing was sent');
    } finally {
      chmodSync(dir, 0o700);
    }
  });
});

test('an answer trickled a byte at a time (the socket never idle for the timeout) ends at twice the timeout', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-doctor-'));
  const timers: NodeJS.Timeout[] = [];
  const server = createServer((socket) => {
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n');
      timers.push(setInterval(() => socket.write(' '), TIMEOUT_MS / 5));
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(controlSocketPath(dir), resolve));
  try {
    const started = performance.now();
    await assert.rejects(new ControlClient(dir, TIMEOUT_MS).ask('GET', '/healthz'), NoAnswerError);
    const ms = performance.now() - started;
    assert.ok(ms >= 2 * TIMEOUT_MS && ms < 3 * TIMEOUT_MS, `ended after ${Math.round(ms)} ms`);
  } finally {
    for (const t of timers) clearInterval(t);
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a daemon's fsync answer doctor cannot take whole is said as not understood, not taken for no failure", async () => {
  for (const [body, expected] of [
    ['{"SyncFailure":null}', null],
    [
      '{"SyncFailure":{"at":"yesterday","code":"EIO","path":"/x"}}',
      { unasked: "the daemon's answer was not understood" },
    ],
    ['{"SyncFailure":', { unasked: "the daemon's answer was not understood" }],
  ] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'lanplug-doctor-'));
    const lock = StateLock.acquire(dir, { kind: 'daemon' });
    const server = createServer((socket) => {
      socket.once('data', () =>
        socket.end(
          `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        ),
      );
    });
    await new Promise<void>((resolve) => server.listen(controlSocketPath(dir), resolve));
    try {
      assert.deepEqual(await askSyncFailure(new ControlClient(dir, TIMEOUT_MS)), expected, body);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      lock.release();
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('an answer past 64 MiB is refused, not held in memory: a peer sending without end cannot take the client', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-doctor-'));
  const server = createServer((socket) => {
    socket.once('data', () => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${80 * 1024 * 1024}\r\n\r\n`);
      const mib = Buffer.alloc(1024 * 1024, 0x20);
      let sent = 0;
      const more = (): void => {
        while (sent < 80 && socket.write(mib)) sent++;
        if (sent < 80) socket.once('drain', more);
      };
      more();
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(controlSocketPath(dir), resolve));
  try {
    await assert.rejects(
      new ControlClient(dir, 10_000).ask('GET', '/healthz'),
      (err: unknown) => err instanceof Error && /answered more than 67108864 bytes/.test(err.message),
    );
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
