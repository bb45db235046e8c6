/**
 * The DHCPv4 client's wire formats and transactions. The frames are checked
 * byte for byte where RFC 2131 fixes them; the transactions run against a
 * scripted server on a fake channel (test/support/dhcp-fakes.ts; the Docker
 * lane runs them against dnsmasq on a real LAN).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { acquire, renew } from '../../src/dhcp/client';
import {
  decodeDhcp,
  encodeDhcp,
  isReplyTo,
  malformedOptions,
  OPT,
  parseDhcp,
  readPrefixLength,
  ZERO_V4,
  type DhcpMessage,
} from '../../src/dhcp/message';
import { decodeUdpFrame, encodeUdpFrame, internetChecksum } from '../../src/l2/udp-frames';
import { boundedLeaseSeconds, INFINITE_SECONDS, leaseTimes } from '../../src/model/lease';
import { refuseOffered } from '../../src/dhcp/offer-rules';
import { parseAddress, parsePrefix, type IpAddress } from '../../src/net/address';
import {
  identity,
  SERVER_MAC,
  ScriptedChannel,
  answerWith,
  emptyRequest,
  exchangeOnSteppedClocks,
} from '../support/dhcp-fakes';
import { exchangeDeadline } from '../../src/dhcp/channel';

test('a DHCP message: fixed fields where RFC 2131 puts them, options after the magic cookie, read back the same', () => {
  const m: DhcpMessage = {
    reply: false,
    xid: 0x01020304,
    secs: 3,
    broadcast: true,
    ciaddr: ZERO_V4,
    yiaddr: ZERO_V4,
    chaddr: identity.mac,
    type: 'discover',
    options: new Map([[OPT.clientId, Buffer.from(identity.clientId, 'hex')]]),
  };
  const b = encodeDhcp(m);
  assert.equal(b.length, 300, 'padded to BOOTP minimum');
  assert.deepEqual([...b.subarray(0, 4)], [1, 1, 6, 0]);
  assert.equal(b.readUInt32BE(4), 0x01020304);
  assert.equal(b.readUInt16BE(10), 0x8000, 'broadcast flag');
  assert.equal(b.subarray(28, 34).toString('hex'), '020000000009');
  assert.equal(b.readUInt32BE(236), 0x63825363);
  assert.deepEqual([...b.subarray(240, 243)], [53, 1, 1], 'message type first');
  assert.deepEqual(decodeDhcp(b), m);
  assert.equal(decodeDhcp(b.subarray(0, 200)), null);
});

test('a UDP frame: IPv4 header checksum verifies, the datagram reads back, fragments and other protocols are not UDP', () => {
  const frame = encodeUdpFrame({
    sourceMac: identity.mac,
    destinationMac: 'ff:ff:ff:ff:ff:ff',
    source: ZERO_V4,
    destination: parseAddress('255.255.255.255'),
    sourcePort: 68,
    destinationPort: 67,
    payload: Buffer.from('hello'),
  });
  assert.equal(internetChecksum(frame.subarray(14, 34)), 0);
  const d = decodeUdpFrame(frame);
  assert.equal(d?.payload.toString(), 'hello');
  assert.equal(d?.sourcePort, 68);
  const fragment = Buffer.from(frame);
  fragment.writeUInt16BE(0x2000, 20);
  assert.equal(decodeUdpFrame(fragment), null);
  const arp = Buffer.from(frame);
  arp.writeUInt16BE(0x0806, 12);
  assert.equal(decodeUdpFrame(arp), null);
});

test('a subnet mask becomes a prefix length; a mask with holes is no prefix', () => {
  const with_ = (hex: string): number | null => readPrefixLength(new Map([[OPT.subnetMask, Buffer.from(hex, 'hex')]]));
  assert.equal(with_('ffffff00'), 24);
  assert.equal(with_('fffffffc'), 30);
  assert.equal(with_('00000000'), 0);
  assert.equal(with_('ff00ff00'), null);
});

test('acquire: DISCOVER with the hint, REQUEST of the offer to its server, the ACK as a lease with RFC 2131 default T1/T2', async () => {
  const channel = new ScriptedChannel((m) =>
    m.type === 'discover' ? answerWith('offer', m, '172.16.86.120') : answerWith('ack', m, '172.16.86.120'),
  );
  const lease = await acquire(channel, identity, {
    hint: parseAddress('172.16.86.120'),
    deadline: exchangeDeadline(5000),
  });
  const [discover, request] = channel.sent;
  assert.equal(discover?.type, 'discover');
  assert.equal(discover?.broadcast, true, 'no address yet: answers broadcast');
  assert.deepEqual([...(discover?.options.get(OPT.requestedAddress) ?? [])], [172, 16, 86, 120]);
  assert.equal(discover?.options.get(OPT.hostname)?.toString(), 'web');
  assert.equal(discover?.options.get(OPT.clientId)?.toString('hex'), identity.clientId);
  assert.equal(request?.type, 'request');
  assert.equal(request?.xid, discover?.xid);
  assert.deepEqual([...(request?.options.get(OPT.serverId) ?? [])], [172, 16, 86, 1]);
  assert.equal(`${lease.address.address.text}/${lease.address.prefixLength}`, '172.16.86.120/24');
  assert.deepEqual(
    lease.dns.map((a) => a.text),
    ['172.16.86.53', '172.16.86.1'],
  );
  assert.equal(lease.serverMac, SERVER_MAC);
  assert.deepEqual([lease.leaseSeconds, lease.renewSeconds, lease.rebindSeconds], [120, 60, 105]);
});

test('acquire: a NAK starts over with a new DISCOVER; no server at all is a one-line error naming the link and the budget', async () => {
  let naks = 1;
  const channel = new ScriptedChannel((m) => {
    if (m.type === 'discover') return answerWith('offer', m, '172.16.86.121');
    return naks-- > 0 ? answerWith('nak', m, '0.0.0.0') : answerWith('ack', m, '172.16.86.121');
  });
  await acquire(channel, identity, { hint: null, deadline: exchangeDeadline(5000) });
  assert.deepEqual(
    channel.sent.map((m) => m.type),
    ['discover', 'request', 'discover', 'request'],
  );
  const silent = new ScriptedChannel(() => null);
  // The message names the budget rounded to a second: 2000 ms, not 1500, so a
  // millisecond between here and acquire's start cannot round it down to 1 s.
  await assert.rejects(acquire(silent, identity, { hint: null, deadline: exchangeDeadline(2000) }), {
    message: 'no DHCP server answered on eth0 within 2 s',
  });
  assert.ok(silent.sent.length >= 2, 'DISCOVER sent again within the budget');
});

test('acquire: an acknowledged address the LAN check finds in use is declined (broadcast from 0.0.0.0, naming its server) and the next one taken without asking for it again; only taken ones: one line naming them', async () => {
  let next = 130;
  const channel = new ScriptedChannel((m) => {
    if (m.type === 'decline') return null;
    if (m.type === 'discover') return answerWith('offer', m, `172.16.86.${next}`);
    return answerWith('ack', m, `172.16.86.${next++}`);
  });
  const checked: string[] = [];
  const lease = await acquire(channel, identity, {
    hint: parseAddress('172.16.86.130'),
    deadline: exchangeDeadline(5000),
    check: (address) => {
      checked.push(address.text);
      return Promise.resolve(
        address.text === '172.16.86.130' ? 'in use by 02:aa:00:00:00:01 (it answered an ARP probe on eth0)' : null,
      );
    },
  });
  assert.equal(lease.address.address.text, '172.16.86.131');
  assert.deepEqual(checked, ['172.16.86.130', '172.16.86.131']);
  assert.deepEqual(
    channel.sent.map((m) => m.type),
    ['discover', 'request', 'decline', 'discover', 'request'],
  );
  const decline = channel.sent[2];
  assert.deepEqual([...(decline?.options.get(OPT.requestedAddress) ?? [])], [172, 16, 86, 130]);
  assert.deepEqual([...(decline?.options.get(OPT.serverId) ?? [])], [172, 16, 86, 1]);
  assert.equal(decline?.ciaddr.text, '0.0.0.0');
  assert.equal(decline?.options.has(OPT.parameterList), false, 'no parameters in a DHCPDECLINE (RFC 2131 table 5)');
  assert.match(decline?.options.get(OPT.message)?.toString() ?? '', /in use by 02:aa:00:00:00:01/);
  assert.equal(
    channel.sent[3]?.options.has(OPT.requestedAddress),
    false,
    'the declined address is not asked for again',
  );

  const squatted = new ScriptedChannel((m) =>
    m.type === 'decline' ? null : answerWith(m.type === 'discover' ? 'offer' : 'ack', m, '172.16.86.140'),
  );
  await assert.rejects(
    acquire(squatted, identity, {
      hint: null,
      deadline: exchangeDeadline(10_000),
      check: () => Promise.resolve('in use by 02:aa:00:00:00:02 (it answered an ARP probe on eth0)'),
    }),
    {
      message:
        'the DHCP server offered only addresses in use on the LAN on eth0 (declined: 172.16.86.140, in use by 02:aa:00:00:00:02 (it answered an ARP probe on eth0))',
    },
  );
});

test('renew: unicast REQUEST with the address as ciaddr and no server id; rebind the same, broadcast', async () => {
  const channel = new ScriptedChannel((m) => answerWith('ack', m, m.ciaddr.text));
  const held = await acquire(
    new ScriptedChannel((m) => answerWith(m.type === 'discover' ? 'offer' : 'ack', m, '172.16.86.122')),
    identity,
    { hint: null, deadline: exchangeDeadline(5000) },
  );
  const outcome = await renew(channel, identity, held, 'renew', exchangeDeadline(5000));
  assert.equal(outcome.kind, 'ack');
  const [request] = channel.sent;
  assert.equal(request?.ciaddr.text, '172.16.86.122');
  assert.equal(request?.options.has(OPT.serverId), false);
  assert.equal(request?.options.has(OPT.requestedAddress), false);
});

test('renew: an ACK that moves the lease onto another address goes through the offer check with the client’s own MAC; refused, it is declined (DHCPDECLINE of it, from 0.0.0.0, naming its server) and never the lease; an ACK of the address held is not checked', async () => {
  const held = await acquire(
    new ScriptedChannel((m) => answerWith(m.type === 'discover' ? 'offer' : 'ack', m, '172.16.86.123')),
    identity,
    { hint: null, deadline: exchangeDeadline(5000) },
  );
  const checked: string[] = [];
  const hostOnly = (address: IpAddress, ownMac: string): Promise<string | null> => {
    checked.push(`${address.text} ${ownMac}`);
    return Promise.resolve(
      address.text === '172.16.86.5' ? 'in use by this host (it holds the address on eth0)' : null,
    );
  };
  const same = await renew(
    new ScriptedChannel((m) => answerWith('ack', m, m.ciaddr.text)),
    identity,
    held,
    'renew',
    exchangeDeadline(5000),
    hostOnly,
  );
  assert.equal(same.kind === 'ack' ? same.lease.address.address.text : same.kind, '172.16.86.123');
  assert.deepEqual(checked, [], 'the address held needs no check');

  // A rebind is broadcast: whoever answers it first may name this host's address.
  const rogue = new ScriptedChannel((m) => (m.type === 'request' ? answerWith('ack', m, '172.16.86.5') : null));
  const onHost = await renew(rogue, identity, held, 'rebind', exchangeDeadline(5000), hostOnly);
  assert.deepEqual(onHost, {
    kind: 'declined',
    message: 'declined 172.16.86.5, in use by this host (it holds the address on eth0)',
  });
  assert.deepEqual(checked, [`172.16.86.5 ${identity.mac}`]);
  assert.deepEqual(
    rogue.sent.map((m) => m.type),
    ['request', 'decline'],
  );
  const decline = rogue.sent[1];
  assert.deepEqual([...(decline?.options.get(OPT.requestedAddress) ?? [])], [172, 16, 86, 5]);
  assert.deepEqual([...(decline?.options.get(OPT.serverId) ?? [])], [172, 16, 86, 1]);
  assert.equal(decline?.ciaddr.text, '0.0.0.0');
  assert.match(decline?.options.get(OPT.message)?.toString() ?? '', /in use by this host/);

  const elsewhere = await renew(
    new ScriptedChannel((m) => answerWith('ack', m, '172.16.86.124')),
    identity,
    held,
    'renew',
    exchangeDeadline(5000),
    hostOnly,
  );
  assert.equal(elsewhere.kind === 'ack' ? elsewhere.lease.address.address.text : elsewhere.kind, '172.16.86.124');
  assert.deepEqual(checked.slice(1), [`172.16.86.124 ${identity.mac}`], 'a move the check lets through is the lease');
});

test('an ACK without a subnet mask: the prefix of the network’s subnet that holds the address, else its natural mask; a renewal without one keeps the prefix held', async () => {
  const maskless = (type: DhcpMessage['type'], to: DhcpMessage, address: string): DhcpMessage => {
    const m = answerWith(type, to, address);
    m.options.delete(OPT.subnetMask);
    return m;
  };
  const take = (address: string, subnets: string[]): Promise<import('../../src/model/lease').Lease> =>
    acquire(new ScriptedChannel((m) => maskless(m.type === 'discover' ? 'offer' : 'ack', m, address)), identity, {
      hint: null,
      deadline: exchangeDeadline(5000),
      subnets: subnets.map((t) => parsePrefix(t)),
    });
  const prefix = (l: import('../../src/model/lease').Lease): string =>
    `${l.address.address.text}/${l.address.prefixLength}`;
  // lanplug-dhcp's --subnet, or the host's own subnet on the parent.
  assert.equal(prefix(await take('172.16.86.120', ['192.168.0.0/24', '172.16.80.0/20'])), '172.16.86.120/20');
  // Nothing known: RFC 1122's natural mask of the address's class, as dhcpcd and udhcpc's script use.
  assert.equal(prefix(await take('10.1.2.3', [])), '10.1.2.3/8');
  assert.equal(prefix(await take('172.16.86.121', ['192.168.0.0/24'])), '172.16.86.121/16');
  assert.equal(prefix(await take('192.168.1.5', [])), '192.168.1.5/24');
  const held = await take('172.16.86.122', ['172.16.80.0/20']);
  const renewed = await renew(
    new ScriptedChannel((m) => maskless('ack', m, m.ciaddr.text)),
    identity,
    held,
    'renew',
    exchangeDeadline(5000),
  );
  assert.equal(renewed.kind === 'ack' ? prefix(renewed.lease) : renewed.kind, '172.16.86.122/20');
});

test('a malformed answer says why (for the log line): an option past the end, no or an unknown message type; options of the wrong form are named', () => {
  const offer = encodeDhcp(answerWith('offer', emptyRequest(), '172.16.86.120'));
  assert.ok(typeof parseDhcp(offer) !== 'string');
  assert.equal(parseDhcp(offer.subarray(0, 247)), 'option 54 runs past the end of the message');
  const untyped = Buffer.from(offer);
  untyped[240] = OPT.pad;
  untyped[241] = OPT.pad;
  untyped[242] = OPT.pad;
  assert.equal(parseDhcp(untyped), 'no message type (option 53)');
  const unknown = Buffer.from(offer);
  unknown[242] = 42;
  assert.equal(parseDhcp(unknown), 'unknown message type 42');
  assert.equal(parseDhcp(offer.subarray(0, 100)), '100 bytes, shorter than a DHCP message');
  assert.equal(isReplyTo(offer, 7, identity.mac), true);
  assert.equal(isReplyTo(offer, 8, identity.mac), false);
  assert.deepEqual(
    malformedOptions(
      new Map([
        [OPT.leaseTime, Buffer.from([0, 0, 1])],
        [OPT.subnetMask, Buffer.from('ff00ff00', 'hex')],
        [OPT.router, Buffer.from([172, 16])],
        [OPT.dnsServers, Buffer.from([1, 1, 1, 1, 8, 8, 8, 8])],
      ]),
    ),
    [
      { option: 1, name: 'subnet mask', why: 'not a contiguous mask' },
      { option: 3, name: 'router', why: '2 bytes, not a list of IPv4 addresses' },
      { option: 51, name: 'lease time', why: '3 bytes where 4 belong' },
    ],
  );
});

test('lease times lanplug counts: 0 and a few seconds as 60 s, 136 years as 7 days, infinite as infinite; T1 and T2 within the counted lease', () => {
  assert.deepEqual([0, 1, 59, 60, 3600, 604_800, 604_801, 0xfffffffe, INFINITE_SECONDS].map(boundedLeaseSeconds), [
    60,
    60,
    60,
    60,
    3600,
    604_800,
    604_800,
    604_800,
    INFINITE_SECONDS,
  ]);
  assert.deepEqual(leaseTimes(boundedLeaseSeconds(0), null, null), { renewSeconds: 30, rebindSeconds: 52 });
  // A T1 of a year past a lease counted as a week is no T1: 50 % and 87.5 % of the week.
  assert.deepEqual(leaseTimes(boundedLeaseSeconds(0xfffffffe), 31_536_000, null), {
    renewSeconds: 302_400,
    rebindSeconds: 529_200,
  });
});

test('acquire: a server that NAKs what it offered is given up on after three NAKs, in one line naming it, the address and the NAK', async () => {
  const channel = new ScriptedChannel((m) => {
    if (m.type === 'discover') return answerWith('offer', m, '172.16.86.126');
    const nak = answerWith('nak', m, '0.0.0.0');
    nak.options.set(OPT.message, Buffer.from('no'));
    return nak;
  });
  const started = Date.now();
  await assert.rejects(acquire(channel, identity, { hint: null, deadline: exchangeDeadline(20_000) }), {
    message: 'the DHCP server 172.16.86.1 refused the address it offered (172.16.86.126) 3 times on eth0 (DHCPNAK: no)',
  });
  assert.equal(channel.sent.filter((m) => m.type === 'request').length, 3);
  assert.ok(Date.now() - started < 5_000, 'not the 20 s budget');
});

test('what a network knows refuses an address whatever its policy: no host address, outside the subnet, its network or broadcast address, the router, the server, another container’s', () => {
  const facts = {
    subnets: [parsePrefix('172.16.86.0/24'), parsePrefix('2001:db8:86::/64')],
    routers: [parseAddress('172.16.86.254')],
    heldBy: (a: IpAddress) => (a.text === '172.16.86.120' ? '0f81d22d19e5' : null),
  };
  const by = { server: parseAddress('172.16.86.2'), router: parseAddress('172.16.86.1'), prefixLength: 24 };
  const why = (address: string, f = facts): string | null => refuseOffered(parseAddress(address), by, f)?.why ?? null;
  assert.equal(why('172.16.86.121'), null);
  assert.equal(why('0.0.0.0'), 'no address a host may hold (0.0.0.0/8)');
  assert.equal(why('127.0.0.1'), 'no address a host may hold (127.0.0.0/8)');
  assert.equal(why('224.0.0.1'), 'no address a host may hold (224.0.0.0/4)');
  assert.equal(why('255.255.255.255'), 'no address a host may hold (240.0.0.0/4)');
  assert.equal(why('10.99.0.5'), "outside the network's subnet 172.16.86.0/24");
  assert.equal(why('172.16.86.0'), 'the network or broadcast address of 172.16.86.0/24');
  assert.equal(why('172.16.86.255'), 'the network or broadcast address of 172.16.86.0/24');
  assert.equal(why('172.16.86.1'), "the network's router");
  assert.equal(why('172.16.86.254'), "the network's router");
  assert.equal(why('172.16.86.2'), "the DHCP server's own address");
  assert.equal(why('172.16.86.120'), 'in use by another container (endpoint 0f81d22d19e5)');
  assert.equal(why('fe80::1'), 'no address a host may hold (fe80::/10)');
  assert.equal(why('2001:db8:99::5'), "outside the network's subnet 2001:db8:86::/64");
  // No subnet known (an -o dhcp=true network whose host has no address on the parent): the rest still stands.
  const unknown = { ...facts, subnets: [] };
  assert.equal(why('10.99.0.5', unknown), null);
  assert.equal(why('172.16.86.1', unknown), "the network's router");
});

test('a DHCPv4 exchange runs to its deadline on the monotonic clock: a wall clock set forward a day does not end it at its first DISCOVER, one set back an hour does not keep it resending for the hour', async (t) => {
  for (const run of await exchangeOnSteppedClocks(t, (channel, deadline) =>
    acquire(channel, identity, { hint: null, deadline }),
  )) {
    assert.equal(run.outcome, 'no DHCP server answered on eth0 within 1 s', `wall clock stepped by ${run.step} ms`);
    assert.equal(run.sends, 2, `DISCOVERs sent (at 0 and 1 s), wall clock stepped by ${run.step} ms`);
    assert.ok(run.tookMs >= 1_150, `ended after ${Math.round(run.tookMs)} ms, wall clock stepped by ${run.step} ms`);
  }
});
