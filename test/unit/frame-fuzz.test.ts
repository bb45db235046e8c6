/**
 * Whatever a device on the LAN sends reaches these decoders first: ARP and
 * neighbour discovery (the probes, the LAN watch), UDP in IPv4 and IPv6
 * frames, DHCPv4 and DHCPv6 messages and their options. Fed seeded mutations
 * of valid frames (bits flipped, bytes overwritten, lengths set to their
 * extremes, frames cut short or grown), each must answer a value or null and
 * never throw: a throw in a receive callback would end a probe or an exchange
 * with an error instead of ignoring one bad frame. The seed is printed, and
 * LANPLUG_FUZZ_SEED replays a run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import {
  arpAnnouncement,
  arpProbe,
  dadSolicitation,
  decodeArp,
  decodeNeighbor,
  unsolicitedAdvertisement,
} from '../../src/l2/frames';
import { decodeUdp6Frame, decodeUdpFrame, encodeUdp6Frame, encodeUdpFrame } from '../../src/l2/udp-frames';
import {
  decodeDhcp,
  encodeDhcp,
  ipv4Option,
  OPT,
  readAddress,
  readAddresses,
  readPrefixLength,
  readSeconds,
  secondsOption,
} from '../../src/dhcp/message';
import { decodeDhcp6, decodeIaNa, encodeDhcp6, encodeIaNa, OPT6, option, statusOf } from '../../src/dhcp/message6';
import { parseAddress } from '../../src/net/address';

/** Mutated frames per decoder family. */
const ROUNDS = 100_000;
const SEED = Number(process.env['LANPLUG_FUZZ_SEED'] ?? randomInt(1, 2 ** 31));

/** mulberry32: small, fast, and the same sequence for the same seed. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function mutate(seed: Buffer, random: () => number): Buffer {
  const below = (n: number): number => Math.floor(random() * n);
  let frame = Buffer.from(seed);
  const edits = 1 + below(4);
  for (let i = 0; i < edits; i++) {
    switch (below(6)) {
      case 0: {
        // flip a bit
        const at = below(frame.length);
        if (frame.length > 0) frame[at] = (frame[at] ?? 0) ^ (1 << below(8));
        break;
      }
      case 1: // overwrite a byte
        if (frame.length > 0) frame[below(frame.length)] = below(256);
        break;
      case 2: // a 16-bit field at its extremes (lengths, option sizes)
        if (frame.length > 1) frame.writeUInt16BE([0, 0xffff, 1, 0x8000][below(4)] ?? 0, below(frame.length - 1));
        break;
      case 3: // cut short
        frame = frame.subarray(0, below(frame.length + 1));
        break;
      case 4: // grown with noise
        frame = Buffer.concat([frame, Buffer.from(Array.from({ length: 1 + below(64) }, () => below(256)))]);
        break;
      default: // a region copied elsewhere (options repeated, nested lengths confused)
        if (frame.length > 2) {
          const from = below(frame.length);
          const length = below(frame.length - from);
          frame = Buffer.concat([frame.subarray(0, below(frame.length)), frame.subarray(from, from + length), frame]);
        }
    }
  }
  return frame;
}

/** Runs `decode` on ROUNDS mutations of the seeds; returns how many decoded to a value (must not be all or none). */
function fuzz(name: string, seeds: readonly Buffer[], decode: (frame: Buffer) => unknown): number {
  const random = generator(SEED ^ name.length);
  let decoded = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const frame = mutate(seeds[i % seeds.length] ?? Buffer.alloc(0), random);
    try {
      if (decode(frame) !== null) decoded++;
    } catch (err) {
      assert.fail(
        `${name} threw on round ${i} (LANPLUG_FUZZ_SEED=${SEED}): ${String(err)}\nframe: ${frame.toString('hex')}`,
      );
    }
  }
  process.stdout.write(`# ${name}: ${decoded} of ${ROUNDS} mutated frames decoded (seed ${SEED})\n`);
  return decoded;
}

const MAC = '02:42:ac:10:56:02';
const SERVER_MAC = '06:85:e9:52:4e:de';
const V4 = parseAddress('172.16.86.2');
const V6 = parseAddress('2001:db8:86::2');

function dhcpFrame(type: 'offer' | 'ack' | 'nak'): Buffer {
  const payload = encodeDhcp({
    reply: true,
    xid: 0x1234abcd,
    secs: 0,
    broadcast: true,
    ciaddr: parseAddress('0.0.0.0'),
    yiaddr: V4,
    chaddr: MAC,
    type,
    options: new Map([
      [OPT.serverId, ipv4Option(parseAddress('172.16.86.1'))],
      [OPT.subnetMask, ipv4Option(parseAddress('255.255.255.0'))],
      [OPT.router, ipv4Option(parseAddress('172.16.86.1'))],
      [OPT.leaseTime, secondsOption(3600)],
      [OPT.renewalTime, secondsOption(1800)],
      [OPT.dnsServers, Buffer.concat([ipv4Option(V4), ipv4Option(parseAddress('172.16.86.1'))])],
    ]),
  });
  return encodeUdpFrame({
    sourceMac: SERVER_MAC,
    destinationMac: 'ff:ff:ff:ff:ff:ff',
    source: parseAddress('172.16.86.1'),
    destination: parseAddress('255.255.255.255'),
    sourcePort: 67,
    destinationPort: 68,
    payload,
  });
}

function dhcp6Frame(type: 'advertise' | 'reply'): Buffer {
  const status = Buffer.concat([Buffer.from([0, 3]), Buffer.from('no binding')]);
  const payload = encodeDhcp6({
    type,
    xid: 0xabcdef,
    options: [
      { code: OPT6.clientId, value: Buffer.from('00030001024242ac1056', 'hex') },
      { code: OPT6.serverId, value: Buffer.from('000100012c3d4e5f0685e9524ede', 'hex') },
      {
        code: OPT6.iaNa,
        value: encodeIaNa({
          iaid: 1,
          renewSeconds: 1800,
          rebindSeconds: 2880,
          addresses: [{ address: V6, preferredSeconds: 3600, validSeconds: 7200 }],
          status: null,
        }),
      },
      { code: OPT6.statusCode, value: status },
      { code: OPT6.dnsServers, value: Buffer.alloc(16, 1) },
    ],
  });
  return encodeUdp6Frame({
    sourceMac: SERVER_MAC,
    destinationMac: MAC,
    source: parseAddress('fe80::485:e9ff:fe52:4ede'),
    destination: parseAddress('fe80::42:acff:fe10:5602'),
    sourcePort: 547,
    destinationPort: 546,
    payload,
  });
}

test('ARP and neighbour discovery decoders: mutated frames give a message or null, never a throw', () => {
  const arp = fuzz('ARP', [arpProbe(MAC, V4), arpAnnouncement(MAC, V4)], decodeArp);
  const nd = fuzz('neighbour discovery', [dadSolicitation(MAC, V6), unsolicitedAdvertisement(MAC, V6)], decodeNeighbor);
  for (const decoded of [arp, nd]) assert.ok(decoded > 0 && decoded < ROUNDS, 'the mutations reach the decoder');
});

test('DHCPv4 in UDP in IPv4: the frame, the message and every option lanplug reads survive mutation', () => {
  const decoded = fuzz('DHCPv4', [dhcpFrame('offer'), dhcpFrame('ack'), dhcpFrame('nak')], (frame) => {
    const udp = decodeUdpFrame(frame);
    const message = udp === null ? null : decodeDhcp(udp.payload);
    if (message === null) return null;
    for (const code of [OPT.serverId, OPT.router, OPT.subnetMask]) readAddress(message.options, code);
    readAddresses(message.options, OPT.dnsServers);
    for (const code of [OPT.leaseTime, OPT.renewalTime, OPT.rebindingTime]) readSeconds(message.options, code);
    readPrefixLength(message.options);
    return message;
  });
  assert.ok(decoded > 0 && decoded < ROUNDS);
});

test('DHCPv6 in UDP in IPv6: the frame, the message, its IA_NA and status survive mutation', () => {
  const decoded = fuzz('DHCPv6', [dhcp6Frame('advertise'), dhcp6Frame('reply')], (frame) => {
    const udp = decodeUdp6Frame(frame);
    const message = udp === null ? null : decodeDhcp6(udp.payload);
    if (message === null) return null;
    statusOf(message);
    const ia = option(message, OPT6.iaNa);
    if (ia !== null) decodeIaNa(ia);
    return message;
  });
  assert.ok(decoded > 0 && decoded < ROUNDS);
});
