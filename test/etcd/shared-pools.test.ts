/**
 * The shared address book on a real 3-member etcd cluster (Debian's etcd 3.4,
 * on loopback): the allocator suite every book passes, then what sharing adds,
 * with two "hosts" (two books with their own host ids and registrations, as two
 * daemons would have): parallel allocation without a duplicate IP or MAC, the
 * same --ip asked at once, pools that must match, and etcd failures — one
 * member down changes nothing, two down fail closed within 10 s; orphan
 * claims and absent hosts' claims freed on etcd (the LAN's answer stood in
 * for here; the Docker lane hears the real LAN); an identity's reservation
 * keeps its address in the shared pool.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { LanplugError } from '../../src/errors';
import { SharedAttachmentPools } from '../../src/endpoint/shared-attachments';
import { IpamAllocator } from '../../src/ipam/allocator';
import { OrphanClaims } from '../../src/ipam/orphans';
import { reclaimAbsentHosts, type LanHearing } from '../../src/ipam/reclaim';
import { forgetReservation, recordHeld, releaseHolder, reservedAddresses } from '../../src/ipam/reservations';
import { settleReclaimed } from '../../src/ipam/reclaimed';
import { silentLogger } from '../../src/log';
import { events } from '../../src/metrics/events';
import type { EndpointRecord } from '../../src/model/network';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { EtcdAddressBook, hostKey, KEY_PREFIX } from '../../src/state/etcd/address-book';
import { EtcdClient } from '../../src/state/etcd/client';
import { parseStoreChoice } from '../../src/state/etcd/store-option';
import { OPERATION_BUDGET_MS } from '../../src/state/etcd/keys';
import type { ThisMachine } from '../../src/state/etcd/presence';
import type { LostAddress } from '../../src/state/shared-state';
import { SqliteStore } from '../../src/state/sqlite';
import { startEtcdCluster, type EtcdCluster } from '../lab/etcd-cluster';
import { allocatorSuite, pool, refusal, SPREAD_ZERO_HOST, take } from '../support/allocator-suite';

let dir: string;
let cluster: EtcdCluster;
const books: EtcdAddressBook[] = [];
const stores: SqliteStore[] = [];
let stateDirs = 0;

before(async () => {
  dir = mkdtempSync('/tmp/lp-lab-etcd-');
  // Ports from a range nothing else here uses; one cluster for the whole file.
  cluster = await startEtcdCluster({ dir, address: '127.0.0.1', basePort: 32300 });
});

after(() => {
  for (const book of books) book.presence.stop();
  for (const store of stores) store.close();
  cluster.stop();
  rmSync(dir, { recursive: true, force: true });
});

function client(): EtcdClient {
  return new EtcdClient({ endpoints: cluster.clientUrls });
}

/** A fresh state directory: another daemon's (its own instance id). */
function newStateDir(): string {
  return join(dir, `state-${++stateDirs}`);
}

/**
 * A host's book, as its daemon makes it: on its state directory (a daemon restarted: the same one
 * again), on this machine or the one given.
 */
function book(hostId: string, stateDir = newStateDir(), etcd = client(), on?: ThisMachine): EtcdAddressBook {
  const store = SqliteStore.open(stateDir);
  stores.push(store);
  const made = new EtcdAddressBook(etcd, hostId, silentLogger, store, on);
  books.push(made);
  return made;
}

function allocatorOn(hostId: string): IpamAllocator {
  return new IpamAllocator(book(hostId), silentLogger);
}

const mac = (host: number, n: number): string =>
  `02:00:00:${host.toString(16).padStart(2, '0')}:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;

beforeEach(async () => {
  for (const i of [0, 1, 2]) cluster.resume(i);
  await client().txn([], [{ delete: { key: KEY_PREFIX, prefix: true } }], [], 10_000);
});

allocatorSuite('etcd', () => book(SPREAD_ZERO_HOST));

test('two hosts, 60 endpoints at once in a /26 range: 60 distinct addresses and MACs inside the range, gateway and aux never handed out, etcd holds exactly those', async () => {
  const a = allocatorOn('dh-a');
  const b = allocatorOn('dh-b');
  // Both hosts' networks ask for the pool, the gateway and an aux address, as dockerd does on each.
  const id = await pool(a, '10.60.0.0/24', '10.60.0.64/26');
  assert.equal(await pool(b, '10.60.0.0/24', '10.60.0.64/26'), id, 'the same pool id on both hosts');
  for (const alloc of [a, b]) {
    assert.equal(await take(alloc, id, '10.60.0.65', true), '10.60.0.65/24');
    assert.equal(
      await take(alloc, id, '10.60.0.66'),
      '10.60.0.66/24',
      'an aux address is the pool’s, asked by each host',
    );
  }
  const starts = await Promise.all(
    Array.from({ length: 60 }, (_, n) => take(n % 2 === 0 ? a : b, id, null, false, mac(n % 2, n))),
  );
  const addresses = starts.map((s) => s.split('/')[0] ?? '');
  assert.equal(new Set(addresses).size, 60, 'no address handed out twice');
  for (const address of addresses) {
    const last = Number(address.split('.')[3]);
    assert.ok(last >= 64 && last <= 127, `${address} is inside --ip-range`);
    assert.ok(address !== '10.60.0.65' && address !== '10.60.0.66', `${address} is neither gateway nor aux`);
  }
  // 64 in the range, minus gateway and aux: 62. Four more requests, two from each host: exactly two fail.
  const surplus = await Promise.allSettled(
    [0, 1, 2, 3].map((n) => take(n % 2 === 0 ? a : b, id, null, false, mac(9, n))),
  );
  assert.equal(surplus.filter((r) => r.status === 'fulfilled').length, 2);
  for (const r of surplus.filter((r) => r.status === 'rejected'))
    assert.match(String(r.reason), /No available addresses on this pool/);
  const claims = await client().range(`${KEY_PREFIX}ip/`, { prefix: true, deadlineMs: 5_000 });
  assert.equal(claims.length, 64, 'etcd holds the 62 endpoints, the gateway and the aux address');
  const macs = await client().range(`${KEY_PREFIX}mac/`, { prefix: true, deadlineMs: 5_000 });
  assert.equal(macs.length, 62, 'one MAC per endpoint');
  // Each host releases its own; a host does not release the other's.
  const bHolds = new Set(
    claims
      .filter((kv) => (JSON.parse(kv.value) as { host: string }).host === 'dh-b')
      .map((kv) => kv.key.split('/').pop()),
  );
  const someOfB = [...bHolds].find((x) => x !== undefined && x !== '10.60.0.65' && x !== '10.60.0.66') ?? '';
  await a.releaseAddress(id, parseAddress(someOfB));
  assert.equal((await client().range(`${KEY_PREFIX}ip/`, { prefix: true, deadlineMs: 5_000 })).length, 64);
  for (const address of [
    ...addresses,
    ...surplus.flatMap((r) => (r.status === 'fulfilled' ? [r.value.split('/')[0] ?? ''] : [])),
  ])
    for (const alloc of [a, b]) await alloc.releaseAddress(id, parseAddress(address));
  assert.equal(
    (await client().range(`${KEY_PREFIX}ip/`, { prefix: true, deadlineMs: 5_000 })).length,
    2,
    'gateway and aux stay',
  );
  assert.equal((await client().range(`${KEY_PREFIX}mac/`, { prefix: true, deadlineMs: 5_000 })).length, 0);
  await a.releasePool(id);
  assert.notEqual(await b.pool(id), null, 'the pool stays while host b uses it');
  await b.releasePool(id);
  assert.equal((await client().range(KEY_PREFIX + 'pools/', { prefix: true, deadlineMs: 5_000 })).length, 0);
  assert.equal((await client().range(`${KEY_PREFIX}ip/`, { prefix: true, deadlineMs: 5_000 })).length, 0);
});

test('the same --ip asked on both hosts at the same moment, 20 times: exactly one wins each time', async () => {
  const a = allocatorOn('dh-a');
  const b = allocatorOn('dh-b');
  const id = await pool(a, '10.61.0.0/24');
  await pool(b, '10.61.0.0/24');
  for (let n = 0; n < 20; n++) {
    const wanted = `10.61.0.${100 + n}`;
    const results = await Promise.allSettled([
      take(a, id, wanted, false, mac(1, n)),
      take(b, id, wanted, false, mac(2, n)),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1, `round ${n}: one winner`);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.match(String(lost.reason), /Address already in use/);
  }
});

test('a MAC already on the LAN is refused on the other host; a pool must match what its first host defined', async () => {
  const a = allocatorOn('dh-a');
  const b = allocatorOn('dh-b');
  const id = await pool(a, '10.62.0.0/24', '10.62.0.0/25');
  await take(a, id, null, false, '02:42:0a:3e:00:02');
  assert.match(
    await refusal(() => take(b, id, null, false, '02:42:0a:3e:00:02')),
    /^MAC address 02:42:0a:3e:00:02 is already in use on the LAN \(10\.62\.0\.\d+, host dh-a\)$/,
  );
  assert.equal(
    await refusal(() => pool(b, '10.62.0.0/24', '10.62.0.128/25')),
    'shared pool 10.62.0.0/24 was defined by host dh-a with --subnet 10.62.0.0/24 --ip-range 10.62.0.0/25, not --subnet 10.62.0.0/24 --ip-range 10.62.0.128/25: give the same --subnet and --ip-range on every host',
  );
  await pool(b, '10.62.0.0/24', '10.62.0.0/25');
  await take(a, id, '10.62.0.1', true);
  assert.equal(
    await refusal(() => take(b, id, '10.62.0.254', true)),
    'shared pool 10.62.0.0/24 has gateway 10.62.0.1, given by host dh-a: give the same --gateway on every host',
  );
  assert.equal(await take(b, id, null, true), '10.62.0.1/24', 'a host without --gateway takes the recorded one');
  assert.equal(
    await refusal(() => pool(a, '10.62.0.0/24', '10.62.0.0/25')),
    'Pool overlaps with other one on this address space',
  );
});

test('hosts start apart: the first automatic address differs between two host ids', async () => {
  const a = allocatorOn('dh-a');
  const b = allocatorOn('dh-b');
  const id = await pool(a, '10.63.0.0/16');
  await pool(b, '10.63.0.0/16');
  const [first, second] = await Promise.all([take(a, id, null, false, mac(1, 1)), take(b, id, null, false, mac(2, 1))]);
  assert.notEqual(first, second);
  assert.notEqual(first, '10.63.0.1/16', 'not the lowest free address');
});

/**
 * How far past an etcd operation's budget (OPERATION_BUDGET_MS) a request may fail. The budget is kept
 * by timers in lanplug's own process (each member's try, the pause between rounds: all cut at the
 * deadline, whatever the members do), so what comes after it is those timers firing late and the
 * error's way back on a machine the rest of CI loads: measured 1-8 ms. 1 s is the second of
 * docs/shared-pools.md's "fails within 10 s"; a request that spent two budgets in a row (18 s) fails it.
 */
const FAIL_CLOSED_ALLOWANCE_MS = 1_000;

test('one etcd member down: every allocation succeeds; two down: allocation fails closed within 10 s, and works again once they are back', async () => {
  const a = allocatorOn('dh-a');
  const id = await pool(a, '10.64.0.0/24');
  cluster.pause(0);
  const taken = await Promise.all(Array.from({ length: 10 }, (_, n) => take(a, id, null, false, mac(1, n))));
  assert.equal(new Set(taken).size, 10);
  cluster.pause(1);
  const started = Date.now();
  const etcdEvents = (): string[] =>
    events
      .since(started)
      .map((e) => e.kind)
      .filter((k) => k.startsWith('etcd.'));
  const error = await refusal(() => take(a, id, null, false, mac(1, 99)));
  const tookMs = Date.now() - started;
  assert.match(error, /^etcd did not answer within 9 s \(no member reachable, or no quorum\)/);
  // lanplug's deadline is one operation's budget; past it, only the allowance for a loaded machine.
  assert.ok(
    tookMs < OPERATION_BUDGET_MS + FAIL_CLOSED_ALLOWANCE_MS,
    `failed closed in ${tookMs} ms (budget ${OPERATION_BUDGET_MS} ms)`,
  );
  process.stdout.write(`# failed closed in ${tookMs} ms (budget ${OPERATION_BUDGET_MS} ms)\n`);
  // lanplug events: each client (this test has one per book) tells when etcd stops answering, once, not per retry.
  assert.deepEqual([...new Set(etcdEvents())], ['etcd.unreachable']);
  const unreachable = etcdEvents().length;
  cluster.resume(0);
  cluster.resume(1);
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await take(a, id, null, false, mac(1, 100));
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
  }
  const claims = await client().range(`${KEY_PREFIX}ip/`, { prefix: true, deadlineMs: 5_000 });
  assert.equal(claims.length, 11, 'the refused request left nothing behind');
  assert.equal(etcdEvents().at(-1), 'etcd.reachable');
  assert.deepEqual(
    etcdEvents().filter((k) => k === 'etcd.unreachable').length,
    unreachable,
    'no more unreachable once back',
  );
});

test('a host whose registration expired (cut off from etcd longer than its lease) registers again before it allocates: the fence; each registration is told (the daemon then settles what was reclaimed meanwhile)', async () => {
  const aBook = book('dh-a');
  let registrations = 0;
  aBook.presence.onRegistered(() => registrations++);
  const a = new IpamAllocator(aBook, silentLogger);
  const id = await pool(a, '10.65.0.0/24');
  await take(a, id, null, false, mac(1, 1));
  const [registration] = await client().range(hostKey('dh-a'), { deadlineMs: 5_000 });
  assert.ok(registration !== undefined && registration.lease !== '0', 'the host key is on a lease');
  // What the lease's expiry does: the key goes. The daemon's next write fails on the fence, registers anew, retries.
  await client().revokeLease(registration.lease, 5_000);
  assert.equal((await client().range(hostKey('dh-a'), { deadlineMs: 5_000 })).length, 0);
  assert.match(await take(a, id, null, false, mac(1, 2)), /^10\.65\.0\.\d+\/24$/);
  const [again] = await client().range(hostKey('dh-a'), { deadlineMs: 5_000 });
  assert.ok(again !== undefined && again.lease !== registration.lease, 'registered on a new lease');
  assert.equal(registrations, 2, 'registered at the first write, and again after the expiry; not at each keepalive');
});

test('orphan claims on etcd: a claim no endpoint holds is freed on the second check with its MAC; one claimed again in between is not', async () => {
  const a = book('dh-a');
  const alloc = new IpamAllocator(a, silentLogger);
  const id = await pool(alloc, '10.66.0.0/24');
  const held = (await take(alloc, id, null, false, mac(1, 1))).split('/')[0] ?? '';
  const orphan = (await take(alloc, id, null, false, mac(1, 2))).split('/')[0] ?? '';
  const orphans = new OrphanClaims(a, silentLogger);
  const pass = (now: number): ReturnType<OrphanClaims['pass']> =>
    orphans.pass(
      () => new Set([held]),
      () => Promise.resolve({ createdAt: 0 }),
      { graceMs: 1_000, dryRun: false, now },
    );
  const later = Date.now() + 5_000;
  assert.deepEqual(await pass(later), { released: [], suspected: [orphan] });
  assert.deepEqual(await pass(later + 2_000), { released: [orphan], suspected: [] });
  const macs = await client().range(`${KEY_PREFIX}mac/`, { prefix: true, deadlineMs: 5_000 });
  assert.deepEqual(
    macs.map((kv) => kv.key.split('/').pop()),
    [mac(1, 1)],
    "the orphan's MAC went with it",
  );
  // Suspected, then released by Docker and claimed again by another container: not freed.
  const again = (await take(alloc, id, orphan, false, mac(1, 3))).split('/')[0] ?? '';
  await pass(later + 4_000);
  await alloc.releaseAddress(id, parseAddress(again));
  await take(alloc, id, again, false, mac(1, 4));
  assert.deepEqual((await pass(later + 6_000)).released, []);
});

test('absent hosts: counted from the first sighting, reclaimed only past the delay and only where the LAN is silent; a host back is no longer absent', async () => {
  const a = book('dh-a');
  const b = book('dh-b');
  const allocA = new IpamAllocator(a, silentLogger);
  const allocB = new IpamAllocator(b, silentLogger);
  const id = await pool(allocA, '10.67.0.0/24');
  await pool(allocB, '10.67.0.0/24');
  const silent = (await take(allocB, id, '10.67.0.10', false, mac(2, 1))).split('/')[0] ?? '';
  const answering = (await take(allocB, id, '10.67.0.11', false, mac(2, 2))).split('/')[0] ?? '';
  const hear = (_pool: string, address: { text: string }): Promise<LanHearing> =>
    Promise.resolve(address.text === answering ? 'answers' : 'silent');
  const run = (now: number): ReturnType<typeof reclaimAbsentHosts> =>
    reclaimAbsentHosts(a, hear, silentLogger, { reclaimAfterMs: 10_000, now });
  assert.deepEqual(
    await run(Date.now()),
    { reclaimed: [], kept: [], waiting: [], busy: [], left: 0 },
    'b is registered',
  );
  // b's lease runs out (as when its host dies): revoked here instead of waiting 15 s.
  b.presence.stop();
  const [registration] = await client().range(hostKey('dh-b'), { deadlineMs: 5_000 });
  await client().revokeLease(registration?.lease ?? '0', 5_000);
  const first = await run(Date.now());
  assert.deepEqual(
    first.waiting.map((w) => w.host),
    ['dh-b'],
  );
  const reclaimFrom = Date.now();
  assert.deepEqual(await run(Date.now() + 11_000), {
    reclaimed: [silent],
    kept: [answering],
    waiting: [],
    busy: [],
    left: 0,
  });
  assert.deepEqual(
    (await allocA.nextFree(await allocA.pool(id), 256)).some((x) => x.text === silent),
    true,
    'free again',
  );
  // lanplug events: the reclaim, naming the absent host, the pool and the address (not the one kept).
  assert.deepEqual(
    events
      .since(reclaimFrom)
      .filter((e) => e.kind.startsWith('pool.'))
      .map((e) => [e.kind, e.fields]),
    [['pool.reclaimed', { host: 'dh-b', pool: id, address: silent }]],
  );
  // b comes back (registers with its next write): it is no longer absent, and what it kept stays its own.
  await take(allocB, id, '10.67.0.12', false, mac(2, 3));
  assert.deepEqual(await run(Date.now() + 60_000), { reclaimed: [], kept: [], waiting: [], busy: [], left: 0 });
  assert.equal((await client().range(`${KEY_PREFIX}absent/`, { prefix: true, deadlineMs: 5_000 })).length, 0);
});

test('a second host with the same --host-id is refused in one line naming the registration it found; the same host restarted within its lease is accepted', async () => {
  const firstDir = newStateDir();
  const firstBook = book('twin', firstDir);
  const first = new IpamAllocator(firstBook, silentLogger);
  const id = await pool(first, '10.68.0.0/24');
  await take(first, id, null, false, mac(1, 1));
  // Another machine (its own state directory, so its own instance id) started with the same host id.
  const clone = new IpamAllocator(book('twin'), silentLogger);
  const refused = await refusal(() => pool(clone, '10.68.0.0/24'));
  assert.match(
    refused,
    /^host id twin is registered in etcd by another lanplug \(instance [0-9a-f]+, hostname [^,]+, pid \d+, since \d{4}-\d\d-\d\dT[^)]+\): cloned machines share a hostname, the default --host-id; give this host its own --host-id, or stop lanplug on the other one$/,
  );
  assert.equal(await refusal(() => take(clone, id, null, false, mac(2, 1))), refused, 'every write is refused alike');
  const claims = await client().range(`${KEY_PREFIX}ip/`, { prefix: true, deadlineMs: 5_000 });
  assert.equal(claims.length, 1, 'the second host wrote nothing');
  // The first host's daemon restarts (same state directory: same instance) while its old lease is alive: accepted.
  firstBook.presence.stop();
  const [old] = await client().range(hostKey('twin'), { deadlineMs: 5_000 });
  const restarted = new IpamAllocator(book('twin', firstDir), silentLogger);
  assert.match(await take(restarted, id, null, false, mac(1, 2)), /^10\.68\.0\.\d+\/24$/);
  const [now] = await client().range(hostKey('twin'), { deadlineMs: 5_000 });
  assert.notEqual(now?.lease, old?.lease, 'registered on its own lease');
  // Once the other registration is gone (its daemon stopped, its lease ran out), the second host registers.
  await client().revokeLease(now?.lease ?? '0', 5_000);
  (books[books.length - 1] as EtcdAddressBook).presence.stop();
  assert.match(await take(clone, id, null, false, mac(2, 2)), /^10\.68\.0\.\d+\/24$/);
});

/** A machine as a registration tells it: its boot id, the daemon's pid, and the pids that run there now. */
function machine(bootId: string, pid: number, running: Set<number>): ThisMachine {
  running.add(pid);
  return { bootId, pid, running: (p) => running.has(p) };
}

test('a cloned machine (its state directory copied: the same instance id, another boot id) is refused while the original runs, and the original keeps allocating; the original restarted on the same boot takes over its registration at once', async () => {
  const dir = newStateDir();
  const onA = new Set<number>();
  const originalBook = book('vm', dir, client(), machine('boot-a', 100, onA));
  const original = new IpamAllocator(originalBook, silentLogger);
  const id = await pool(original, '10.76.0.0/24');
  await take(original, id, null, false, mac(1, 1));
  // The clone starts on a copy of the state directory (here: the directory itself): the same instance id.
  const cloneBook = book('vm', dir, client(), machine('boot-b', 100, new Set()));
  const clone = new IpamAllocator(cloneBook, silentLogger);
  const refused = await refusal(() => pool(clone, '10.76.0.0/24'));
  assert.match(
    refused,
    /^host id vm is registered in etcd by a copy of this state directory running on another machine \(boot id boot-a, hostname [^,]+, pid 100, since \d{4}-[^)]+\): give the clone its own --host-id, or stop lanplug there; if this machine rebooted, its registration from before runs out within 15 s$/,
  );
  assert.equal(await refusal(() => take(clone, id, null, false, mac(2, 1))), refused, 'every write is refused alike');
  // The original goes on: its registration is still its own, and it allocates.
  assert.match(await take(original, id, null, false, mac(1, 2)), /^10\.76\.0\.\d+\/24$/);
  const claims = await client().range(`${KEY_PREFIX}ip/`, { prefix: true, deadlineMs: 5_000 });
  assert.equal(claims.length, 2, 'the clone wrote nothing');
  // Its daemon restarts on the same boot: the old process is gone, its lease still alive: taken over at once.
  const [old] = await client().range(hostKey('vm'), { deadlineMs: 5_000 });
  originalBook.presence.stop();
  onA.delete(100);
  const restartedBook = book('vm', dir, client(), machine('boot-a', 200, onA));
  assert.match(
    await take(new IpamAllocator(restartedBook, silentLogger), id, null, false, mac(1, 3)),
    /^10\.76\.0\.\d+\/24$/,
  );
  const [now] = await client().range(hostKey('vm'), { deadlineMs: 5_000 });
  assert.notEqual(now?.lease, old?.lease, 'registered on its own lease');
  // A registration whose process still runs on this boot is not taken over (what the state directory's lock makes rare).
  const beside = new IpamAllocator(book('vm', dir, client(), machine('boot-a', 300, onA)), silentLogger);
  assert.match(
    await refusal(() => take(beside, id, null, false, mac(1, 4))),
    /^host id vm is registered in etcd by another lanplug of this machine on this state directory \(boot id boot-a, hostname [^,]+, pid 200, since [^)]+\): stop it, or wait: its registration runs out within 15 s of its stopping$/,
  );
  // The original stops for good (its lease runs out): the clone registers.
  restartedBook.presence.stop();
  await client().revokeLease(now?.lease ?? '0', 5_000);
  assert.match(await take(clone, id, null, false, mac(2, 2)), /^10\.76\.0\.\d+\/24$/);
});

test('a registration from a lanplug that recorded no boot id (before an upgrade) is taken over only once its lease has run out', async () => {
  const dir = newStateDir();
  const store = SqliteStore.open(dir);
  stores.push(store);
  for (const [n, written] of [
    {
      host: 'upgraded',
      instance: store.instanceId(),
      epoch: 'e',
      hostname: 'h',
      pid: 4242,
      since: '2026-01-01T00:00:00.000Z',
    },
    { host: 'upgraded', epoch: 'e', pid: 1 },
  ].entries()) {
    const lease = await client().grantLease(15, 5_000);
    await client().txn([], [{ put: { key: hostKey('upgraded'), value: JSON.stringify(written), lease } }], [], 5_000);
    const upgraded = new IpamAllocator(
      book('upgraded', dir, client(), machine('boot-a', 100, new Set())),
      silentLogger,
    );
    assert.match(
      await refusal(() => pool(upgraded, `10.77.${n}.0/24`)),
      /^host id upgraded is registered in etcd by a lanplug that recorded no boot id \(an earlier version; hostname (h|\?), pid (4242|1), since [^)]+\): if it was this machine's before an upgrade, it runs out within 15 s; if it stays, another machine runs lanplug as this host: give it its own --host-id$/,
    );
    await client().revokeLease(lease, 5_000);
    assert.match(await pool(upgraded, `10.77.${n}.0/24`), new RegExp(`^LocalDefault/10\\.77\\.${n}\\.0/24$`));
    (books[books.length - 1] as EtcdAddressBook).presence.stop();
    const [mine] = await client().range(hostKey('upgraded'), { deadlineMs: 5_000 });
    await client().revokeLease(mine?.lease ?? '0', 5_000);
  }
});

/** Until etcd has a quorum again after members were paused: `fn`'s first success. */
async function onceQuorate<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** The hosts etcd lists as using a pool. */
async function poolUsers(poolId: string): Promise<string[]> {
  const [kv] = await client().range(`${KEY_PREFIX}pools/${encodeURIComponent(poolId)}`, { deadlineMs: 5_000 });
  return kv === undefined ? [] : (JSON.parse(kv.value) as { users: string[] }).users;
}

/** Keys under lanplug's prefix other than the hosts' registrations. */
async function bookKeys(): Promise<string[]> {
  const kvs = await client().range(KEY_PREFIX, { prefix: true, deadlineMs: 5_000 });
  return kvs.map((kv) => kv.key.slice(KEY_PREFIX.length)).filter((k) => !k.startsWith('hosts/'));
}

test('a pool release etcd did not take (no quorum at docker network rm) is kept in the state database and made by the next pass, after a restart too; the last user takes the pool, its claims and their MAC keys with it', async () => {
  const stateDir = newStateDir();
  const a = book('dh-a', stateDir);
  const allocA = new IpamAllocator(a, silentLogger);
  const id = await pool(allocA, '10.69.0.0/24');
  await take(allocA, id, '10.69.0.1', true);
  // An endpoint whose ReleaseAddress never reached etcd: its claim and MAC key are still there.
  await take(allocA, id, null, false, mac(1, 1));
  cluster.pause(0);
  cluster.pause(1);
  await assert.rejects(allocA.releasePool(id), /etcd did not answer within 9 s/);
  cluster.resume(0);
  cluster.resume(1);
  // The daemon restarts on its state directory; its next pass makes the release.
  a.presence.stop();
  const restarted = book('dh-a', stateDir);
  assert.deepEqual(
    await onceQuorate(async () => {
      const report = await restarted.retryPoolReleases();
      if (report.pending.length > 0) throw new Error(report.pending[0]?.error);
      return report;
    }),
    { released: [id], pending: [] },
  );
  assert.deepEqual(await bookKeys(), [], 'no pool, no claim, no MAC key left');
  assert.deepEqual(await restarted.retryPoolReleases(), { released: [], pending: [] }, 'made once');
});

/**
 * The next transaction's answer is lost (etcd applied it): the client asks again, as it does member
 * after member, or gives up; or the next transaction never reaches a quorum (not applied).
 */
class LosingAnswers extends EtcdClient {
  lose: 'asks-again' | 'gives-up' | 'no-quorum' | null = null;
  /** Transactions let through before the one that fails. */
  passing = 0;

  override async txn(...args: Parameters<EtcdClient['txn']>): ReturnType<EtcdClient['txn']> {
    if (this.lose !== null && this.passing > 0) {
      this.passing--;
      return super.txn(...args);
    }
    if (this.lose === 'no-quorum') {
      this.lose = null;
      throw new LanplugError(
        'Unavailable',
        'etcd did not answer within 9 s (no member reachable, or no quorum): paused',
      );
    }
    const result = await super.txn(...args);
    const lose = this.lose;
    if (lose === null || !result.succeeded) return result;
    this.lose = null;
    if (lose === 'asks-again') return super.txn(...args);
    throw new LanplugError('Unavailable', 'etcd did not answer within 9 s (no member reachable, or no quorum): lost');
  }
}

test("a pool transaction whose answer was lost: asked again, it is recognised as this host's own; given up, the next docker network create with the same flags works", async () => {
  const etcd = new LosingAnswers({ endpoints: cluster.clientUrls });
  const a = book('dh-a', newStateDir(), etcd);
  const allocA = new IpamAllocator(a, silentLogger);
  await a.presence.fence(5_000);
  etcd.lose = 'asks-again';
  const id = await pool(allocA, '10.72.0.0/24');
  assert.deepEqual(await poolUsers(id), ['dh-a']);
  await allocA.releasePool(id);
  etcd.lose = 'gives-up';
  await assert.rejects(pool(allocA, '10.72.0.0/24'), /etcd did not answer/);
  assert.deepEqual(await poolUsers(id), ['dh-a'], 'applied: etcd lists this host, with no network here');
  assert.equal(await pool(allocA, '10.72.0.0/24'), id, 'created again, not "Pool overlaps"');
  assert.deepEqual(await poolUsers(id), ['dh-a']);
  assert.deepEqual(await a.retryPoolReleases(), { released: [], pending: [] });
});

test('the same network created again after a release etcd did not take: joined at once, not "Pool overlaps" (also for the host that defined a pool another host still uses)', async () => {
  const etcd = new LosingAnswers({ endpoints: cluster.clientUrls });
  const a = book('dh-a', newStateDir(), etcd);
  const allocA = new IpamAllocator(a, silentLogger);
  const allocB = allocatorOn('dh-b');
  const id = await pool(allocA, '10.69.0.0/24');
  await pool(allocB, '10.69.0.0/24');
  await allocA.releasePool(id);
  assert.equal(await pool(allocA, '10.69.0.0/24'), id, 'the host that defined it joins it again');
  etcd.lose = 'no-quorum';
  await assert.rejects(allocA.releasePool(id), /etcd did not answer within 9 s/);
  assert.deepEqual(await poolUsers(id), ['dh-b', 'dh-a'], 'etcd still lists this host');
  assert.equal(await pool(allocA, '10.69.0.0/24'), id);
  assert.deepEqual(await poolUsers(id), ['dh-b', 'dh-a']);
  assert.deepEqual(await a.retryPoolReleases(), { released: [], pending: [] }, 'nothing left to release');
});

test("two hosts reclaiming one absent host's addresses at the same moment: one at a time probes them (its lock on its own lease), each address is reclaimed once", async () => {
  const a = book('dh-a');
  const c = book('dh-c');
  const b = book('dh-b');
  const allocB = new IpamAllocator(b, silentLogger);
  const id = await pool(new IpamAllocator(a, silentLogger), '10.73.0.0/24');
  await pool(new IpamAllocator(c, silentLogger), '10.73.0.0/24');
  await pool(allocB, '10.73.0.0/24');
  const held = [];
  for (const n of [1, 2, 3]) held.push((await take(allocB, id, null, false, mac(2, n))).split('/')[0] ?? '');
  b.presence.stop();
  const [registration] = await client().range(hostKey('dh-b'), { deadlineMs: 5_000 });
  await client().revokeLease(registration?.lease ?? '0', 5_000);
  // Who probes b's addresses, and when: two hosts probing one address at once end each other's probes.
  let probing = 0;
  let together = 0;
  let offLease = 0;
  const probers = new Set<string>();
  const hearing = (host: string) => async (): Promise<LanHearing> => {
    probers.add(host);
    if (++probing > 1) together++;
    const [lock] = await client().range(`${KEY_PREFIX}reclaiming/dh-b`, { deadlineMs: 5_000 });
    const [own] = await client().range(hostKey(host), { deadlineMs: 5_000 });
    if (lock === undefined || lock.lease !== own?.lease) offLease++;
    await new Promise((r) => setTimeout(r, 100));
    probing--;
    return 'silent';
  };
  const run = (from: EtcdAddressBook, now: number): ReturnType<typeof reclaimAbsentHosts> =>
    reclaimAbsentHosts(from, hearing(from.hostId), silentLogger, { reclaimAfterMs: 10_000, now });
  await run(a, Date.now());
  const [first, second] = await Promise.all([run(a, Date.now() + 11_000), run(c, Date.now() + 11_000)]);
  assert.equal(together, 0, 'never two hosts probing b’s addresses at once');
  assert.equal(offLease, 0, 'the prober holds reclaiming/dh-b, on its own registration lease');
  assert.deepEqual([...(first?.reclaimed ?? []), ...(second?.reclaimed ?? [])].sort(), held.sort());
  assert.equal(probers.size, 1, 'one host did it');
  const by = probers.has('dh-a') ? 'dh-a' : 'dh-c';
  assert.deepEqual([...(first?.busy ?? []), ...(second?.busy ?? [])], [{ host: 'dh-b', by }], 'the other one says who');
  assert.deepEqual(
    (await client().range(`${KEY_PREFIX}reclaiming/`, { prefix: true, deadlineMs: 5_000 })).length,
    0,
    'the lock is gone',
  );
});

test('an absent host whose addresses all still answer: a pass probes at most maxProbes of them, says how many it left, and the next pass goes on where it stopped', async () => {
  const a = book('dh-a');
  const b = book('dh-b');
  const allocB = new IpamAllocator(b, silentLogger);
  const id = await pool(new IpamAllocator(a, silentLogger), '10.78.0.0/24');
  await pool(allocB, '10.78.0.0/24');
  const held: string[] = [];
  for (const n of [1, 2, 3, 4, 5]) held.push((await take(allocB, id, null, false, mac(2, n))).split('/')[0] ?? '');
  b.presence.stop();
  const [registration] = await client().range(hostKey('dh-b'), { deadlineMs: 5_000 });
  await client().revokeLease(registration?.lease ?? '0', 5_000);
  const probed: string[] = [];
  const answers = (_pool: string, address: { text: string }): Promise<LanHearing> => {
    probed.push(address.text);
    return Promise.resolve('answers');
  };
  const run = (now: number): ReturnType<typeof reclaimAbsentHosts> =>
    reclaimAbsentHosts(a, answers, silentLogger, { reclaimAfterMs: 10_000, now, maxProbes: 2 });
  await run(Date.now());
  const later = Date.now() + 11_000;
  const passes = [await run(later), await run(later), await run(later)];
  assert.deepEqual(
    passes.map((p) => [p.kept.length, p.left]),
    [
      [2, 3],
      [2, 3],
      [2, 3],
    ],
    'two probed, three left for the next pass',
  );
  assert.deepEqual(new Set(probed.slice(0, 5)), new Set(held), 'every address probed within three passes');
  assert.equal(probed.length, 6);
  assert.deepEqual(probed.slice(5), probed.slice(0, 1), 'then round again from the first');
});

/** An endpoint as the daemon's store keeps it (the container kept running while its host was away). */
function endpointHolding(endpointId: string, address: string, macAddress: string): EndpointRecord {
  return {
    networkId: 'n'.repeat(64),
    endpointId,
    linkName: `lp-${endpointId.slice(0, 12)}`,
    mac: macAddress,
    ipv4: parsePrefix(`${address}/24`),
    ipv6: null,
  };
}

test('a host away (unregistered, silent) longer than --reclaim-after comes back: an address nobody took since is claimed again; one another host holds now is recorded as lost, never taken from it, until that host lets it go', async () => {
  const stateB = newStateDir();
  const a = book('dh-a');
  const b = book('dh-b', stateB);
  const allocA = new IpamAllocator(a, silentLogger);
  const allocB = new IpamAllocator(b, silentLogger);
  const id = await pool(allocA, '10.74.0.0/24');
  await pool(allocB, '10.74.0.0/24');
  const free = (await take(allocB, id, '10.74.0.10', false, mac(2, 1))).split('/')[0] ?? '';
  const taken = (await take(allocB, id, '10.74.0.11', false, mac(2, 2))).split('/')[0] ?? '';
  b.presence.stop();
  const [registration] = await client().range(hostKey('dh-b'), { deadlineMs: 5_000 });
  await client().revokeLease(registration?.lease ?? '0', 5_000);
  const silent = (): Promise<LanHearing> => Promise.resolve('silent');
  await reclaimAbsentHosts(a, silent, silentLogger, { reclaimAfterMs: 10_000 });
  const reclaimed = await reclaimAbsentHosts(a, silent, silentLogger, {
    reclaimAfterMs: 10_000,
    now: Date.now() + 11_000,
  });
  assert.deepEqual(reclaimed.reclaimed.sort(), [free, taken]);
  // Host a hands one of them to a new container meanwhile.
  await take(allocA, id, taken, false, mac(1, 1));

  // Host b is back; its containers kept their addresses. Its next check:
  const state = SqliteStore.open(stateB);
  stores.push(state);
  const endpoints = [
    endpointHolding('e1'.repeat(32), free, mac(2, 1)),
    endpointHolding('e2'.repeat(32), taken, mac(2, 2)),
  ];
  const settleFrom = Date.now();
  assert.deepEqual(await settleReclaimed(b, state, endpoints, silentLogger), { claimedBack: [free], lost: [taken] });
  assert.deepEqual(
    events
      .since(settleFrom)
      .filter((e) => e.kind.startsWith('pool.'))
      .map((e) => [e.kind, e.fields['address']]),
    [
      ['pool.claimed-back', free],
      ['pool.address-lost', taken],
    ],
    'lanplug events shows both',
  );
  assert.equal(await b.holderOf(id, parseAddress(free)), 'dh-b');
  assert.equal(await b.holderOf(id, parseAddress(taken)), 'dh-a', 'never taken from its new holder');
  const [lost] = state.listLostAddresses();
  assert.deepEqual(
    { ...lost, reclaimedAt: '', noticedAt: 0 },
    {
      address: taken,
      poolId: id,
      networkId: 'n'.repeat(64),
      endpointId: 'e2'.repeat(32),
      reclaimedBy: 'dh-a',
      reclaimedAt: '',
      heldBy: 'dh-a',
      noticedAt: 0,
    },
  );
  assert.equal(state.isAddressLost('n'.repeat(64), taken), true, 'the LAN watch no longer defends it');
  assert.equal(
    state.isAddressLost('m'.repeat(64), taken),
    false,
    'a container of another network (another VLAN, the same subnet) with that address is still defended',
  );
  assert.deepEqual(await bookKeys().then((keys) => keys.filter((k) => k.startsWith('reclaimed/'))), [], 'read once');
  assert.deepEqual(await settleReclaimed(b, state, endpoints, silentLogger), { claimedBack: [], lost: [taken] });
  // Host a's container goes: the address is b's container's again.
  await allocA.releaseAddress(id, parseAddress(taken));
  const backFrom = Date.now();
  assert.deepEqual(await settleReclaimed(b, state, endpoints, silentLogger), { claimedBack: [taken], lost: [] });
  assert.deepEqual(
    events
      .since(backFrom)
      .filter((e) => e.kind.startsWith('pool.'))
      .map((e) => [e.kind, e.fields['address']]),
    [['pool.claimed-back', taken]],
  );
  assert.equal(await b.holderOf(id, parseAddress(taken)), 'dh-b');
  assert.equal(state.isAddressLost('n'.repeat(64), taken), false);
  // A lost record goes with its endpoint.
  state.putLostAddress({ ...(lost as LostAddress), endpointId: 'e3'.repeat(32) });
  await settleReclaimed(b, state, endpoints, silentLogger);
  assert.deepEqual(state.listLostAddresses(), []);
});

test('an absent host that registers again while its addresses are being probed loses none of them: a reclaim applies only while the host is unregistered', async () => {
  const a = book('dh-a');
  const b = book('dh-b');
  const allocB = new IpamAllocator(b, silentLogger);
  const id = await pool(new IpamAllocator(a, silentLogger), '10.75.0.0/24');
  await pool(allocB, '10.75.0.0/24');
  const held = (await take(allocB, id, null, false, mac(2, 1))).split('/')[0] ?? '';
  b.presence.stop();
  const [registration] = await client().range(hostKey('dh-b'), { deadlineMs: 5_000 });
  await client().revokeLease(registration?.lease ?? '0', 5_000);
  // b comes back in the middle of a's probes, and claims a new address before its container is up (silent).
  let fresh = '';
  const hear = async (): Promise<LanHearing> => {
    fresh ||= (await take(allocB, id, null, false, mac(2, 2))).split('/')[0] ?? '';
    return 'silent';
  };
  await reclaimAbsentHosts(a, hear, silentLogger, { reclaimAfterMs: 10_000 });
  const report = await reclaimAbsentHosts(a, hear, silentLogger, { reclaimAfterMs: 10_000, now: Date.now() + 11_000 });
  assert.deepEqual(report.reclaimed, []);
  assert.equal(await b.holderOf(id, parseAddress(held)), 'dh-b');
  assert.equal(await b.holderOf(id, parseAddress(fresh)), 'dh-b');
});

test('etcd with auth on: the user from --user-file (as the daemon reads it at start) is let in; a client without it is not', async () => {
  const etcdctl = (...args: string[]): string =>
    execFileSync('etcdctl', [`--endpoints=${cluster.clientUrls.join(',')}`, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ETCDCTL_API: '3' },
    });
  const userFile = join(dir, 'etcd-user');
  writeFileSync(userFile, 'root:s3cret pass\n', { mode: 0o600 });
  etcdctl('user', 'add', 'root:s3cret pass');
  etcdctl('role', 'add', 'root');
  etcdctl('user', 'grant-role', 'root', 'root');
  etcdctl('auth', 'enable');
  try {
    const choice = parseStoreChoice({
      store: cluster.storeUrl,
      hostId: 'auth-a',
      cacert: '',
      cert: '',
      key: '',
      user: '',
      userFile,
      reclaimAfter: 600,
    });
    assert.equal(choice.kind, 'etcd');
    if (choice.kind !== 'etcd') return;
    const authed = new EtcdClient(choice.etcd);
    await authed.txn([], [{ put: { key: `${KEY_PREFIX}auth-probe`, value: 'x' } }], [], 5_000);
    assert.deepEqual(
      (await authed.range(`${KEY_PREFIX}auth-probe`, { deadlineMs: 5_000 })).map((kv) => kv.value),
      ['x'],
    );
    await assert.rejects(client().range(`${KEY_PREFIX}auth-probe`, { deadlineMs: 2_000 }), /user name is empty/);
  } finally {
    etcdctl('--user', 'root:s3cret pass', 'auth', 'disable');
    etcdctl('user', 'delete', 'root');
    etcdctl('role', 'delete', 'root');
  }
});

test("an identity's reservation on a shared pool: its address stays claimed in etcd, no host's automatic allocation gets it, another host's --ip of it is refused, the orphan check leaves it; lanplug forget frees it for every host", async () => {
  const stateA = newStateDir();
  const bookA = book('dh-a', stateA);
  const storeA = stores[stores.length - 1] as SqliteStore;
  const a = new IpamAllocator(bookA, silentLogger, undefined, storeA);
  const b = allocatorOn('dh-b');
  const id = await pool(a, '10.71.0.0/24', '10.71.0.0/29');
  await pool(b, '10.71.0.0/24', '10.71.0.0/29');
  // Host A's container "web" (the driver's calls at CreateEndpoint and DeleteEndpoint), then Docker's release.
  const address = (await take(a, id, null, false, mac(1, 1))).split('/')[0] ?? '';
  const network = 'c'.repeat(64);
  const held = { networkId: network, endpointId: 'e'.repeat(64), name: 'web', mac: mac(1, 1), ipv6: null };
  recordHeld(storeA, { ...held, ipv4: address, clientId: '00776562', duid: '0004' }, Date.now());
  releaseHolder(storeA, network, held.endpointId, Date.now());
  await a.releaseAddress(id, parseAddress(address));
  // Host B fills the range: every address but the reserved one, then none.
  const taken: string[] = [];
  for (let n = 0; n < 6; n++) taken.push(await take(b, id, null, false, mac(2, n)));
  assert.equal(taken.includes(`${address}/24`), false, `${address} was handed out on host B: ${taken.join(', ')}`);
  assert.equal(await refusal(() => take(b, id, null, false, mac(2, 9))), 'No available addresses on this pool');
  assert.equal(await refusal(() => take(b, id, address, false, mac(2, 10))), 'Address already in use');
  // Host A's orphan check sees it held (the daemon adds reserved addresses to the endpoints').
  const orphans = new OrphanClaims(bookA, silentLogger);
  for (let pass = 0; pass < 2; pass++) {
    const report = await orphans.pass(
      () => reservedAddresses(storeA),
      () => Promise.resolve({ createdAt: 0 }),
      { graceMs: 0, dryRun: false },
    );
    assert.deepEqual(report.released, []);
  }
  await forgetReservation(storeA, bookA, network, 'web');
  assert.equal(await take(b, id, address, false, mac(2, 10)), `${address}/24`);
});

test("a reservation's kept claim another host took meanwhile (reclaimed while this host was away): neither --ip of it nor Docker 29's request by name gets it here", async () => {
  const stateA = newStateDir();
  const bookA = book('dh-a', stateA);
  const storeA = stores[stores.length - 1] as SqliteStore;
  const a = new IpamAllocator(bookA, silentLogger, undefined, storeA);
  const b = allocatorOn('dh-b');
  const id = await pool(a, '10.72.0.0/24', '10.72.0.0/29');
  await pool(b, '10.72.0.0/24', '10.72.0.0/29');
  const address = (await take(a, id, null, false, mac(1, 1))).split('/')[0] ?? '';
  const network = 'd'.repeat(64);
  const held = { networkId: network, endpointId: 'f'.repeat(64), name: 'web', mac: mac(1, 1), ipv6: null };
  recordHeld(storeA, { ...held, ipv4: address, clientId: '00776562', duid: '0004' }, Date.now());
  releaseHolder(storeA, network, held.endpointId, Date.now());
  await a.releaseAddress(id, parseAddress(address));
  // What a reclaim of host A's silent claims does (ipam/reclaim.ts), then host B's container takes it.
  assert.equal(await bookA.release(id, parseAddress(address)), true);
  assert.equal(await take(b, id, address, false, mac(2, 1)), `${address}/24`);
  assert.equal(await refusal(() => take(a, id, address, false, mac(1, 1))), 'Address already in use');
  const byName = await a.requestAddress({ poolId: id, preferred: null, gateway: false, mac: mac(1, 1), name: 'web' });
  assert.notEqual(byName.address.text, address, `host A handed out ${address}, host B's`);
});

test("docker network rm on a host with a reservation's kept claim in a shared pool other hosts still use: the claim goes with the network (was: this host's forever, the address lost to the fleet)", async () => {
  const stateA = newStateDir();
  const bookA = book('dh-a', stateA);
  const storeA = stores[stores.length - 1] as SqliteStore;
  const a = new IpamAllocator(bookA, silentLogger, undefined, storeA);
  const b = allocatorOn('dh-b');
  const id = await pool(a, '10.73.0.0/24', '10.73.0.0/29');
  await pool(b, '10.73.0.0/24', '10.73.0.0/29');
  const address = (await take(a, id, null, false, mac(1, 1))).split('/')[0] ?? '';
  const network = 'e'.repeat(64);
  const held = { networkId: network, endpointId: 'f'.repeat(64), name: 'web', mac: mac(1, 1), ipv6: null };
  recordHeld(storeA, { ...held, ipv4: address, clientId: '00776562', duid: '0004' }, Date.now());
  releaseHolder(storeA, network, held.endpointId, Date.now());
  await a.releaseAddress(id, parseAddress(address));
  // Docker's order: the driver's DeleteNetwork (the reservations go with the network), then ReleasePool.
  storeA.deleteNetwork(network);
  await a.releasePool(id);
  assert.equal(await take(b, id, address, false, mac(2, 1)), `${address}/24`);
});

/** What SharedAttachmentPools.claim is asked (driver/attachments.ts's AttachRequest). */
type SharedAdd = Parameters<SharedAttachmentPools['claim']>[0];

/** A CNI ADD's request for one address of `<net>.0/24` (gateway `<net>.<gateway>`), as the endpoint service hands it on. */
function sharedAdd(networkName: string, net: string, aux: Record<string, string> = {}, gateway = 1): SharedAdd {
  const range = {
    subnet: parsePrefix(`${net}.0/24`),
    start: parseAddress(`${net}.1`),
    end: parseAddress(`${net}.254`),
    gateway: parseAddress(`${net}.${gateway}`),
  };
  return {
    networkName,
    driver: 'macvlan',
    options: {},
    auxAddresses: new Map(Object.entries(aux).map(([name, a]) => [name, parseAddress(a)])),
    rangeSets: [[range]],
    dhcp: false,
    dhcp6: false,
    shared: true,
    routes: [],
    mac: null,
    requestedIps: [],
    sandbox: { containerId: 'c'.repeat(64), netns: '/run/netns/none', ifname: 'eth0' },
  };
}

test('a give-back whose answer was lost, owed and made again after a restart, frees only its own claim: a container here that took the address meanwhile keeps it (was: the retry freed the new claim)', async () => {
  const etcd = new LosingAnswers({ endpoints: cluster.clientUrls });
  const stateDir = newStateDir();
  const bookA = book('dh-a', stateDir, etcd);
  const storeA = stores[stores.length - 1] as SqliteStore;
  const a = new IpamAllocator(bookA, silentLogger);
  const shared = new SharedAttachmentPools(bookA, a, storeA, silentLogger);
  const id = await pool(a, '10.81.0.0/24');
  const address = parseAddress('10.81.0.20');
  await take(a, id, address.text, false, mac(1, 1));
  // The pod's DEL: etcd frees the claim, and its answer never comes back: the give-back is owed.
  etcd.lose = 'gives-up';
  await shared.release([{ poolId: id, address: { address, prefixLength: 24 }, gateway: parseAddress('10.81.0.1') }]);
  shared.stop();
  assert.equal(await bookA.holderOf(id, address), null, 'etcd took the first give-back');
  // Another container here takes the address: Docker's RequestAddress, before its endpoint is recorded.
  await take(a, id, address.text, false, mac(1, 2));
  // The daemon restarts on its state directory and makes the owed give-back again.
  bookA.presence.stop();
  const restarted = book('dh-a', stateDir);
  const storeAgain = stores[stores.length - 1] as SqliteStore;
  const again = new SharedAttachmentPools(
    restarted,
    new IpamAllocator(restarted, silentLogger),
    storeAgain,
    silentLogger,
  );
  await again.retryGiveBacks();
  again.stop();
  const [claim] = await client().range(`${KEY_PREFIX}ip/${encodeURIComponent(id)}/${address.text}`, {
    deadlineMs: 5_000,
  });
  assert.equal(claim === undefined ? 'freed' : (JSON.parse(claim.value) as { mac: string }).mac, mac(1, 2));
  assert.equal(
    storeAgain.listPools().filter((p) => p.addressSpace.startsWith('shared-owed:')).length,
    0,
    'owed no more',
  );
});

test("a shared-pool join refused (an aux address another endpoint holds, a gateway other than the fleet's, an aux address out of range) changes nothing in etcd: this host is not left listed as a user of the pool", async () => {
  const a = book('dh-a');
  const storeA = stores[stores.length - 1] as SqliteStore;
  const shared = new SharedAttachmentPools(a, new IpamAllocator(a, silentLogger), storeA, silentLogger);
  const allocB = allocatorOn('dh-b');
  const id = await pool(allocB, '10.82.0.0/24');
  await take(allocB, id, '10.82.0.1', true);
  await take(allocB, id, '10.82.0.30', false, mac(2, 1));
  const keys = await bookKeys();
  await assert.rejects(
    shared.claim(sharedAdd('pods', '10.82.0', { printer: '10.82.0.30' }), null),
    /Address already in use/,
  );
  assert.deepEqual(await poolUsers(id), ['dh-b'], 'host A is not listed');
  await assert.rejects(shared.claim(sharedAdd('pods', '10.82.0', {}, 254), null), /has gateway 10\.82\.0\.1/);
  assert.deepEqual(await poolUsers(id), ['dh-b'], 'host A is not listed');
  // etcd fails the aux address's claim, after the join's own write.
  const etcd = new LosingAnswers({ endpoints: cluster.clientUrls });
  const c = book('dh-c', newStateDir(), etcd);
  const sharedC = new SharedAttachmentPools(
    c,
    new IpamAllocator(c, silentLogger),
    stores.at(-1) as SqliteStore,
    silentLogger,
  );
  await c.presence.fence(5_000);
  [etcd.lose, etcd.passing] = ['no-quorum', 1];
  await assert.rejects(
    sharedC.claim(sharedAdd('pods', '10.82.0', { host: '10.82.0.40' }), null),
    /etcd did not answer/,
  );
  assert.deepEqual(await poolUsers(id), ['dh-b'], 'host C is not listed');
  sharedC.stop();
  // A pool host A creates for the network goes again whole, its gateway claim with it.
  await assert.rejects(shared.claim(sharedAdd('solo', '10.83.0', { printer: '10.83.0.0' }), null), /out of range/);
  assert.deepEqual(await bookKeys(), keys, 'etcd as it was');
  shared.stop();
});
