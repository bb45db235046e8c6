import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddress, parsePrefix, prefixContains, formatPrefix, sameAddress } from '../../src/net/address';
import { addressesOf, shortId } from '../../src/model/network';
import { macFromIpv4, macFromKey, randomMac } from '../../src/ipam/mac';
import { parseMac } from '../../src/net/mac';
import { LanplugError } from '../../src/errors';

test('MAC from IPv4 as Docker 20.10 derives it (the seed: 172.16.86.2 -> 02:42:ac:10:56:02)', () => {
  assert.equal(macFromIpv4(parseAddress('172.16.86.2')), '02:42:ac:10:56:02');
  assert.equal(macFromIpv4(parseAddress('192.168.32.128')), '02:42:c0:a8:20:80');
  assert.equal(macFromIpv4(parseAddress('10.0.0.255')), '02:42:0a:00:00:ff');
});

test('random MAC is unicast and locally administered', () => {
  assert.equal(
    randomMac(() => Uint8Array.from([0xff, 1, 2, 3, 4, 5])),
    'fe:01:02:03:04:05',
  );
  assert.equal(
    randomMac(() => Uint8Array.from([0x00, 1, 2, 3, 4, 5])),
    '02:01:02:03:04:05',
  );
  for (let i = 0; i < 100; i++) {
    const first = parseInt(randomMac().slice(0, 2), 16);
    assert.equal(first & 0x03, 0x02);
  }
});

test("a MAC from a key is the key's alone: the same at every call, another for another key, unicast and locally administered", () => {
  const keys = Array.from({ length: 1000 }, (_, i) => `attachment-${i}`);
  const macs = keys.map(macFromKey);
  assert.deepEqual(keys.map(macFromKey), macs);
  assert.equal(new Set(macs).size, keys.length);
  for (const mac of macs) assert.equal(parseInt(mac.slice(0, 2), 16) & 0x03, 0x02, mac);
});

test('user MACs are canonicalised and multicast refused', () => {
  assert.equal(parseMac('02-42-AC-10-56-02'), '02:42:ac:10:56:02');
  assert.throws(() => parseMac('01:00:5e:00:00:01'), LanplugError);
  assert.throws(() => parseMac('02:42:ac:10:56'), LanplugError);
});

test('prefixes: containment, IPv6 canonical text', () => {
  const pool = parsePrefix('172.16.86.0/24');
  assert.ok(prefixContains(pool, parseAddress('172.16.86.200')));
  assert.ok(!prefixContains(pool, parseAddress('172.16.87.1')));
  assert.ok(!prefixContains(pool, parseAddress('2001:db8::1')));
  const v6 = parsePrefix('2001:DB8:abc8:0:0::/64');
  assert.equal(formatPrefix(v6), '2001:db8:abc8::/64');
  assert.ok(prefixContains(v6, parseAddress('2001:db8:abc8::10')));
  assert.equal(parseAddress('::ffff:1.2.3.4').text, '::ffff:102:304');
  assert.equal(parseAddress('2001:db8:0:1:0:0:0:1').text, '2001:db8:0:1::1');
  assert.throws(() => parsePrefix('172.16.86.0/33'), LanplugError);
  assert.throws(() => parsePrefix('172.16.86.0'), LanplugError);
  assert.throws(() => parseAddress('fe80::1%eth0'), LanplugError);
});

test('the shared words: one address whatever its text, an endpoint’s addresses IPv4 first, a Docker id as messages name it', () => {
  assert.equal(sameAddress(parseAddress('2001:db8::1'), parseAddress('2001:DB8:0:0::1')), true);
  assert.equal(sameAddress(parseAddress('0.0.0.1'), parseAddress('::1')), false, 'the same value in two families');
  assert.equal(sameAddress(parseAddress('172.16.86.2'), null), false);
  assert.equal(sameAddress(null, null), true);
  const v4 = parsePrefix('172.16.86.2/24');
  const v6 = parsePrefix('fd77::2/64');
  assert.deepEqual(
    addressesOf({ ipv4: v4, ipv6: v6 }).map((a) => a.text),
    ['172.16.86.2', 'fd77::2'],
  );
  assert.deepEqual(addressesOf({ ipv4: null, ipv6: v6 }), [v6.address]);
  assert.deepEqual(addressesOf({ ipv4: null, ipv6: null }), []);
  assert.equal(shortId('5e3ec79625d3b1a5f0c7e6d4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4'), '5e3ec79625d3');
});
