/**
 * The `lanplug` IPAM driver's allocator on the real SQLite store: the shared
 * allocator suite (test/support/allocator-suite.ts), and what only a store on
 * disk shows: claims and pools surviving a restart, the store's own refusal.
 */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IpamAllocator } from '../../src/ipam/allocator';
import { silentLogger } from '../../src/log';
import { parseAddress } from '../../src/net/address';
import { LocalAddressBook } from '../../src/state/address-book';
import { SqliteStore } from '../../src/state/sqlite';
import { OrphanClaims } from '../../src/ipam/orphans';
import { allocatorSuite, pool, take } from '../support/allocator-suite';
import { LanplugIpam } from '../../src/endpoint/lanplug-ipam';
import { ipamRoutes } from '../../src/api/docker/ipam-routes';
import { LanConflicts, ONE_DEVICE_SAMPLES, ONE_DEVICE_STREAK } from '../../src/lan/conflicts';
import { LanGuard, type Prober } from '../../src/lan/guard';
import type { ProbeLink, ProbeVerdict } from '../../src/lan/probe';
import type { IpAddress } from '../../src/net/address';
import type { LanSightings } from '../../src/state/store';

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lanplug-ipam-'));
  store = SqliteStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

allocatorSuite('SQLite', () => new LocalAddressBook(store));

test('SQLite: claims survive a restart; the store itself refuses a second claim; aux is kept as requested', async () => {
  let allocator = new IpamAllocator(new LocalAddressBook(store), silentLogger);
  const id = await pool(allocator, '172.16.86.0/24');
  await take(allocator, id, '172.16.86.1', true);
  await take(allocator, id);
  await take(allocator, id);
  await allocator.releaseAddress(id, parseAddress('172.16.86.2'));
  store.close();
  store = SqliteStore.open(dir);
  allocator = new IpamAllocator(new LocalAddressBook(store), silentLogger);
  assert.equal(await take(allocator, id), '172.16.86.2/24');
  assert.equal(await take(allocator, id), '172.16.86.4/24');
  assert.equal(
    store.claimAddress(id, parseAddress('172.16.86.4'), 'allocated'),
    false,
    'the store refuses a second claim',
  );
  assert.deepEqual(
    store
      .claimedAddresses(id)
      .map((c) => `${c.address.text} ${c.kind}`)
      .sort(),
    ['172.16.86.1 gateway', '172.16.86.3 allocated', '172.16.86.2 allocated', '172.16.86.4 allocated'].sort(),
  );
});

test("a network's own reservations are never orphans: an --aux-address claimed by value before the network was created stays, a container's --ip claimed after it goes", async () => {
  const book = new LocalAddressBook(store);
  const allocator = new IpamAllocator(book, silentLogger);
  const id = await pool(allocator, '172.16.87.0/24');
  await take(allocator, id, '172.16.87.1', true);
  // Docker's order: RequestPool, the gateway, each --aux-address (by value), then CreateNetwork.
  const aux = (await take(allocator, id, '172.16.87.129')).split('/')[0] ?? '';
  await new Promise((r) => setTimeout(r, 5));
  const network = { createdAt: Date.now() };
  await new Promise((r) => setTimeout(r, 5));
  const pinned = (await take(allocator, id, '172.16.87.7')).split('/')[0] ?? '';
  const orphans = new OrphanClaims(book, silentLogger);
  const pass = (now: number): ReturnType<OrphanClaims['pass']> =>
    orphans.pass(
      () => new Set<string>(),
      (poolId) => Promise.resolve(poolId === id ? network : null),
      { graceMs: 0, dryRun: false, now },
    );
  await pass(Date.now() + 1_000);
  assert.deepEqual((await pass(Date.now() + 2_000)).released, [pinned]);
  assert.deepEqual(
    store
      .claimedAddresses(id)
      .map((c) => c.address.text)
      .sort(),
    ['172.16.87.1', aux].sort(),
    'the gateway and the aux address stay',
  );
  await allocator.releasePool(id);
});

test('a claim no endpoint holds is freed on the second pass past the grace period, never one an endpoint holds or one claimed again since', async () => {
  const book = new LocalAddressBook(store);
  const allocator = new IpamAllocator(book, silentLogger);
  const id = await pool(allocator, '172.16.86.0/24');
  await take(allocator, id, '172.16.86.1', true);
  const held = (await take(allocator, id)).split('/')[0] ?? '';
  const orphan = (await take(allocator, id)).split('/')[0] ?? '';
  const orphans = new OrphanClaims(book, silentLogger);
  const local = (): Set<string> => new Set([held]);
  const watched = (): Promise<{ createdAt: number }> => Promise.resolve({ createdAt: 0 });
  const later = Date.now() + 120_000;
  const young = await orphans.pass(local, watched, { graceMs: 60_000, dryRun: false });
  assert.deepEqual(young, { released: [], suspected: [] }, 'younger than the grace period');
  assert.deepEqual(await orphans.pass(local, watched, { graceMs: 60_000, dryRun: false, now: later }), {
    released: [],
    suspected: [orphan],
  });
  assert.deepEqual(await orphans.pass(local, watched, { graceMs: 60_000, dryRun: true, now: later }), {
    released: [orphan],
    suspected: [],
  });
  assert.deepEqual(
    await orphans.pass(local, () => Promise.resolve(null), { graceMs: 60_000, dryRun: false, now: later }),
    {
      released: [],
      suspected: [],
    },
    'a pool no lanplug network here uses is never looked at',
  );
  await orphans.pass(local, watched, { graceMs: 60_000, dryRun: false, now: later });
  // Released and claimed again between two passes (Docker released it, another container took it): a new claim.
  // A claim is told from a later one by when it was made, to the millisecond; in use, the first is at least the
  // grace period old when the second is made, here the test must wait for the clock to move.
  await new Promise((r) => setTimeout(r, 3));
  await allocator.releaseAddress(id, parseAddress(orphan));
  store.claimAddress(id, parseAddress(orphan), 'allocated');
  const again = await orphans.pass(local, watched, { graceMs: 0, dryRun: false, now: later + 1_000 });
  assert.deepEqual(again.released, [], 'a claim made since the last pass is only suspected');
  assert.deepEqual((await orphans.pass(local, watched, { graceMs: 0, dryRun: false, now: later + 2_000 })).released, [
    orphan,
  ]);
  assert.deepEqual(
    store
      .claimedAddresses(id)
      .map((c) => c.address.text)
      .sort(),
    ['172.16.86.1', held].sort(),
    'the gateway and the held address stay',
  );
});

test('automatic allocation where one device answers every probe (proxy ARP): refused after ONE_DEVICE_STREAK probes and ONE_DEVICE_SAMPLES elsewhere in the pool, naming it, the next after one probe, nothing claimed; an address nobody answers for lifts it; a device answering from a new MAC each time is stopped after 256', async () => {
  const link: ProbeLink = { index: 7, name: 'eth0', mac: '02:00:00:00:00:07', listenAll: false };
  let probes = 0;
  let answer: (address: IpAddress) => ProbeVerdict = () => ({
    inUse: true,
    mac: '06:00:00:00:00:01',
    how: 'it answered an ARP probe on eth0',
  });
  const prober: Prober = (_link, candidate) => {
    probes++;
    return Promise.resolve(answer(candidate));
  };
  const sightings: LanSightings = { recordSighting: () => undefined, listSightings: () => [] };
  const conflicts = new LanConflicts(new LanGuard(silentLogger, prober), sightings, silentLogger, null);
  const allocator = new IpamAllocator(new LocalAddressBook(store), silentLogger, {
    takenIn: () => conflicts.takenOn(link),
  });
  const check = { link, policy: 'refuse', networkId: 'n1' } as const;
  const routes = ipamRoutes(new LanplugIpam(allocator, { conflicts, rulesForPool: () => ({ lan: check }) }));
  const requestAddress = routes.get('/IpamDriver.RequestAddress');
  assert.ok(requestAddress !== undefined);
  const poolId = await pool(allocator, '172.20.0.0/16');
  const oneDevice =
    /^one device answers for every address on the LAN: 06:00:00:00:00:01 answered ARP probes for 16 addresses in a row on eth0 \(172\.20\.0\.1 to 172\.20\.0\.16\)/;
  await assert.rejects(Promise.resolve(requestAddress({ PoolID: poolId })), { message: oneDevice });
  assert.equal(probes, ONE_DEVICE_STREAK + ONE_DEVICE_SAMPLES, 'the streak, then addresses elsewhere it answers too');
  await assert.rejects(Promise.resolve(requestAddress({ PoolID: poolId })), { message: oneDevice });
  assert.equal(probes, ONE_DEVICE_STREAK + ONE_DEVICE_SAMPLES + 1, 'the next allocation stops at its first probe');
  assert.deepEqual(store.claimedAddresses(poolId), [], 'nothing stays claimed');
  // The device stopped answering for .18: the LAN has free addresses after all.
  answer = (address) =>
    address.text === '172.20.0.18'
      ? { inUse: false }
      : { inUse: true, mac: '06:00:00:00:00:01', how: 'it answered an ARP probe on eth0' };
  assert.deepEqual(await requestAddress({ PoolID: poolId }), { Address: '172.20.0.18/16', Data: {} });
  assert.equal(conflicts.answeringEverything(check, 4), null);

  // Every probe answered from a MAC of its own: no device answers twice, the walk ends at 256 all the same.
  const spoofing = { ...link, index: 8 };
  answer = () => ({ inUse: true, mac: `06:00:00:00:${(probes >> 8) & 0xff}:${probes & 0xff}`, how: 'test' });
  const spoofed = ipamRoutes(
    new LanplugIpam(
      new IpamAllocator(new LocalAddressBook(store), silentLogger, { takenIn: () => conflicts.takenOn(spoofing) }),
      { conflicts, rulesForPool: () => ({ lan: { link: spoofing, policy: 'refuse', networkId: 'n2' } }) },
    ),
  ).get('/IpamDriver.RequestAddress');
  assert.ok(spoofed !== undefined);
  const before = probes;
  await assert.rejects(Promise.resolve(spoofed({ PoolID: await pool(allocator, '172.21.0.0/16') })), {
    message:
      /^256 addresses in a row are in use on the LAN, the last 172\.21\.1\.0 by 06:00:00:00:\S+ \(test\); lanplug stopped looking: give --ip-range where the LAN has free addresses$/,
  });
  assert.equal(probes - before, 256);
});

/** A LAN link, a LanConflicts asking `answer` for each probe, and RequestAddress of a lanplug IPAM on it. */
/** `now`: the walk's clock; absent, LanplugIpam's own (the daemon's). */
function lanIpam(answer: (address: IpAddress) => ProbeVerdict, now?: () => number) {
  const link: ProbeLink = { index: 9, name: 'eth0', mac: '02:00:00:00:00:09', listenAll: false };
  const probed: string[] = [];
  const prober: Prober = (_link, candidate) => {
    probed.push(candidate.text);
    return Promise.resolve(answer(candidate));
  };
  const sightings: LanSightings = { recordSighting: () => undefined, listSightings: () => [] };
  const conflicts = new LanConflicts(new LanGuard(silentLogger, prober), sightings, silentLogger, null);
  const allocator = new IpamAllocator(new LocalAddressBook(store), silentLogger, {
    takenIn: () => conflicts.takenOn(link),
  });
  const check = { link, policy: 'refuse', networkId: 'n9' } as const;
  const requestAddress = ipamRoutes(
    new LanplugIpam(allocator, { conflicts, rulesForPool: () => ({ lan: check }) }, now),
  ).get('/IpamDriver.RequestAddress');
  assert.ok(requestAddress !== undefined);
  return { allocator, conflicts, check, probed, requestAddress };
}

test('automatic allocation past a block of 40 addresses one device holds (ipvlan containers of another host, a MetalLB block): addresses elsewhere are free, so the walk goes on to the first free one, and the next allocation skips the block unasked', async () => {
  const blockHolder = '06:00:00:00:00:b1';
  const inBlock = (address: IpAddress): boolean => /^172\.22\.0\.([1-9]|[1-3][0-9]|40)$/.test(address.text);
  const { allocator, conflicts, check, probed, requestAddress } = lanIpam((address) =>
    inBlock(address) ? { inUse: true, mac: blockHolder, how: 'it answered an ARP probe on eth0' } : { inUse: false },
  );
  const poolId = await pool(allocator, '172.22.0.0/16');
  assert.deepEqual(await requestAddress({ PoolID: poolId }), { Address: '172.22.0.41/16', Data: {} });
  const samples = probed.filter((a) => !/^172\.22\.0\.([1-9]|[1-3][0-9]|4[01])$/.test(a));
  // Two streaks of 16 (.1-.16, .17-.32), each disproved by its first address drawn elsewhere.
  assert.equal(samples.length, 2, `addresses asked elsewhere: ${samples.join(' ')}`);
  assert.equal(probed.length, 41 + 2);
  assert.equal(conflicts.answeringEverything(check, 4), null);
  assert.deepEqual(
    store.claimedAddresses(poolId).map((a) => a.address.text),
    ['172.22.0.41'],
    'the addresses drawn elsewhere stay unclaimed',
  );
  const before = probed.length;
  assert.deepEqual(await requestAddress({ PoolID: poolId }), { Address: '172.22.0.42/16', Data: {} });
  assert.equal(probed.length - before, 1, 'the block is remembered as in use: one probe, for .42');
});

test("automatic allocation on a LAN answering every probe late from a new MAC each time: stopped after 10 s of walking (not 256 probes, ~50 s, past Docker's 30 s), in one line, nothing claimed", async () => {
  let clock = 0;
  let answers = 0;
  const { allocator, probed, requestAddress } = lanIpam(
    () => {
      clock += 190; // answered at the end of the probe's window
      answers++;
      return { inUse: true, mac: `06:00:00:00:01:${answers.toString(16).padStart(2, '0')}`, how: 'test' };
    },
    () => clock,
  );
  const poolId = await pool(allocator, '172.23.0.0/16');
  await assert.rejects(Promise.resolve(requestAddress({ PoolID: poolId })), {
    message:
      /^53 addresses in a row are in use on the LAN, the last 172\.23\.0\.53 by 06:00:00:00:01:35 \(test\); lanplug stopped looking after 10\.1 s \(the LAN answers slowly\): give --ip-range where the LAN has free addresses$/,
  });
  assert.equal(probed.length, 53);
  assert.deepEqual(store.claimedAddresses(poolId), [], 'nothing stays claimed');
});

test('a device that answers 16 probes in a row in a pool with no fresh address left to draw elsewhere is not taken for one answering everything: no address to confirm with is no proof, and the allocation ends as a full pool, not as proxy ARP', async () => {
  const blockHolder = '06:00:00:00:00:b2';
  const { allocator, conflicts, check, probed, requestAddress } = lanIpam((address) =>
    /^172\.24\.0\.([1-9]|1[0-6])$/.test(address.text)
      ? { inUse: true, mac: blockHolder, how: 'it answered an ARP probe on eth0' }
      : { inUse: false },
  );
  // A /27: .1-.16 held by one device, .17-.30 claimed by containers: nothing elsewhere to ask about.
  const poolId = await pool(allocator, '172.24.0.0/27');
  for (let host = 17; host <= 30; host++) store.claimAddress(poolId, parseAddress(`172.24.0.${host}`), 'allocated');
  await assert.rejects(Promise.resolve(requestAddress({ PoolID: poolId })), (err: Error) => {
    assert.doesNotMatch(err.message, /one device answers for every address/);
    return true;
  });
  assert.equal(probed.length, 16, `asked: ${probed.join(' ')}`);
  assert.equal(conflicts.answeringEverything(check, 4), null, 'not taken for a device answering everything');
  assert.equal(
    await conflicts.confirmAnsweringEverything(check, 4, []),
    null,
    'an empty list of addresses elsewhere confirms nothing',
  );
});

test("the LAN side's memories and budgets run on the monotonic clock by default (the daemon's): a wall clock set forward a day neither ends a walk nor forgets a device answering everything, one set back an hour does not keep the device's stop for the hour", async (t) => {
  let wall = Date.UTC(2026, 11, 6);
  let monotonic = 5_000;
  t.mock.method(Date, 'now', () => wall);
  t.mock.method(performance, 'now', () => monotonic);

  // A walk past five addresses in use, each answered 190 ms later and a day later by the wall clock.
  let answers = 0;
  const { allocator, requestAddress } = lanIpam((address) => {
    if (address.text === '172.26.0.6') return { inUse: false };
    monotonic += 190;
    wall += 24 * 3_600_000;
    answers++;
    return { inUse: true, mac: `06:00:00:00:02:${answers.toString(16).padStart(2, '0')}`, how: 'test' };
  });
  const poolId = await pool(allocator, '172.26.0.0/16');
  assert.deepEqual(
    await requestAddress({ PoolID: poolId }),
    { Address: '172.26.0.6/16', Data: {} },
    'a clock set forward ended the walk',
  );

  // A device answering everything: allocation stops on its network for ten minutes after it was seen.
  const link: ProbeLink = { index: 11, name: 'eth0', mac: '02:00:00:00:00:0b', listenAll: false };
  const prober: Prober = () => Promise.resolve({ inUse: true, mac: '06:00:00:00:00:0e', how: 'test' });
  const sightings: LanSightings = { recordSighting: () => undefined, listSightings: () => [] };
  const conflicts = new LanConflicts(new LanGuard(silentLogger, prober), sightings, silentLogger, null);
  const check = { link, policy: 'refuse', networkId: 'n11' } as const;
  for (let host = 1; host <= ONE_DEVICE_STREAK; host++)
    await conflicts.verdict(check, parseAddress(`172.27.0.${host}`));
  const elsewhere = Array.from({ length: ONE_DEVICE_SAMPLES }, (_, i) => parseAddress(`172.27.${i + 1}.1`));
  assert.notEqual(await conflicts.confirmAnsweringEverything(check, 4, elsewhere), null);
  wall += 24 * 3_600_000; // set forward a day, a minute later
  monotonic += 60_000;
  assert.notEqual(conflicts.answeringEverything(check, 4), null, 'a clock set forward forgot the device at once');
  wall -= 25 * 3_600_000; // set back: ten minutes and a minute after it was seen
  monotonic += 10 * 60_000;
  assert.equal(conflicts.answeringEverything(check, 4), null, 'a clock set back kept the stop past its 10 minutes');
});
