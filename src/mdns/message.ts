/**
 * Multicast DNS messages (RFC 6762 over RFC 1035's format): encode and
 * decode over Buffers, and the few messages a responder for address records
 * sends — probes (§8.1), announcements and answers (§6, §8.3), goodbyes
 * (§10.1). Nothing else: the responder's state is responder.ts.
 */
import { addressBytes, addressFromBytes, type IpAddress } from '../net/address';
import { encodeDnsName } from '../net/dns-name';

export const MDNS_PORT = 5353;
export const MDNS_GROUP_V4 = '224.0.0.251';
export const MDNS_MAC_V4 = '01:00:5e:00:00:fb';

export const TYPE_A = 1;
export const TYPE_AAAA = 28;
export const TYPE_ANY = 255;
export const CLASS_IN = 1;
const CLASS_ANY = 255;
/** §10.2: the top bit of a record's class in a response: the record replaces what caches hold for its name and type. */
const CACHE_FLUSH = 0x8000;
/** §5.4: the top bit of a question's class: a unicast answer is asked for (probes set it, §8.1). */
const UNICAST_RESPONSE = 0x8000;
const FLAG_RESPONSE = 0x8000;
const FLAG_AUTHORITATIVE = 0x0400;
/** §10: what a host's own address records are announced with (RFC 6762 recommends 120 s for them). */
export const HOST_RECORD_TTL = 120;
/** §6.7: a legacy unicast answer's TTL is at most 10 s. */
const LEGACY_TTL_MAX = 10;
/** RFC 1035 §4.1.4: a name is at most this many compression jumps deep before it is taken as a loop. */
const MAX_POINTERS = 32;
/** RFC 1035 §3.1: a name is at most 255 bytes on the wire (its labels' lengths and bytes, and the root's 0). */
const NAME_WIRE_MAX = 255;

export interface Question {
  name: string;
  type: number;
  /** The class without its top bit (IN, ANY). */
  qclass: number;
  unicastResponse: boolean;
}

export interface ResourceRecord {
  name: string;
  type: number;
  rclass: number;
  cacheFlush: boolean;
  ttl: number;
  data: Buffer;
}

export interface MdnsMessage {
  id: number;
  response: boolean;
  authoritative: boolean;
  questions: Question[];
  answers: ResourceRecord[];
  authorities: ResourceRecord[];
  additionals: ResourceRecord[];
}

/** Names compare without case (RFC 1035 §2.3.3; RFC 6762 §16 for ASCII). */
export function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

// ---- encoding (no name compression: a host's few records fit in a frame as they are) ----

export function encodeMdns(m: MdnsMessage): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(m.id, 0);
  header.writeUInt16BE((m.response ? FLAG_RESPONSE : 0) | (m.authoritative ? FLAG_AUTHORITATIVE : 0), 2);
  header.writeUInt16BE(m.questions.length, 4);
  header.writeUInt16BE(m.answers.length, 6);
  header.writeUInt16BE(m.authorities.length, 8);
  header.writeUInt16BE(m.additionals.length, 10);
  const questions = m.questions.map((q) => {
    const tail = Buffer.alloc(4);
    tail.writeUInt16BE(q.type, 0);
    tail.writeUInt16BE(q.qclass | (q.unicastResponse ? UNICAST_RESPONSE : 0), 2);
    return Buffer.concat([encodeDnsName(q.name, true), tail]);
  });
  const records = [...m.answers, ...m.authorities, ...m.additionals].map(encodeRecord);
  return Buffer.concat([header, ...questions, ...records]);
}

function encodeRecord(r: ResourceRecord): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(r.type, 0);
  fixed.writeUInt16BE(r.rclass | (r.cacheFlush ? CACHE_FLUSH : 0), 2);
  fixed.writeUInt32BE(r.ttl >>> 0, 4);
  fixed.writeUInt16BE(r.data.length, 8);
  return Buffer.concat([encodeDnsName(r.name, true), fixed, r.data]);
}

// ---- decoding ----

/** A message, or null for anything malformed (a LAN's stray traffic is no error of lanplug's). */
export function decodeMdns(b: Buffer): MdnsMessage | null {
  try {
    if (b.length < 12) return null;
    const flags = b.readUInt16BE(2);
    const counts = [b.readUInt16BE(4), b.readUInt16BE(6), b.readUInt16BE(8), b.readUInt16BE(10)] as const;
    let off = 12;
    const questions: Question[] = [];
    for (let i = 0; i < counts[0]; i++) {
      const name = readName(b, off);
      off = name.end;
      const type = b.readUInt16BE(off);
      const qclass = b.readUInt16BE(off + 2);
      off += 4;
      questions.push({
        name: name.text,
        type,
        qclass: qclass & ~UNICAST_RESPONSE,
        unicastResponse: (qclass & UNICAST_RESPONSE) !== 0,
      });
    }
    const sections: ResourceRecord[][] = [[], [], []];
    for (const [s, section] of sections.entries()) {
      for (let i = 0; i < (counts[s + 1] ?? 0); i++) {
        const name = readName(b, off);
        off = name.end;
        const type = b.readUInt16BE(off);
        const rclass = b.readUInt16BE(off + 2);
        const ttl = b.readUInt32BE(off + 4);
        const length = b.readUInt16BE(off + 8);
        off += 10;
        if (off + length > b.length) return null;
        section.push({
          name: name.text,
          type,
          rclass: rclass & ~CACHE_FLUSH,
          cacheFlush: (rclass & CACHE_FLUSH) !== 0,
          ttl,
          data: Buffer.from(b.subarray(off, off + length)),
        });
        off += length;
      }
    }
    return {
      id: b.readUInt16BE(0),
      response: (flags & FLAG_RESPONSE) !== 0,
      authoritative: (flags & FLAG_AUTHORITATIVE) !== 0,
      questions,
      answers: sections[0] ?? [],
      authorities: sections[1] ?? [],
      additionals: sections[2] ?? [],
    };
  } catch {
    return null; // a read past the end (RangeError): a truncated message
  }
}

/**
 * A name at `off`, following compression pointers (RFC 1035 §4.1.4); `end`: where the name's bytes end at `off`.
 * A pointer must point back, to a name met before, and the name must fit RFC 1035's 255 bytes: a LAN
 * device's packet then costs at most 255 bytes of reading per name, however its pointers are laid out.
 */
function readName(b: Buffer, off: number): { text: string; end: number } {
  const labels: string[] = [];
  let end: number | null = null;
  let wire = 1; // the root label
  for (let jumps = 0; ;) {
    const length = b.readUInt8(off);
    if (length === 0) {
      end ??= off + 1;
      break;
    }
    if ((length & 0xc0) === 0xc0) {
      if (++jumps > MAX_POINTERS) throw new RangeError('a compression loop');
      end ??= off + 2;
      const target = ((length & 0x3f) << 8) | b.readUInt8(off + 1);
      if (target >= off) throw new RangeError('a compression pointer that does not point back');
      off = target;
      continue;
    }
    if ((length & 0xc0) !== 0) throw new RangeError('a label type RFC 1035 does not define');
    if (off + 1 + length > b.length) throw new RangeError('a label past the end');
    wire += 1 + length;
    if (wire > NAME_WIRE_MAX) throw new RangeError('a name longer than 255 bytes');
    labels.push(b.toString('latin1', off + 1, off + 1 + length));
    off += 1 + length;
  }
  return { text: labels.join('.'), end };
}

// ---- a host's address records ----

/** The A or AAAA record of `address` under `name`, unique to its owner (cache-flush set, §10.2). */
export function addressRecord(name: string, address: IpAddress, ttl = HOST_RECORD_TTL): ResourceRecord {
  return {
    name,
    type: address.family === 4 ? TYPE_A : TYPE_AAAA,
    rclass: CLASS_IN,
    cacheFlush: true,
    ttl,
    data: addressBytes(address),
  };
}

/** The address an A or AAAA record holds, or null for any other record. */
export function recordAddress(r: ResourceRecord): IpAddress | null {
  if (r.type === TYPE_A && r.data.length === 4) return addressFromBytes(r.data);
  if (r.type === TYPE_AAAA && r.data.length === 16) return addressFromBytes(r.data);
  return null;
}

/**
 * §8.1-§8.2: a query for `name` of type ANY, asking for a unicast answer,
 * with the records the prober means to own in its authority section (so that
 * two hosts probing at once can tell which one wins).
 */
export function probeMessage(name: string, addresses: readonly IpAddress[]): MdnsMessage {
  return {
    id: 0,
    response: false,
    authoritative: false,
    questions: [{ name, type: TYPE_ANY, qclass: CLASS_IN, unicastResponse: true }],
    answers: [],
    authorities: addresses.map((a) => ({ ...addressRecord(name, a), cacheFlush: false })),
    additionals: [],
  };
}

/** §8.3, §6: an unsolicited or multicast response holding `records`; TTL 0 for a goodbye (§10.1). */
export function responseMessage(records: readonly ResourceRecord[]): MdnsMessage {
  return {
    id: 0,
    response: true,
    authoritative: true,
    questions: [],
    answers: [...records],
    authorities: [],
    additionals: [],
  };
}

/**
 * §6.7: the answer to a legacy unicast query (one not from port 5353): the
 * query's id and the questions it answers repeated, short TTLs, no
 * cache-flush bit (a plain resolver would not know it). Only the questions
 * answered: a query of many names (its source address may be forged) gets
 * an answer no larger than the records.
 */
export function legacyResponse(query: MdnsMessage, records: readonly ResourceRecord[]): MdnsMessage {
  return {
    id: query.id,
    response: true,
    authoritative: true,
    questions: query.questions.filter((q) => records.some((r) => asks(q, r))),
    answers: records.map((r) => ({ ...r, cacheFlush: false, ttl: Math.min(r.ttl, LEGACY_TTL_MAX) })),
    authorities: [],
    additionals: [],
  };
}

/** Whether question `q` asks for `record` (its name, its type or ANY, class IN or ANY). */
export function asks(q: Question, record: ResourceRecord): boolean {
  return (
    sameName(q.name, record.name) &&
    (q.type === record.type || q.type === TYPE_ANY) &&
    (q.qclass === CLASS_IN || q.qclass === CLASS_ANY)
  );
}

/**
 * §7.1 known-answer suppression: a record the querier says it holds (in its
 * answer section) with at least half the true TTL left is not sent again.
 */
export function knownToQuerier(query: MdnsMessage, record: ResourceRecord): boolean {
  return query.answers.some(
    (k) =>
      sameName(k.name, record.name) && k.type === record.type && k.data.equals(record.data) && k.ttl >= record.ttl / 2,
  );
}

/**
 * §8.2 simultaneous probe tiebreaking: the records of two probers compared
 * class, type, then data bytes, in sorted order; the lexicographically later
 * set wins. Positive: `ours` wins; negative: `theirs`; 0: the same records.
 */
export function compareProbes(ours: readonly ResourceRecord[], theirs: readonly ResourceRecord[]): number {
  const sorted = (rs: readonly ResourceRecord[]): ResourceRecord[] => [...rs].sort(compareRecords);
  const a = sorted(ours);
  const b = sorted(theirs);
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareRecords(a[i] as ResourceRecord, b[i] as ResourceRecord);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

function compareRecords(a: ResourceRecord, b: ResourceRecord): number {
  return a.rclass - b.rclass || a.type - b.type || Buffer.compare(a.data, b.data);
}
