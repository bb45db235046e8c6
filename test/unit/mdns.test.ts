/**
 * The mDNS packet codec (src/mdns/message.ts): names and compression as RFC
 * 1035 §4.1.4 lays them out, queries, probes (RFC 6762 §8.1), answers and
 * goodbyes byte for byte, the tiebreak of two probes (§8.2), and what a
 * malformed packet costs. The responder on the wire is the e2e lane's
 * (lan-names.test.ts); here only its handling of a link it cannot listen on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressRecord,
  compareProbes,
  decodeMdns,
  encodeMdns,
  knownToQuerier,
  legacyResponse,
  probeMessage,
  recordAddress,
  responseMessage,
  TYPE_A,
  TYPE_ANY,
  type MdnsMessage,
} from '../../src/mdns/message';
import { MdnsResponder } from '../../src/mdns/responder';
import { parseAddress } from '../../src/net/address';

const bytes = (...parts: (number | string | number[] | Buffer)[]): Buffer =>
  Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : typeof p === 'number' ? Buffer.from([p]) : Buffer.from(p))));
const NAME = bytes(4, 'cam1', 5, 'local', 0);
const CAM1 = parseAddress('172.16.86.64');

test('a query for cam1.local A: header, the question, class IN (RFC 1035 §4.1.1-§4.1.2)', () => {
  const query: MdnsMessage = {
    id: 0,
    response: false,
    authoritative: false,
    questions: [{ name: 'cam1.local', type: TYPE_A, qclass: 1, unicastResponse: false }],
    answers: [],
    authorities: [],
    additionals: [],
  };
  const wire = bytes([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], NAME, [0, 1, 0, 1]);
  assert.deepEqual(encodeMdns(query), wire);
  assert.deepEqual(decodeMdns(wire), query);
});

test('a probe (RFC 6762 §8.1): question ANY with the unicast-response bit, the address records in the authority section', () => {
  const wire = encodeMdns(probeMessage('cam1.local', [CAM1]));
  assert.deepEqual(
    wire,
    bytes(
      [0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0],
      NAME,
      [0, 255, 0x80, 1],
      NAME,
      [0, 1, 0, 1, 0, 0, 0, 120, 0, 4, 172, 16, 86, 64],
    ),
  );
  const decoded = decodeMdns(wire);
  assert.equal(decoded?.questions[0]?.type, TYPE_ANY);
  assert.equal(decoded?.questions[0]?.unicastResponse, true);
  assert.equal(decoded?.questions[0]?.qclass, 1);
});

test('an answer (RFC 6762 §6, §10.2): response and authoritative flags, the A record with cache-flush, TTL 120; a goodbye has TTL 0', () => {
  const wire = encodeMdns(responseMessage([addressRecord('cam1.local', CAM1)]));
  assert.deepEqual(
    wire,
    bytes([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0], NAME, [0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 172, 16, 86, 64]),
  );
  const goodbye = encodeMdns(responseMessage([addressRecord('cam1.local', CAM1, 0)]));
  assert.deepEqual(goodbye.subarray(-10, -6), Buffer.from([0, 0, 0, 0]));
  const decoded = decodeMdns(wire)?.answers[0];
  assert.equal(decoded?.cacheFlush, true);
  assert.equal(decoded === undefined ? null : recordAddress(decoded)?.text, '172.16.86.64');
  const v6 = addressRecord('cam1.local', parseAddress('fd77::40'));
  assert.equal(v6.type, 28);
  assert.equal(recordAddress(v6)?.text, 'fd77::40');
});

test('names with compression pointers decode as RFC 1035 §4.1.4 lays them out (F.ISI.ARPA, FOO.F.ISI.ARPA, ARPA)', () => {
  // Header, then at offset 12 a question F.ISI.ARPA, then answers named by pointers: FOO + ->12, and ->18 (ARPA).
  const wire = bytes(
    [0, 0, 0x84, 0, 0, 1, 0, 2, 0, 0, 0, 0],
    [1, 0x46, 3, 0x49, 0x53, 0x49, 4, 0x41, 0x52, 0x50, 0x41, 0],
    [0, 1, 0, 1],
    [3, 0x46, 0x4f, 0x4f, 0xc0, 12],
    [0, 1, 0, 1, 0, 0, 0, 10, 0, 4, 10, 0, 0, 1],
    [0xc0, 18],
    [0, 1, 0, 1, 0, 0, 0, 10, 0, 4, 10, 0, 0, 2],
  );
  const m = decodeMdns(wire);
  assert.deepEqual(
    m?.questions.map((q) => q.name),
    ['F.ISI.ARPA'],
  );
  assert.deepEqual(
    m?.answers.map((a) => a.name),
    ['FOO.F.ISI.ARPA', 'ARPA'],
  );
});

test('malformed messages decode to null: truncated, a pointer loop, a record past the end', () => {
  const good = encodeMdns(responseMessage([addressRecord('cam1.local', CAM1)]));
  assert.equal(decodeMdns(good.subarray(0, good.length - 2)), null);
  assert.equal(decodeMdns(bytes([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], [0xc0, 12], [0, 1, 0, 1])), null);
  assert.equal(decodeMdns(Buffer.alloc(5)), null);
});

test('known answers (RFC 6762 §7.1) and legacy unicast (§6.7): a record the querier holds with half its TTL is not sent; a legacy answer repeats id and question, TTL at most 10, no cache-flush', () => {
  const record = addressRecord('cam1.local', CAM1);
  const query = (ttl: number): MdnsMessage => ({
    id: 0x1234,
    response: false,
    authoritative: false,
    questions: [{ name: 'CAM1.local', type: TYPE_A, qclass: 1, unicastResponse: false }],
    answers: [{ ...record, ttl }],
    authorities: [],
    additionals: [],
  });
  assert.equal(knownToQuerier(query(60), record), true);
  assert.equal(knownToQuerier(query(59), record), false);
  const legacy = legacyResponse(query(0), [record]);
  assert.equal(legacy.id, 0x1234);
  assert.equal(legacy.questions[0]?.name, 'CAM1.local');
  assert.equal(legacy.answers[0]?.ttl, 10);
  assert.equal(legacy.answers[0]?.cacheFlush, false);
});

test('simultaneous probes (RFC 6762 §8.2): the lexicographically later record data wins', () => {
  const ours = probeMessage('cam1.local', [parseAddress('172.16.86.64')]).authorities;
  const theirs = probeMessage('cam1.local', [parseAddress('172.16.86.11')]).authorities;
  assert.ok(compareProbes(ours, theirs) > 0);
  assert.ok(compareProbes(theirs, ours) < 0);
  assert.equal(compareProbes(ours, ours), 0);
});

test('a name longer than RFC 1035 allows (255 bytes), or a pointer that does not point back, is malformed: no packet costs more than its own bytes to read', () => {
  // 400 one-letter labels, then a pointer back to the first: without the bounds, 32 jumps of 400 labels.
  const chain = Buffer.concat([...Array.from({ length: 400 }, () => bytes(1, 'a')), bytes(0xc0, 12)]);
  const looped = bytes([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], chain, [0, 1, 0, 1]);
  assert.equal(decodeMdns(looped), null);
  // 130 two-byte labels: 261 bytes of name, no pointer at all.
  const long = Buffer.concat([...Array.from({ length: 130 }, () => bytes(1, 'a')), bytes(0)]);
  assert.equal(decodeMdns(bytes([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], long, [0, 1, 0, 1])), null);
  // A pointer forward, to a name later in the message.
  const forward = bytes([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], [0xc0, 18], [0, 1, 0, 1], NAME);
  assert.equal(decodeMdns(forward), null);
  // Many questions, each a pointer to one 250-byte name: read once each, quickly.
  const name250 = Buffer.concat([...Array.from({ length: 25 }, () => bytes(9, 'abcdefghi')), bytes(0)]);
  const many = Buffer.concat([
    bytes([0, 0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0], name250, [0, 1, 0, 1]),
    ...Array.from({ length: 199 }, () => bytes([0xc0, 12, 0, 1, 0, 1])),
  ]);
  assert.equal(decodeMdns(many)?.questions.length, 200);
});

test('a legacy unicast answer (RFC 6762 §6.7) repeats only the questions it answers: a query of many names gets no larger answer', () => {
  const cam1 = addressRecord('cam1.local', CAM1);
  const questions = [
    { name: 'cam1.local', type: TYPE_A, qclass: 1, unicastResponse: false },
    ...Array.from({ length: 50 }, (_, i) => ({
      name: `x${i}.${'a'.repeat(60)}.local`,
      type: TYPE_A,
      qclass: 1,
      unicastResponse: false,
    })),
  ];
  const query: MdnsMessage = {
    id: 7,
    response: false,
    authoritative: false,
    questions,
    answers: [],
    authorities: [],
    additionals: [],
  };
  const reply = legacyResponse(query, [cam1]);
  assert.deepEqual(
    reply.questions.map((q) => q.name),
    ['cam1.local'],
  );
  assert.ok(encodeMdns(reply).length < 100);
});

test('a LAN link the responder cannot listen on is said once, not at every sync (every 2 s for as long as it lasts)', async () => {
  const warnings: string[] = [];
  const log = {
    debug: () => undefined,
    info: () => undefined,
    warn: (m: string) => void warnings.push(m),
    error: () => undefined,
  };
  const responder = new MdnsResponder(log);
  const name = {
    name: 'cam1.local',
    addresses: [CAM1],
    mac: '02:00:00:00:00:09',
    // No such link: the packet socket cannot bind to it.
    link: { index: 0x7ffffff0, name: 'gone0', mac: '02:00:00:00:00:01', listenAll: false },
    networkId: 'n'.repeat(64),
    endpointId: 'e'.repeat(64),
  };
  try {
    for (let i = 0; i < 3; i++) responder.sync([name]);
    assert.deepEqual(warnings, ['mdns: cannot listen on the LAN link; names there are not answered']);
  } finally {
    await responder.close();
  }
});

test("a name's answers are rate-limited on the monotonic clock (RFC 6762 §6: a multicast response at most once a second): a wall clock set back an hour does not mute them, one set forward a day lets none through early", (t) => {
  let wall = Date.UTC(2026, 11, 6);
  t.mock.method(Date, 'now', () => wall);
  let monotonic = 5_000;
  const responder = new MdnsResponder(
    { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    () => monotonic,
  );
  const link = { index: 7, name: 'lm-aaaaaaaaaaaa', mac: '02:00:00:00:00:01', listenAll: false };
  let multicast = 0;
  const inside = responder as unknown as {
    sockets: Map<number, { link: typeof link; socket: { send: () => void; close: () => Promise<void> } }>;
    answer(entry: unknown, query: MdnsMessage, from: unknown): void;
  };
  inside.sockets.set(link.index, { link, socket: { send: () => void multicast++, close: () => Promise.resolve() } });
  const entry = {
    host: {
      name: 'cam1.local',
      addresses: [CAM1],
      mac: '02:00:00:00:00:09',
      link,
      networkId: 'n'.repeat(64),
      endpointId: 'e'.repeat(64),
    },
    source: CAM1,
    records: [addressRecord('cam1.local', CAM1)],
    state: 'answering',
    timer: null,
    lastMulticast: -Infinity,
  };
  const query: MdnsMessage = {
    id: 0,
    response: false,
    authoritative: false,
    questions: [{ name: 'cam1.local', type: TYPE_A, qclass: 1, unicastResponse: false }],
    answers: [],
    authorities: [],
    additionals: [],
  };
  const from = {
    sourceMac: '02:00:00:00:00:77',
    destinationMac: '01:00:5e:00:00:fb',
    source: parseAddress('172.16.86.77'),
    destination: parseAddress('224.0.0.251'),
    sourcePort: 5353,
    destinationPort: 5353,
    payload: Buffer.alloc(0),
  };
  inside.answer(entry, query, from);
  assert.equal(multicast, 1);
  wall += 24 * 3_600_000; // set forward a day, 200 ms later: still within the second
  monotonic += 200;
  inside.answer(entry, query, from);
  assert.equal(multicast, 1, 'a clock set forward let an answer through early');
  wall -= 25 * 3_600_000; // set back: a second after the last answer, the next is due
  monotonic += 1_000;
  inside.answer(entry, query, from);
  assert.equal(multicast, 2, 'a clock set back muted the answer');
});
