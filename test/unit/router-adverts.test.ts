/**
 * What the kernel's notifications of a router advertisement say (netlink/router-adverts.ts), from their
 * bytes as linux/rtnetlink.h lays them out: prefixes with their A flag, RDNSS and DNSSL (RFC 8106), for
 * one link. The e2e dualstack test hears them from a real kernel and dnsmasq.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressBytes, parseAddress } from '../../src/net/address';
import { decodeDnsNames } from '../../src/net/dns-name';
import { addNotes, RTM_NEWNDUSEROPT, RTM_NEWPREFIX, type AdvertNotes } from '../../src/netlink/router-adverts';

const empty = (): AdvertNotes => ({ autoconf: false, prefixes: 0, servers: [], search: [] });

/** struct prefixmsg (12 bytes), the option's flag byte as the kernel copies it. */
function prefixMsg(
  index: number,
  flags: number,
): { type: number; flags: number; seq: number; pid: number; payload: Buffer } {
  const b = Buffer.alloc(12);
  b[0] = 10;
  b.writeInt32LE(index, 4);
  b[8] = 3;
  b[9] = 64;
  b[10] = flags;
  return { type: RTM_NEWPREFIX, flags: 0, seq: 0, pid: 0, payload: b };
}

/** struct nduseroptmsg (16 bytes) and one ND option: type, length in 8 bytes, reserved, lifetime, body. */
function userOpt(index: number, type: number, lifetime: number, body: Buffer) {
  const option = Buffer.alloc(8 + Math.ceil(body.length / 8) * 8);
  option[0] = type;
  option[1] = option.length / 8;
  option.writeUInt32BE(lifetime, 4);
  body.copy(option, 8);
  const head = Buffer.alloc(16);
  head[0] = 10;
  head.writeUInt16LE(option.length, 2);
  head.writeInt32LE(index, 4);
  head[8] = 134;
  return { type: RTM_NEWNDUSEROPT, flags: 0, seq: 0, pid: 0, payload: Buffer.concat([head, option]) };
}

const names = (...n: string[]): Buffer =>
  Buffer.concat(
    n.map((name) =>
      Buffer.concat([
        ...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
        Buffer.from([0]),
      ]),
    ),
  );

test('the notifications of an advertisement on one link: its prefixes and whether one has the A flag, its RDNSS servers and DNSSL names; other links and withdrawn options (lifetime 0) left out', () => {
  const servers = Buffer.concat([
    addressBytes(parseAddress('2001:db8::53')),
    addressBytes(parseAddress('2001:db8::54')),
  ]);
  const notes = addNotes(
    empty(),
    [
      prefixMsg(4, 0x80), // L only: on-link, no autoconfiguration
      userOpt(4, 25, 600, servers),
      userOpt(5, 25, 600, addressBytes(parseAddress('2001:db8::99'))), // another link's
      userOpt(4, 25, 0, addressBytes(parseAddress('2001:db8::98'))), // withdrawn
      userOpt(4, 31, 600, names('lan.example', 'corp.example')),
    ],
    4,
  );
  assert.deepEqual(notes, {
    autoconf: false,
    prefixes: 1,
    servers: ['2001:db8::53', '2001:db8::54'],
    search: ['lan.example', 'corp.example'],
  });
  assert.equal(addNotes(empty(), [prefixMsg(4, 0xc0)], 4).autoconf, true, 'L and A');
  assert.equal(addNotes(empty(), [prefixMsg(5, 0xc0)], 4).prefixes, 0, "another link's prefix");
});

test('DNS names in wire format: padding skipped, a malformed tail ends the list with the names before it', () => {
  assert.deepEqual(decodeDnsNames(Buffer.concat([names('a.example', 'b'), Buffer.alloc(5)])), ['a.example', 'b']);
  assert.deepEqual(decodeDnsNames(Buffer.concat([names('ok.example'), Buffer.from([0xc0, 0x0c])])), ['ok.example']);
  assert.deepEqual(decodeDnsNames(Buffer.from([5, 0x61, 0x62])), []);
});
