/**
 * The LAN frames against golden bytes, field by field: RFC 5227 probes and
 * announcements, an RFC 4862 DAD solicitation and an RFC 4861 unsolicited
 * advertisement (their ICMPv6 checksums are the ones a real kernel accepted:
 * the Docker lane's conflict test gets its answers to exactly these frames).
 * And the decoders on what comes back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  arpAnnouncement,
  arpProbe,
  dadSolicitation,
  decodeArp,
  decodeNeighbor,
  icmpv6Checksum,
  multicastMac,
  solicitedNode,
  unsolicitedAdvertisement,
} from '../../src/l2/frames';
import { parseAddress } from '../../src/net/address';

function hex(text: string): Buffer {
  return Buffer.from(
    text
      .split('\n')
      .map((l) => l.replace(/#.*$/, ''))
      .join('')
      .replace(/\s+/g, ''),
    'hex',
  );
}

test('ARP probe: broadcast, sender IP 0.0.0.0, target MAC zero, target the candidate', () => {
  assert.deepEqual(
    arpProbe('02:42:ac:10:56:99', parseAddress('172.16.86.2')),
    hex(`
      ff ff ff ff ff ff  02 42 ac 10 56 99  08 06   # Ethernet: broadcast, from the probing link, ARP
      00 01  08 00  06  04  00 01                   # Ethernet/IPv4, 6- and 4-byte addresses, request
      02 42 ac 10 56 99  00 00 00 00                # sender: the probing link's MAC, IP 0.0.0.0
      00 00 00 00 00 00  ac 10 56 02                # target: MAC zero (RFC 5227 says SHOULD), the candidate
    `),
  );
});

test('ARP announcement: sender IP = target IP = the address, from the container MAC', () => {
  assert.deepEqual(
    arpAnnouncement('02:42:ac:10:56:02', parseAddress('172.16.86.2')),
    hex(`
      ff ff ff ff ff ff  02 42 ac 10 56 02  08 06
      00 01  08 00  06  04  00 01
      02 42 ac 10 56 02  ac 10 56 02                # sender: the container
      00 00 00 00 00 00  ac 10 56 02                # target IP: the same address
    `),
  );
});

test('DAD solicitation: from :: to the solicited-node group, hop limit 255, no source option', () => {
  assert.equal(solicitedNode(parseAddress('2001:db8:86::2')).text, 'ff02::1:ff00:2');
  assert.equal(multicastMac(parseAddress('ff02::1:ff00:2')), '33:33:ff:00:00:02');
  assert.deepEqual(
    dadSolicitation('02:42:ac:10:56:99', parseAddress('2001:db8:86::2')),
    hex(`
      33 33 ff 00 00 02  02 42 ac 10 56 99  86 dd   # Ethernet: to the group's MAC, IPv6
      60 00 00 00  00 18  3a  ff                    # IPv6: 24 bytes of ICMPv6, hop limit 255
      00000000 00000000 00000000 00000000           # source ::
      ff020000 00000000 00000001 ff000002           # destination ff02::1:ff00:2
      87 00  4c 65  00 00 00 00                     # ICMPv6 135 (NS), checksum 0x4c65, reserved
      20010db8 00860000 00000000 00000002           # target: the candidate
    `),
  );
});

test('unsolicited NA: to all nodes, Override set, Solicited clear, the MAC as target option', () => {
  const frame = unsolicitedAdvertisement('02:42:ac:10:56:02', parseAddress('2001:db8:86::2'));
  assert.deepEqual(
    frame,
    hex(`
      33 33 00 00 00 01  02 42 ac 10 56 02  86 dd
      60 00 00 00  00 20  3a  ff
      20010db8 00860000 00000000 00000002           # source: the address itself
      ff020000 00000000 00000000 00000001           # destination: all nodes
      88 00  f5 c8  20 00 00 00                     # ICMPv6 136 (NA), checksum, flags: Override
      20010db8 00860000 00000000 00000002           # target
      02 01  02 42 ac 10 56 02                      # option 2 (target link-layer address), 1 × 8 bytes
    `),
  );
  // The checksum over pseudo-header and message (its own field zero) is what was sent.
  const icmp = Buffer.from(frame.subarray(54));
  icmp.writeUInt16BE(0, 2);
  assert.equal(icmpv6Checksum(parseAddress('2001:db8:86::2'), parseAddress('ff02::1'), icmp), 0xf5c8);
});

test('decoders: an ARP reply, an announcement read back, a neighbour advertisement and our own NS', () => {
  const reply = hex(`
    02 42 ac 10 56 99  06 85 e9 52 4e de  08 06
    00 01 08 00 06 04 00 02
    06 85 e9 52 4e de  ac 10 56 02
    02 42 ac 10 56 99  00 00 00 00
  `);
  assert.deepEqual(decodeArp(reply), {
    op: 'reply',
    frameSource: '06:85:e9:52:4e:de',
    senderMac: '06:85:e9:52:4e:de',
    senderIp: parseAddress('172.16.86.2'),
    targetIp: parseAddress('0.0.0.0'),
  });
  assert.equal(
    decodeArp(arpAnnouncement('02:42:ac:10:56:02', parseAddress('172.16.86.2')))?.senderIp.text,
    '172.16.86.2',
  );
  const na = decodeNeighbor(unsolicitedAdvertisement('02:42:ac:10:56:02', parseAddress('2001:db8:86::2')));
  assert.deepEqual(na && [na.type, na.target.text, na.mac, na.solicited], [
    'advertisement',
    '2001:db8:86::2',
    '02:42:ac:10:56:02',
    false,
  ]);
  const ns = decodeNeighbor(dadSolicitation('02:42:ac:10:56:99', parseAddress('2001:db8:86::2')));
  assert.deepEqual(ns && [ns.type, ns.source.text, ns.target.text], ['solicitation', '::', '2001:db8:86::2']);
  assert.equal(decodeArp(Buffer.alloc(60)), null);
  assert.equal(decodeNeighbor(Buffer.alloc(100)), null);
});
