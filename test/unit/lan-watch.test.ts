/**
 * The LAN watch's answer to a device claiming a container's address, frame after frame: one defence
 * per 10 s per address and link, the claim recorded at most once a second per device (a device claiming at
 * line rate would otherwise have every frame written to the store), and one event per device per 10
 * minutes (one device claiming many addresses cannot push everything else out of the events ring).
 * The frames themselves come over real packet sockets in the Docker lane (lan-citizen.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LanWatch, type Holding } from '../../src/lan/watch';
import { events } from '../../src/metrics/events';
import { parseAddress, type IpAddress } from '../../src/net/address';
import { LanConflicts } from '../../src/lan/conflicts';
import { LanGuard } from '../../src/lan/guard';
import { silentLogger } from '../../src/log';

const CONTAINER_MAC = '02:42:ac:10:56:02';
const LINK = { index: 7, name: 'eth0', mac: '02:00:00:00:00:aa', listenAll: false };

test('a device claiming container addresses at line rate: the store hears it once a second, the LAN one defence per 10 s, the events ring one line per device per 10 minutes', () => {
  let now = 1_000_000;
  const recorded: string[] = [];
  const warned: string[] = [];
  const sent: Buffer[] = [];
  const watch = new LanWatch(
    (_link, address): Holding => ({ address, mac: CONTAINER_MAC, networkId: 'n1' }),
    { recordSighting: (s) => recorded.push(`${s.address} ${s.mac}`), listSightings: () => [] },
    { debug() {}, info() {}, error() {}, warn: (msg: string) => warned.push(msg) },
    { monotonic: () => now, wall: () => now },
  );
  const watched = { link: LINK, sockets: [{ send: (frame: Buffer) => sent.push(frame) }] };
  const claim = (address: string, mac: string): void =>
    (watch as unknown as { check(w: unknown, a: IpAddress, mac: string, how: string): void }).check(
      watched,
      parseAddress(address),
      mac,
      'it sent an ARP reply for it on eth0',
    );
  const eventsBefore = events.since(0).filter((e) => e.kind === 'conflict.defended').length;
  // 1,000 frames a second for 30 s from one device, for one address.
  for (let ms = 0; ms < 30_000; ms++, now++) claim('172.16.86.2', '02:00:00:00:00:66');
  assert.equal(recorded.length, 30, 'recorded once a second');
  assert.equal(sent.length, 3, 'defended once per 10 s');
  assert.equal(warned.length, 3, 'each defence said');
  const defended = () => events.since(0).filter((e) => e.kind === 'conflict.defended').length - eventsBefore;
  assert.equal(defended(), 1, 'one event for one device on one address');
  // Another device on the same address is news, at most once a minute per address: a sender writing a new
  // MAC into every frame buys neither a store write nor an event.
  now += 10_000;
  for (let i = 0; i < 1_000; i++, now++)
    claim(
      '172.16.86.2',
      `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    );
  assert.equal(recorded.length, 31, 'one more record in that second, whatever the MACs');
  assert.equal(defended(), 1, 'not news within the minute');
  now += 60_000;
  claim('172.16.86.2', '02:00:00:00:00:77');
  assert.equal(defended(), 2);
  // 200 addresses claimed are 200 events, not 200 a minute.
  for (let round = 0; round < 6; round++, now += 10_000)
    for (let i = 3; i < 203; i++) claim(`172.16.86.${i}`, '02:00:00:00:00:66');
  assert.equal(defended(), 2 + 200);
});

test("an ADD still asking the LAN about its address on one VLAN leaves a running container's same address on another VLAN defended (two VLANs may carry one subnet); on its own network it is not defended", () => {
  const sent: Buffer[] = [];
  const conflicts = new LanConflicts(
    new LanGuard(silentLogger, () => Promise.resolve({ inUse: false })),
    { recordSighting: () => undefined, listSightings: () => [] },
    silentLogger,
    null,
  );
  // The container behind each VLAN's link holds 192.168.1.50: network n10 on link 10, n20 on link 20.
  const holders = new Map([
    [10, 'n10'],
    [20, 'n20'],
  ]);
  const watch = new LanWatch(
    (link, address) =>
      conflicts.defensible({ address, mac: CONTAINER_MAC, networkId: holders.get(link.index) ?? 'none' }),
    { recordSighting: () => undefined, listSightings: () => [] },
    silentLogger,
    { monotonic: () => now, wall: () => now },
  );
  let now = 1_000_000;
  const claimOn = (index: number): void =>
    (watch as unknown as { check(w: unknown, a: IpAddress, mac: string, how: string): void }).check(
      { link: { ...LINK, index }, sockets: [{ send: (frame: Buffer) => sent.push(frame) }] },
      parseAddress('192.168.1.50'),
      '02:00:00:00:00:66',
      'it sent an ARP reply for it',
    );
  const confirmed = conflicts.confirming('n10', [parseAddress('192.168.1.50')]);
  claimOn(10);
  assert.equal(sent.length, 0, "the device answering the ADD's probe on n10 is its refusal, not defended against");
  claimOn(20);
  assert.equal(sent.length, 1, "n20's running container keeps its address defended meanwhile");
  confirmed();
  now += 10_000; // one defence per 10 s per address
  claimOn(10);
  assert.equal(sent.length, 2, 'once the ADD is done, an address of n10 is defended again');
});

test('the same address on two VLANs (eth0.10 and eth0.20, two LANs): a storm of claims on one does not mute the defence, the sighting or the event of the other, each link has its own one defence per 10 s', () => {
  let now = 1_000_000;
  const sent: string[] = [];
  const recorded: string[] = [];
  const from = Date.now();
  const watch = new LanWatch(
    (link, address): Holding => ({ address, mac: CONTAINER_MAC, networkId: `n${link.index}` }),
    { recordSighting: (s) => recorded.push(`${s.networkId} ${s.mac}`), listSightings: () => [] },
    silentLogger,
    { monotonic: () => now, wall: () => now },
  );
  const vlan = (index: number, name: string) => ({
    link: { ...LINK, index, name },
    sockets: [{ send: () => sent.push(name) }],
  });
  const vlan10 = vlan(10, 'eth0.10');
  const vlan20 = vlan(20, 'eth0.20');
  const claimOn = (watched: ReturnType<typeof vlan>, mac: string): void =>
    (watch as unknown as { check(w: unknown, a: IpAddress, mac: string, how: string): void }).check(
      watched,
      parseAddress('192.168.1.50'),
      mac,
      `it sent an ARP reply for it on ${watched.link.name}`,
    );
  // A second of line rate on eth0.10, and one device on eth0.20 claiming the same address meanwhile.
  for (let ms = 0; ms < 1_000; ms++, now++) {
    claimOn(vlan10, '02:00:00:00:00:66');
    if (ms === 500) claimOn(vlan20, '02:00:00:00:00:99');
  }
  assert.deepEqual(sent, ['eth0.10', 'eth0.20'], "eth0.20's claim defended despite eth0.10's storm");
  assert.ok(recorded.includes('n20 02:00:00:00:00:99'), `eth0.20's claim recorded for doctor: ${recorded.join(', ')}`);
  assert.deepEqual(
    events
      .since(from)
      .filter((e) => e.kind === 'conflict.defended' && / on eth0\.[12]0$/.test(String(e.fields['how'])))
      .map((e) => e.fields['mac']),
    ['02:00:00:00:00:66', '02:00:00:00:00:99'],
    'an event for each VLAN',
  );
  // Each link still has its own limit.
  claimOn(vlan20, '02:00:00:00:00:99');
  assert.deepEqual(sent, ['eth0.10', 'eth0.20']);
  now += 10_000;
  claimOn(vlan20, '02:00:00:00:00:99');
  claimOn(vlan10, '02:00:00:00:00:66');
  assert.deepEqual(sent, ['eth0.10', 'eth0.20', 'eth0.20', 'eth0.10']);
});

test('more addresses under claim than any fixed table would keep (5,000): each gets its own defence, none is refused or let through early, and the limits keep only the addresses of the last interval', () => {
  let now = 1_000_000;
  let sent = 0;
  const watch = new LanWatch(
    (_link, address): Holding => ({ address, mac: CONTAINER_MAC, networkId: 'n' }),
    { recordSighting: () => undefined, listSightings: () => [] },
    silentLogger,
    { monotonic: () => now, wall: () => now },
  );
  const watched = { link: LINK, sockets: [{ send: () => sent++ }] };
  const claim = (i: number): void =>
    (watch as unknown as { check(w: unknown, a: IpAddress, mac: string, how: string): void }).check(
      watched,
      parseAddress(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`),
      '02:00:00:00:00:66',
      'it sent an ARP reply for it',
    );
  const kept = (): number => (watch as unknown as { lastDefence: { size: number } }).lastDefence.size;
  for (let i = 0; i < 5_000; i++) claim(i);
  assert.equal(sent, 5_000, 'each address defended once');
  now += 1_000;
  for (let i = 0; i < 5_000; i++) claim(i);
  assert.equal(sent, 5_000, 'none again within 10 s');
  now += 9_000;
  claim(7);
  assert.equal(sent, 5_001, 'defended again once its 10 s are over');
  assert.equal(kept(), 1, "the others' times went as they stopped limiting");
  for (let i = 0; i < 5_000; i++) claim(i);
  assert.equal(sent, 10_000, 'every other address defended again too');
});

test('the wall clock set back an hour or forward a day neither mutes the defence nor lets a storm through: the limits run on the monotonic clock, the store hears the wall time', () => {
  let mono = 5_000;
  let wall = Date.UTC(2026, 11, 6);
  let sent = 0;
  const recordedAt: number[] = [];
  const watch = new LanWatch(
    (_link, address): Holding => ({ address, mac: CONTAINER_MAC, networkId: 'n' }),
    { recordSighting: (_s, at) => recordedAt.push(at), listSightings: () => [] },
    silentLogger,
    { monotonic: () => mono, wall: () => wall },
  );
  const watched = { link: LINK, sockets: [{ send: () => sent++ }] };
  const claim = (): void =>
    (watch as unknown as { check(w: unknown, a: IpAddress, mac: string, how: string): void }).check(
      watched,
      parseAddress('172.16.86.9'),
      '02:00:00:00:00:66',
      'it sent an ARP reply for it on eth0',
    );
  claim();
  assert.deepEqual([sent, recordedAt], [1, [wall]]);
  wall += 24 * 3_600_000; // set forward a day: still within 10 s of the last defence
  mono += 500;
  claim();
  assert.equal(sent, 1, 'a clock set forward lets nothing through early');
  wall -= 25 * 3_600_000; // set back: 10 s later the claim is defended again
  mono += 10_000;
  claim();
  assert.equal(sent, 2, 'a clock set back mutes nothing');
  assert.equal(recordedAt.at(-1), wall, 'the sighting carries the wall time');
});
