/**
 * The container's name in DHCP: the client FQDN options (DHCPv4 81, RFC 4702;
 * DHCPv6 39, RFC 4704) byte for byte, sent beside option 12, and the names
 * an identity gives (the e2e lane's lan-names.test has dnsmasq register them).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { acquire } from '../../src/dhcp/client';
import { clientFqdnOption, OPT } from '../../src/dhcp/message';
import { fqdnOption } from '../../src/dhcp/message6';
import { hostnameFromIdentity } from '../../src/driver/identity';
import { encodeDnsName, isHostName } from '../../src/net/dns-name';
import { identity, ScriptedChannel, answerWith } from '../support/dhcp-fakes';
import { exchangeDeadline } from '../../src/dhcp/channel';

const bytes = (...parts: (number | string)[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : Buffer.from(p))));

test('DNS names in wire format (RFC 1035 §3.1): length-prefixed labels, the root label ends a qualified name', () => {
  // RFC 1035 §4.1.4's example name F.ISI.ARPA.
  assert.deepEqual(encodeDnsName('F.ISI.ARPA', true), bytes(1, 'F', 3, 'ISI', 4, 'ARPA', 0));
  assert.deepEqual(encodeDnsName('web1', false), bytes(4, 'web1'));
  assert.throws(() => encodeDnsName('a'.repeat(64), true), /longer than 63/);
  assert.equal(isHostName('web1.lab.test'), true);
  assert.equal(isHostName('web_1'), false);
  assert.equal(isHostName('web1.'), false);
});

test('DHCPv4 client FQDN (RFC 4702): flags S|E, RCODEs 0, a single label partial, a dotted name fully qualified', () => {
  assert.deepEqual(clientFqdnOption('web1'), bytes(0x05, 0, 0, 4, 'web1'));
  assert.deepEqual(clientFqdnOption('web1.lab.test'), bytes(0x05, 0, 0, 4, 'web1', 3, 'lab', 4, 'test', 0));
});

test('DHCPv6 client FQDN (RFC 4704): flag S, the name in wire format, a single label partial', () => {
  assert.deepEqual(fqdnOption('web1'), bytes(0x01, 4, 'web1'));
  assert.deepEqual(fqdnOption('web1.lab.test'), bytes(0x01, 4, 'web1', 3, 'lab', 4, 'test', 0));
});

test('DISCOVER and REQUEST carry option 81 beside option 12; a name that is no host name goes in option 12 alone', async () => {
  for (const [hostname, fqdn] of [
    ['web', bytes(0x05, 0, 0, 3, 'web')],
    ['web_1', null],
  ] as const) {
    const channel = new ScriptedChannel((m) =>
      m.type === 'discover' ? answerWith('offer', m, '172.16.86.120') : answerWith('ack', m, '172.16.86.120'),
    );
    await acquire(channel, { ...identity, hostname }, { hint: null, deadline: exchangeDeadline(5000) });
    assert.equal(channel.sent.length, 2);
    for (const sent of channel.sent) {
      assert.equal(sent.options.get(OPT.hostname)?.toString(), hostname);
      assert.deepEqual(sent.options.get(OPT.clientFqdn) ?? null, fqdn, `${sent.type} of ${hostname}`);
    }
  }
});

test('the name an identity gives DHCP: the identity when it is a host name, dotted ones too', () => {
  assert.equal(hostnameFromIdentity('web1'), 'web1');
  assert.equal(hostnameFromIdentity('web1.lab.test'), 'web1.lab.test');
  assert.equal(hostnameFromIdentity('web_1'), null);
  assert.equal(hostnameFromIdentity('web:1'), null);
});
