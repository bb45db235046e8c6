/**
 * The etcd client's deadline holds whatever a member does: one that answers
 * a byte at a time (a member wedged half-way, a middlebox that trickles)
 * never keeps a call past it, so that no per-pool queue waits behind a call
 * for ever. (A real etcd cluster answers in the etcd lane; none trickles.)
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { EtcdClient } from '../../src/state/etcd/client';

let member: Server;
let url = '';

before(async () => {
  // Headers at once, then one byte of a JSON body every 200 ms for a minute.
  member = createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('{');
    const drip = setInterval(() => res.write(' '), 200);
    const end = setTimeout(() => (clearInterval(drip), res.end('}')), 60_000);
    res.on('close', () => (clearInterval(drip), clearTimeout(end)));
  });
  await new Promise<void>((resolve) => member.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(member.address() as AddressInfo).port}`;
});

after(() => {
  member.closeAllConnections();
  member.close();
});

test('a member that trickles its answer: the call fails within its deadline, naming it', async () => {
  const client = new EtcdClient({ endpoints: [url], attemptMs: 1_000 });
  const started = Date.now();
  await assert.rejects(
    client.range('/lanplug/v1/x', { deadlineMs: 3_000 }),
    /^LanplugError: etcd did not answer within 3 s/,
  );
  const tookMs = Date.now() - started;
  assert.ok(tookMs < 4_000, `failed after ${tookMs} ms`);
});

test('a member going down ("grpc: the client connection is closing", as a killed leader answers): the next member takes the call', async () => {
  const closing = createServer((_req, res) => {
    const body = JSON.stringify({
      error: 'grpc: the client connection is closing',
      code: 1,
      message: 'grpc: the client connection is closing',
    });
    res.writeHead(503, { 'Content-Type': 'application/json' });
    res.end(body);
  });
  const healthy = createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ header: { revision: '7' } }));
  });
  const urls: string[] = [];
  for (const server of [closing, healthy]) {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  try {
    const client = new EtcdClient({ endpoints: urls, attemptMs: 1_000 });
    assert.deepEqual(await client.range('/lanplug/v1/x', { deadlineMs: 3_000 }), []);
  } finally {
    for (const server of [closing, healthy]) server.close();
  }
});
