/**
 * The LAN guard's memory, with a stand-in prober and clock (the Docker lane
 * probes a real LAN): answers are reused while fresh, asked again when stale,
 * and one address is never probed twice at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LanConflicts, type LanCheck } from '../../src/lan/conflicts';
import { LanGuard, type Prober } from '../../src/lan/guard';
import type { ProbeLink, ProbeVerdict } from '../../src/lan/probe';
import { silentLogger } from '../../src/log';
import { parseAddress, type IpAddress } from '../../src/net/address';

const LINK: ProbeLink = { index: 7, name: 'eth0', mac: '02:00:00:00:00:07', listenAll: false };
/** Another VLAN's eye, on a parent that carries the same subnet. */
const OTHER_VLAN: ProbeLink = { index: 9, name: 'eth0.20', mac: '02:00:00:00:00:09', listenAll: false };

function setup(answer: (address: string) => ProbeVerdict): {
  guard: LanGuard;
  asked: string[];
  clock: { now: number };
} {
  const asked: string[] = [];
  const clock = { now: 1_000_000 };
  const prober: Prober = async (_link, candidate) => {
    asked.push(candidate.text);
    await new Promise((r) => setTimeout(r, 5));
    return answer(candidate.text);
  };
  return { guard: new LanGuard(silentLogger, prober, () => clock.now), asked, clock };
}

test('a free answer is reused for 30 s, an in-use answer for 10 minutes', async () => {
  const { guard, asked, clock } = setup((a) =>
    a === '172.16.86.2' ? { inUse: true, mac: '06:85:e9:52:4e:de', how: 'test' } : { inUse: false },
  );
  const free = parseAddress('172.16.86.3');
  const taken = parseAddress('172.16.86.2');
  assert.deepEqual(await guard.ask(LINK, free), { inUse: false });
  assert.equal((await guard.ask(LINK, taken)).inUse, true);
  assert.equal(guard.isKnownFree(LINK, free), true);
  assert.equal(guard.isKnownTaken(LINK, taken), true);
  clock.now += 20_000;
  await guard.ask(LINK, free);
  assert.deepEqual(asked, ['172.16.86.3', '172.16.86.2'], 'fresh answers are not asked again');
  clock.now += 20_000;
  assert.equal(guard.isKnownFree(LINK, free), false, 'stale after 30 s');
  assert.equal(guard.isKnownTaken(LINK, taken), true, 'an in-use answer lasts longer');
  await guard.ask(LINK, free);
  assert.deepEqual(asked, ['172.16.86.3', '172.16.86.2', '172.16.86.3']);
  clock.now += 10 * 60_000;
  assert.equal(guard.isKnownTaken(LINK, taken), false, 'devices leave: asked again after 10 minutes');
  assert.deepEqual(
    guard.taken().map((t) => [t.address, t.mac]),
    [['172.16.86.2', '06:85:e9:52:4e:de']],
  );
});

test('another device only probing for the address (contended) ends the probe as in use, but is not remembered: the address is asked again next time', async () => {
  const { guard, asked } = setup(() => ({
    inUse: true,
    mac: '82:4b:0b:d6:63:47',
    how: 'it is probing for the same address on eth0',
    contended: true,
  }));
  const address = parseAddress('172.16.86.4');
  assert.equal((await guard.ask(LINK, address)).inUse, true);
  assert.equal(guard.isKnownTaken(LINK, address), false);
  assert.equal(guard.isKnownFree(LINK, address), false);
  await guard.ask(LINK, address);
  assert.deepEqual(asked, ['172.16.86.4', '172.16.86.4']);
});

test('a container of this host answering for its address (the warmer asked about a candidate just as Docker gave it away) is no LAN device: in use now, not remembered, not a sighting, and the next container given the address is not refused', async () => {
  // The soak's failure: a round's container got 10.31.0.2 while the warmer's round, which had listed it as a
  // candidate, was still probing; the container answered, and the next round's container, given 10.31.0.2 by
  // Docker, was refused for 10 minutes: "in use on the LAN by 02:42:0a:1f:00:02" -- the MAC of the one before.
  const container = '02:42:0a:1f:00:02';
  const address = parseAddress('10.31.0.2');
  let holder: string | null = container;
  const asked: string[] = [];
  const prober: Prober = async (_link, candidate) => {
    asked.push(candidate.text);
    await new Promise((r) => setTimeout(r, 5));
    return holder === null ? { inUse: false } : { inUse: true, mac: holder, how: 'it answered an ARP probe on eth0' };
  };
  const ownAnswer = (_link: ProbeLink, a: IpAddress, mac: string): boolean =>
    holder !== null && a.text === address.text && mac === holder;
  const guard = new LanGuard(silentLogger, prober, Date.now, ownAnswer);
  const sightings: string[] = [];
  const conflicts = new LanConflicts(
    guard,
    { recordSighting: (s) => sightings.push(`${s.address} ${s.mac}`), listSightings: () => [] },
    silentLogger,
    null,
  );
  const check: LanCheck = { link: LINK, policy: 'refuse', networkId: 'n'.repeat(64) };
  const warm = await conflicts.verdict(check, address);
  assert.equal(warm.inUse, true, 'the address is in use while the container holds it');
  assert.equal(guard.isKnownTaken(LINK, address), false);
  assert.deepEqual(guard.taken(), []);
  assert.deepEqual(sightings, [], 'a container of this host is not a device of the LAN');
  holder = null; // docker rm -f: the container and its link are gone
  await conflicts.requireUsable({ addresses: [address], lan: check }, { host: () => 'x', lan: 'y' });
  assert.deepEqual(asked, ['10.31.0.2', '10.31.0.2'], 'asked again, not refused from memory');
});

test('callers asking about one address at once share one probe', async () => {
  const { guard, asked } = setup(() => ({ inUse: false }));
  const address = parseAddress('172.16.86.9');
  await Promise.all([guard.ask(LINK, address), guard.ask(LINK, address), guard.ask(LINK, address)]);
  assert.deepEqual(asked, ['172.16.86.9']);
});

test('asked "as now" (an address a DHCP server just gave): a remembered free answer is asked again, a remembered in-use one is not', async () => {
  const { guard, asked } = setup((a) =>
    a === '172.16.86.2' ? { inUse: true, mac: '06:85:e9:52:4e:de', how: 'test' } : { inUse: false },
  );
  const free = parseAddress('172.16.86.3');
  const taken = parseAddress('172.16.86.2');
  await guard.ask(LINK, free);
  await guard.ask(LINK, taken);
  assert.deepEqual(await guard.ask(LINK, free, { asNow: true }), { inUse: false });
  assert.equal((await guard.ask(LINK, taken, { asNow: true })).inUse, true);
  assert.deepEqual(asked, ['172.16.86.3', '172.16.86.2', '172.16.86.3']);
});

test('asked for the owner of the address (a container starting its DHCP over): its own answer is no conflict, a remembered one of its does not count, and its "free" is not remembered', async () => {
  const own = '02:00:00:00:00:21';
  const owners: (string | null)[] = [];
  const clock = { now: 1_000_000 };
  let holder = own;
  const prober: Prober = async (_link, _candidate, _timing, ownMac) => {
    owners.push(ownMac);
    await new Promise((r) => setTimeout(r, 5));
    return holder === ownMac ? { inUse: false } : { inUse: true, mac: holder, how: 'it answered an ARP probe on eth0' };
  };
  const guard = new LanGuard(silentLogger, prober, () => clock.now);
  const address = parseAddress('172.16.86.121');
  // Asked without an owner (the warmer, a static network), the container's answer is remembered as a use.
  assert.equal((await guard.ask(LINK, address)).inUse, true);
  assert.deepEqual(await guard.ask(LINK, address, { asNow: true, ownMac: own }), { inUse: false });
  assert.deepEqual(owners, [null, own], 'asked again, past the remembered answer of the owner itself');
  assert.equal(guard.isKnownFree(LINK, address), false, 'the owner holds it: not free for anyone else');
  holder = '02:aa:00:00:00:01';
  assert.equal((await guard.ask(LINK, address, { asNow: true, ownMac: own })).inUse, true, 'another device is');
});

test("the warmer's candidates: a static network's first free addresses; none for a DHCP network (its server chooses; Docker's null IPAM gives it 0.0.0.0/0)", async () => {
  const { nextCandidates } = await import('../../src/lan/candidates');
  const { parsePrefix } = await import('../../src/net/address');
  const spec = {
    networkId: 'c'.repeat(64),
    mode: { kind: 'macvlan' as const, mode: 'bridge' as const },
    parent: { kind: 'existing' as const, name: 'eth0' },
    mtu: null,
    internal: false,
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: [],
    hostAccess: null,
    conflict: 'refuse' as const,
    announce: { count: 0, intervalMs: 0 },
    dhcp: null,
  };
  const never = (): never => assert.fail('no pool: the allocator is not asked');
  const allocator = { nextFree: never } as unknown as Parameters<typeof nextCandidates>[3];
  assert.deepEqual(
    (await nextCandidates(spec, [], [], allocator, () => false)).map((a) => a.text),
    ['172.16.86.2', '172.16.86.3', '172.16.86.4', '172.16.86.5'],
  );
  const leased = {
    ...spec,
    ipv4: [{ pool: parsePrefix('0.0.0.0/0'), gateway: null }],
    dhcp: { ipv4: true, ipv6: false, timeoutMs: 10_000, askedBy: 'driver' as const },
  };
  assert.deepEqual(await nextCandidates(leased, [], [], allocator, () => false), []);
});

test('answers are kept per link: a device on one VLAN says nothing about the same address on another', async () => {
  const asked: string[] = [];
  const prober: Prober = async (link, candidate) => {
    asked.push(`${link.name} ${candidate.text}`);
    await new Promise((r) => setTimeout(r, 1));
    return link.index === LINK.index ? { inUse: true, mac: '06:85:e9:52:4e:de', how: 'test' } : { inUse: false };
  };
  const guard = new LanGuard(silentLogger, prober);
  const address = parseAddress('192.168.1.5');
  assert.equal((await guard.ask(LINK, address)).inUse, true);
  assert.equal(guard.isKnownTaken(OTHER_VLAN, address), false, 'not known on the other VLAN');
  assert.equal(guard.isKnownFree(OTHER_VLAN, address), false, 'nor known free there: it must be asked');
  assert.equal((await guard.ask(OTHER_VLAN, address)).inUse, false);
  assert.equal(guard.isKnownFree(OTHER_VLAN, address), true);
  assert.equal(guard.isKnownTaken(LINK, address), true, 'and still taken where the device is');
  assert.equal(guard.isKnownTakenAnywhere(address), true);
  assert.deepEqual(asked, ['eth0 192.168.1.5', 'eth0.20 192.168.1.5']);
  assert.deepEqual(
    guard.taken().map((t) => [t.address, t.link]),
    [['192.168.1.5', 'eth0']],
  );
});

test('answers stay fresh on the monotonic clock by default (the daemon\'s): a wall clock set forward a day does not make a fresh answer stale, one set back an hour does not keep a "free" one for the hour', async (t) => {
  let wall = Date.UTC(2026, 11, 6);
  let monotonic = 5_000;
  t.mock.method(Date, 'now', () => wall);
  t.mock.method(performance, 'now', () => monotonic);
  const prober: Prober = (_link, candidate) =>
    Promise.resolve(
      candidate.text === '172.16.86.2'
        ? { inUse: true, mac: '06:85:e9:52:4e:de', how: 'it answered an ARP probe on eth0' }
        : { inUse: false },
    );
  const guard = new LanGuard(silentLogger, prober);
  const free = parseAddress('172.16.86.3');
  await guard.ask(LINK, free);
  await guard.ask(LINK, parseAddress('172.16.86.2'));
  assert.deepEqual(
    guard.taken().map((k) => k.at),
    [wall],
    'a sighting carries the wall time',
  );
  wall += 24 * 3_600_000; // set forward a day, 10 s after the answer
  monotonic += 10_000;
  assert.equal(guard.isKnownFree(LINK, free), true, 'a clock set forward made a fresh answer stale');
  wall -= 25 * 3_600_000; // set back: 35 s after the answer
  monotonic += 25_000;
  assert.equal(guard.isKnownFree(LINK, free), false, 'a clock set back kept a "free" answer past its 30 s');
});
