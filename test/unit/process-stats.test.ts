/**
 * The daemon's own figures (Lanplug.Stats on the control socket): what the
 * soak samples. Counted on this test process, which opens and closes the
 * things counted; the sockets' families from /proc/net tables as the kernel
 * writes them; the store's sizes and rows; the control route's answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlRoutes, type DaemonStats } from '../../src/api/control';
import { parseAddress } from '../../src/net/address';
import { NetlinkSocket } from '../../src/netlink/socket';
import { SqliteStore } from '../../src/state/sqlite';
import { classifySockets, processFigures, type ProcessFigures } from '../../src/sys/process-stats';

test('sockets are counted by the /proc/net table that lists their inode; one no table lists is elsewhere', () => {
  const tables = {
    packet: [
      'sk               RefCnt Type Proto  Iface R Rmem   User   Inode',
      '00000000a1b2c3d4 3      3    0003   2     1 0      0      5001',
    ].join('\n'),
    netlink: [
      'sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode',
      '000000009fa5c7c4 0   4123       00000000 0        0        0     2        0        5002    ',
      '00000000d9c6d929 0   4124       00000511 0        0        0     2        0        5003    ',
    ].join('\n'),
    unix: [
      'Num       RefCount Protocol Flags    Type St Inode Path',
      '00000000d477acca: 00000003 00000000 00000000 0001 03 5004 /run/docker/plugins/lanplug-macvlan.sock',
      '00000000d9d2a1bf: 00000003 00000000 00000000 0001 03 5005',
    ].join('\n'),
    inet: [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5006 1 000000008d84c54b 100 0 0 10 0',
    ].join('\n'),
  };
  assert.deepEqual(classifySockets(['5001', '5002', '5003', '5004', '5005', '5006', '7777'], tables), {
    packet: 1,
    netlink: 2,
    unix: 2,
    inet: 1,
    elsewhere: 1,
  });
});

/**
 * Opens 3 files, 5 unreferenced timers (the event loop does not wait for them), a netlink socket
 * and a listening unix socket; `during` sees them open; then everything is closed again.
 */
async function openAndClose(during: (figures: ProcessFigures) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-stats-'));
  const files = [1, 2, 3].map((i) => openSync(join(dir, `f${i}`), 'w'));
  const timers = Array.from({ length: 5 }, () => setTimeout(() => undefined, 60_000).unref());
  const netlink = NetlinkSocket.open();
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(dir, 's.sock'), resolve));
  try {
    during(processFigures());
  } finally {
    for (const fd of files) closeSync(fd);
    timers.forEach(clearTimeout);
    timers.length = 0;
    netlink.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  }
}

test('open descriptors, unix and netlink sockets and timers (unreferenced ones too) are counted, and go back when closed', async () => {
  // Once before the count: what Node and V8 make on first use (the test runner's output pipe, V8's
  // last object of an allocation site) is then in the baseline, and only what this test holds differs.
  await openAndClose(() => undefined);
  const before = processFigures();
  await openAndClose((during) => {
    // 3 files, the netlink socket, the listening unix socket (libuv may hold descriptors of its own: at least).
    assert.ok(during.openFds >= before.openFds + 5, `${during.openFds} fds open, ${before.openFds} before`);
    assert.equal(during.sockets.netlink, before.sockets.netlink + 1);
    assert.equal(during.sockets.unix, before.sockets.unix + 1);
    assert.equal(during.timers, before.timers + 5);
    assert.equal(during.resources['PipeWrap'], (before.resources['PipeWrap'] ?? 0) + 1);
    assert.ok(during.rssBytes > 0 && during.heapUsedBytes > 0 && during.heapTotalBytes >= during.heapUsedBytes);
  });
  const after = processFigures();
  assert.equal(after.openFds, before.openFds);
  assert.deepEqual(after.sockets, before.sockets);
  assert.equal(after.timers, before.timers);
});

test("the store's figures: rows per table, the database and its write-ahead log on disk", () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-stats-store-'));
  const store = SqliteStore.open(dir);
  try {
    const empty = store.figures();
    assert.equal(empty.rows['dhcp_last'], 0);
    assert.equal(empty.rows['endpoints'], 0);
    store.rememberAddress('0102000000000009', parseAddress('172.16.86.50'));
    store.rememberAddress('010200000000000a', parseAddress('172.16.86.51'));
    const figures = store.figures();
    assert.equal(figures.rows['dhcp_last'], 2);
    assert.deepEqual(Object.keys(figures.rows).sort(), Object.keys(empty.rows).sort());
    assert.ok(figures.databaseBytes > 0);
    assert.ok(figures.walBytes > 0, 'the writes are in the write-ahead log');
    assert.ok(figures.statements > 0);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Lanplug.Stats on the control socket answers the figures as JSON', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-stats-route-'));
  const store = SqliteStore.open(dir);
  try {
    const stats: DaemonStats = { process: processFigures(), store: store.figures() };
    const routes = controlRoutes(
      {
        gc: () => Promise.reject(new Error('not asked')),
        sharedPools: () => Promise.reject(new Error('not asked')),
        forget: () => Promise.reject(new Error('not asked')),
      },
      () => stats,
      {
        listing: () => Promise.reject(new Error('not asked')),
        health: () => Promise.reject(new Error('not asked')),
        syncFailure: () => null,
      },
    );
    const handler = routes.get('/Lanplug.Stats');
    assert.ok(handler !== undefined);
    const answer = await handler({});
    assert.deepEqual(answer, JSON.parse(JSON.stringify(stats)));
    assert.equal((answer['store'] as { rows: Record<string, number> }).rows['networks'], 0);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
