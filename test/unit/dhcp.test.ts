/**
 * The DHCP client's wire formats and transactions. The frames are checked
 * byte for byte where RFC 2131 fixes them; the transactions run against a
 * scripted server on a fake channel (the Docker lane runs them against
 * dnsmasq on a real LAN).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DhcpChannel } from '../../src/dhcp/channel';
import { acquire, renew, type BoundBy } from '../../src/dhcp/client';
import {
  decodeDhcp,
  encodeDhcp,
  ipv4Option,
  isReplyTo,
  malformedOptions,
  OPT,
  parseDhcp,
  readPrefixLength,
  secondsOption,
  ZERO_V4,
  type DhcpMessage,
} from '../../src/dhcp/message';
import { decodeUdpFrame, encodeUdpFrame, internetChecksum, type UdpDatagram } from '../../src/l2/udp-frames';
import {
  boundedLeaseSeconds,
  INFINITE_SECONDS,
  leaseExpiresAt,
  leaseTimes,
  type DhcpIdentity,
} from '../../src/model/lease';
import { refuseOffered, usableRouter, type NetworkFacts } from '../../src/dhcp/offer-rules';
import { addressFromBytes, parseAddress, parsePrefix, type IpAddress } from '../../src/net/address';

const identity: DhcpIdentity = {
  mac: '02:00:00:00:00:09',
  clientId: '0102000000000009',
  duid: '00030001020000000009',
  iaid: 1,
  stable: true,
  hostname: 'web',
  broadcast: false,
};
const SERVER = parseAddress('172.16.86.1');
const SERVER_MAC = '02:00:00:00:00:01';

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

/** A channel whose server answers each sent DHCP message with what `answer` returns. */
class ScriptedChannel implements DhcpChannel {
  readonly where = 'eth0';
  readonly sent: DhcpMessage[] = [];
  private pending: UdpDatagram[] = [];
  constructor(private readonly answer: (m: DhcpMessage) => DhcpMessage | null) {}
  send(frame: Buffer): void {
    const d = decodeUdpFrame(frame);
    const m = d === null ? null : decodeDhcp(d.payload);
    assert.ok(m !== null);
    this.sent.push(m);
    const reply = this.answer(m);
    if (reply !== null) {
      const datagram = decodeUdpFrame(
        encodeUdpFrame({
          sourceMac: SERVER_MAC,
          destinationMac: m.chaddr,
          source: SERVER,
          destination: parseAddress('255.255.255.255'),
          sourcePort: 67,
          destinationPort: 68,
          payload: encodeDhcp(reply),
        }),
      );
      assert.ok(datagram !== null);
      this.pending.push(datagram);
    }
  }
  async next(accept: (d: UdpDatagram) => boolean, deadline: number): Promise<UdpDatagram | null> {
    const i = this.pending.findIndex(accept);
    if (i >= 0) return this.pending.splice(i, 1)[0] ?? null;
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())));
    return null;
  }
  async close(): Promise<void> {}
}

function answerWith(type: DhcpMessage['type'], to: DhcpMessage, address: string): DhcpMessage {
  return {
    reply: true,
    xid: to.xid,
    secs: 0,
    broadcast: to.broadcast,
    ciaddr: to.ciaddr,
    yiaddr: parseAddress(address),
    chaddr: to.chaddr,
    type,
    options: new Map([
      [OPT.serverId, ipv4Option(SERVER)],
      [OPT.leaseTime, secondsOption(120)],
      [OPT.subnetMask, Buffer.from('ffffff00', 'hex')],
      [OPT.router, ipv4Option(SERVER)],
      [OPT.dnsServers, Buffer.concat([ipv4Option(parseAddress('172.16.86.53')), ipv4Option(SERVER)])],
    ]),
  };
}

test('acquire: DISCOVER with the hint, REQUEST of the offer to its server, the ACK as a lease with RFC 2131 default T1/T2', async () => {
  const channel = new ScriptedChannel((m) =>
    m.type === 'discover' ? answerWith('offer', m, '172.16.86.120') : answerWith('ack', m, '172.16.86.120'),
  );
  const lease = await acquire(channel, identity, { hint: parseAddress('172.16.86.120'), deadline: Date.now() + 5000 });
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
  await acquire(channel, identity, { hint: null, deadline: Date.now() + 5000 });
  assert.deepEqual(
    channel.sent.map((m) => m.type),
    ['discover', 'request', 'discover', 'request'],
  );
  const silent = new ScriptedChannel(() => null);
  await assert.rejects(acquire(silent, identity, { hint: null, deadline: Date.now() + 1500 }), {
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
    deadline: Date.now() + 5000,
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
      deadline: Date.now() + 10_000,
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
    { hint: null, deadline: Date.now() + 5000 },
  );
  const outcome = await renew(channel, identity, held, 'renew', Date.now() + 5000);
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
    { hint: null, deadline: Date.now() + 5000 },
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
    Date.now() + 5000,
    hostOnly,
  );
  assert.equal(same.kind === 'ack' ? same.lease.address.address.text : same.kind, '172.16.86.123');
  assert.deepEqual(checked, [], 'the address held needs no check');

  // A rebind is broadcast: whoever answers it first may name this host's address.
  const rogue = new ScriptedChannel((m) => (m.type === 'request' ? answerWith('ack', m, '172.16.86.5') : null));
  const onHost = await renew(rogue, identity, held, 'rebind', Date.now() + 5000, hostOnly);
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
    Date.now() + 5000,
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
      deadline: Date.now() + 5000,
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
    Date.now() + 5000,
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

/** A REQUEST of xid 7, for answerWith. */
function emptyRequest(): DhcpMessage {
  return {
    reply: false,
    xid: 7,
    secs: 0,
    broadcast: true,
    ciaddr: ZERO_V4,
    yiaddr: ZERO_V4,
    chaddr: identity.mac,
    type: 'request',
    options: new Map(),
  };
}

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
  await assert.rejects(acquire(channel, identity, { hint: null, deadline: Date.now() + 20_000 }), {
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

// ---- DHCPv6 ----

test('a DHCPv6 message and its IA_NA read back the same; a UDP-over-IPv6 checksum verifies; EUI-64 link-local', async () => {
  const { decodeDhcp6, encodeDhcp6, encodeIaNa, decodeIaNa, OPT6 } = await import('../../src/dhcp/message6');
  const { encodeUdp6Frame, decodeUdp6Frame, linkLocalOf } = await import('../../src/l2/udp-frames');
  const ia = encodeIaNa({
    iaid: 1,
    renewSeconds: 1800,
    rebindSeconds: 2880,
    addresses: [{ address: parseAddress('2001:db8:86::150'), preferredSeconds: 3600, validSeconds: 7200 }],
    status: null,
  });
  const m = { type: 'reply' as const, xid: 0xabcdef, options: [{ code: OPT6.iaNa, value: ia }] };
  const bytes = encodeDhcp6(m);
  assert.deepEqual([...bytes.subarray(0, 4)], [7, 0xab, 0xcd, 0xef]);
  assert.deepEqual(decodeDhcp6(bytes), m);
  assert.equal(decodeIaNa(ia)?.addresses[0]?.address.text, '2001:db8:86::150');
  assert.equal(linkLocalOf('02:00:00:00:00:09').text, 'fe80::ff:fe00:9');
  const frame = encodeUdp6Frame({
    sourceMac: '02:00:00:00:00:09',
    destinationMac: '33:33:00:01:00:02',
    source: linkLocalOf('02:00:00:00:00:09'),
    destination: parseAddress('ff02::1:2'),
    sourcePort: 546,
    destinationPort: 547,
    payload: bytes,
  });
  const pseudo = Buffer.alloc(40);
  frame.copy(pseudo, 0, 22, 54);
  pseudo.writeUInt32BE(frame.length - 54, 32);
  pseudo[39] = 17;
  assert.equal(internetChecksum(Buffer.concat([pseudo, frame.subarray(54)])), 0, 'UDP checksum verifies');
  assert.deepEqual(decodeUdp6Frame(frame)?.payload, bytes);
});

type IaAddress = import('../../src/dhcp/message6').IaNa['addresses'][number];

/**
 * The addresses a client's IA_NA names, lifetimes or not (a client sends 0: decodeIaNa, which reads
 * a server's, drops those as taken back).
 */
async function namedIn(ia: Buffer | null): Promise<string[] | null> {
  const m6 = await import('../../src/dhcp/message6');
  if (ia === null) return null;
  const inner = m6.decodeOptions(ia.subarray(12)) ?? [];
  return inner.filter((o) => o.code === m6.OPT6.iaAddr).map((o) => addressFromBytes(o.value.subarray(0, 16)).text);
}

/** RFC 8415 §21.13's status codes, as a server sends them. */
const RFC8415 = { unspecFail: 1, noAddrsAvail: 2, noBinding: 3, notOnLink: 4, useMulticast: 5 } as const;

/** A status code a fake server puts in its answer: in the message, or in its IA_NA. */
interface FakeStatus {
  code: number;
  text: string;
  inIa: boolean;
}

/**
 * A DHCPv6 server behind a fake channel: every Solicit gets an Advertise, every other message a
 * Reply, each with an IA_NA of the addresses `give` returns for it, and the status `status` returns.
 * `sent` records what the client sent, with when.
 */
async function fakeServer6(
  give: (m: import('../../src/dhcp/message6').Dhcp6Message, status: FakeStatus | null) => IaAddress[],
  status: (m: import('../../src/dhcp/message6').Dhcp6Message) => FakeStatus | null = () => null,
) {
  const m6 = await import('../../src/dhcp/message6');
  const { encodeUdp6Frame, decodeUdp6Frame } = await import('../../src/l2/udp-frames');
  const sent: import('../../src/dhcp/message6').Dhcp6Message[] = [];
  const sentAt: number[] = [];
  const pending: UdpDatagram[] = [];
  const serverDuid = Buffer.from('000100012a2b3c4d020000000001', 'hex');
  const channel: DhcpChannel = {
    where: 'eth0',
    send(frame) {
      const d = decodeUdp6Frame(frame);
      const m = d === null ? null : m6.decodeDhcp6(d.payload);
      assert.ok(d !== null && m !== null);
      assert.equal(d.destination.text, 'ff02::1:2');
      sent.push(m);
      sentAt.push(Date.now());
      const said = status(m);
      const statusOption =
        said === null
          ? []
          : [{ code: m6.OPT6.statusCode, value: Buffer.concat([Buffer.from([0, said.code]), Buffer.from(said.text)]) }];
      const ia = Buffer.concat([
        m6.encodeIaNa({ iaid: 1, renewSeconds: 0, rebindSeconds: 0, addresses: give(m, said), status: null }),
        m6.encodeOptions(said?.inIa === true ? statusOption : []),
      ]);
      const reply = {
        type: m.type === 'solicit' ? ('advertise' as const) : ('reply' as const),
        xid: m.xid,
        options: [
          { code: m6.OPT6.clientId, value: Buffer.from(identity.duid, 'hex') },
          { code: m6.OPT6.serverId, value: serverDuid },
          { code: m6.OPT6.iaNa, value: ia },
          ...(said?.inIa === false ? statusOption : []),
        ],
      };
      const back = decodeUdp6Frame(
        encodeUdp6Frame({
          sourceMac: SERVER_MAC,
          destinationMac: identity.mac,
          source: parseAddress('fe80::1'),
          destination: d.source,
          sourcePort: 547,
          destinationPort: 546,
          payload: m6.encodeDhcp6(reply),
        }),
      );
      assert.ok(back !== null);
      pending.push(back);
    },
    async next(accept, deadline) {
      const i = pending.findIndex(accept);
      if (i >= 0) return pending.splice(i, 1)[0] ?? null;
      await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())));
      return null;
    },
    async close() {},
  };
  return { channel, sent, sentAt, serverDuid, m6 };
}

test('acquire6: Solicit with the client DUID and an IA_NA, Request to the advertising server, the Reply as a lease', async () => {
  const { acquire6 } = await import('../../src/dhcp/client6');
  const { channel, sent, serverDuid, m6 } = await fakeServer6(() => [
    { address: parseAddress('2001:db8:86::150'), preferredSeconds: 3600, validSeconds: 7200 },
  ]);
  const lease = await acquire6(channel, identity, { hint: null, deadline: Date.now() + 3000, prefixLength: 64 });
  assert.deepEqual(
    sent.map((m) => m.type),
    ['solicit', 'request'],
  );
  assert.equal(m6.option(sent[1] ?? sent[0]!, m6.OPT6.serverId)?.toString('hex'), serverDuid.toString('hex'));
  assert.equal(`${lease.address.address.text}/${lease.address.prefixLength}`, '2001:db8:86::150/64');
  assert.equal(lease.serverDuid, serverDuid.toString('hex'));
  assert.deepEqual([lease.leaseSeconds, lease.renewSeconds, lease.rebindSeconds], [7200, 1800, 3150]);
});

test('renew6: an address the server withdraws (valid lifetime 0) is never the lease; its replacement is, and a Reply of only withdrawn ones is a refusal', async () => {
  const { acquire6, renew6 } = await import('../../src/dhcp/client6');
  const old = parseAddress('2001:db8:86::150');
  const moved = parseAddress('2001:db8:86::300');
  let renewing = false;
  let replacement = true;
  const { channel } = await fakeServer6(() =>
    !renewing
      ? [{ address: old, preferredSeconds: 3600, validSeconds: 7200 }]
      : [
          { address: old, preferredSeconds: 0, validSeconds: 0 },
          ...(replacement ? [{ address: moved, preferredSeconds: 3600, validSeconds: 7200 }] : []),
        ],
  );
  const lease = await acquire6(channel, identity, { hint: null, deadline: Date.now() + 3000, prefixLength: 64 });
  renewing = true;
  const next = await renew6(channel, identity, lease, 'renew', Date.now() + 3000);
  assert.equal(next.kind === 'ack' ? next.lease.address.address.text : next.kind, '2001:db8:86::300');
  replacement = false;
  const refused = await renew6(channel, identity, lease, 'renew', Date.now() + 3000);
  assert.deepEqual(refused, {
    kind: 'nak',
    message: 'no address bound (the server withdrew the one asked for)',
  });
});

test('acquire6: a bound address the offer check refuses (this host’s own) is declined to its server (a Decline with the IA_NA holding it) and a new Solicit asks for no address; only refused ones: one line naming them', async () => {
  const { acquire6 } = await import('../../src/dhcp/client6');
  const own = parseAddress('2001:db8:86::5');
  const other = parseAddress('2001:db8:86::151');
  let declines = 0;
  const { channel, sent, serverDuid, m6 } = await fakeServer6((m) => {
    if (m.type === 'decline') {
      declines++;
      return [];
    }
    return [{ address: declines === 0 ? own : other, preferredSeconds: 3600, validSeconds: 7200 }];
  });
  const checked: string[] = [];
  const hostOnly = (address: IpAddress, ownMac: string): Promise<string | null> => {
    checked.push(`${address.text} ${ownMac}`);
    return Promise.resolve(address.text === own.text ? 'in use by this host (it holds the address on eth0)' : null);
  };
  const lease = await acquire6(channel, identity, {
    hint: own,
    deadline: Date.now() + 5000,
    prefixLength: 64,
    check: hostOnly,
  });
  assert.equal(lease.address.address.text, other.text);
  assert.deepEqual(checked, [`${own.text} ${identity.mac}`, `${other.text} ${identity.mac}`]);
  assert.deepEqual(
    sent.map((m) => m.type),
    ['solicit', 'request', 'decline', 'solicit', 'request'],
  );
  const decline = sent[2];
  assert.ok(decline !== undefined);
  assert.equal(m6.option(decline, m6.OPT6.serverId)?.toString('hex'), serverDuid.toString('hex'));
  assert.equal(m6.option(decline, m6.OPT6.clientId)?.toString('hex'), identity.duid);
  assert.deepEqual(await namedIn(m6.option(decline, m6.OPT6.iaNa)), [own.text]);
  assert.equal(m6.option(decline, m6.OPT6.oro), null, 'a Decline asks for no options');
  const first = sent[0];
  const again = sent[3];
  assert.ok(first !== undefined && again !== undefined);
  assert.deepEqual(await namedIn(m6.option(first, m6.OPT6.iaNa)), [own.text], 'the hint asked for first');
  assert.deepEqual(await namedIn(m6.option(again, m6.OPT6.iaNa)), [], 'the declined address is not asked for again');

  const squatted = await fakeServer6((m) =>
    m.type === 'decline' ? [] : [{ address: own, preferredSeconds: 3600, validSeconds: 7200 }],
  );
  await assert.rejects(
    acquire6(squatted.channel, identity, {
      hint: null,
      deadline: Date.now() + 10_000,
      prefixLength: 64,
      check: hostOnly,
    }),
    {
      message:
        'the DHCPv6 server offered only addresses in use on the LAN on eth0 (declined: 2001:db8:86::5, in use by this host (it holds the address on eth0))',
    },
  );
  assert.equal(squatted.sent.filter((m) => m.type === 'decline').length, 3, 'three declines, then it gives up');
});

test('renew6: a Reply that moves the lease onto another address goes through the offer check; refused, it is declined to the server and never the lease; the address held is not checked', async () => {
  const { acquire6, renew6 } = await import('../../src/dhcp/client6');
  const held = parseAddress('2001:db8:86::150');
  const own = parseAddress('2001:db8:86::5');
  let moveTo: IpAddress | null = null;
  const { channel, sent, serverDuid, m6 } = await fakeServer6((m) =>
    m.type === 'decline'
      ? []
      : moveTo === null
        ? [{ address: held, preferredSeconds: 3600, validSeconds: 7200 }]
        : [
            { address: held, preferredSeconds: 0, validSeconds: 0 },
            { address: moveTo, preferredSeconds: 3600, validSeconds: 7200 },
          ],
  );
  const lease = await acquire6(channel, identity, { hint: null, deadline: Date.now() + 3000, prefixLength: 64 });
  const checked: string[] = [];
  const hostOnly = (address: IpAddress, ownMac: string): Promise<string | null> => {
    checked.push(`${address.text} ${ownMac}`);
    return Promise.resolve(address.text === own.text ? 'in use by this host (it holds the address on eth0)' : null);
  };
  const same = await renew6(channel, identity, lease, 'renew', Date.now() + 3000, hostOnly);
  assert.equal(same.kind, 'ack');
  assert.deepEqual(checked, [], 'the address held needs no check');

  moveTo = own;
  const onHost = await renew6(channel, identity, lease, 'rebind', Date.now() + 3000, hostOnly);
  assert.deepEqual(onHost, {
    kind: 'declined',
    message: 'declined 2001:db8:86::5, in use by this host (it holds the address on eth0)',
  });
  assert.deepEqual(checked, [`${own.text} ${identity.mac}`]);
  const decline = sent.at(-1);
  assert.equal(decline?.type, 'decline');
  assert.ok(decline !== undefined);
  assert.equal(m6.option(decline, m6.OPT6.serverId)?.toString('hex'), serverDuid.toString('hex'));
  assert.deepEqual(await namedIn(m6.option(decline, m6.OPT6.iaNa)), [own.text]);

  moveTo = parseAddress('2001:db8:86::300');
  const moved = await renew6(channel, identity, lease, 'renew', Date.now() + 3000, hostOnly);
  assert.equal(moved.kind === 'ack' ? moved.lease.address.address.text : moved.kind, '2001:db8:86::300');
});

test('renew6 follows RFC 8415’s status codes: UseMulticast is sent again and then answered; UnspecFail is retried at the back-off gaps and keeps the lease; only NoBinding starts over', async () => {
  const { acquire6, renew6 } = await import('../../src/dhcp/client6');
  const address = parseAddress('2001:db8:86::150');
  let answer: (renewal: number) => FakeStatus | null = () => null;
  let renewals = 0;
  const { channel, sent, sentAt } = await fakeServer6(
    (_m, said) => (said !== null ? [] : [{ address, preferredSeconds: 3600, validSeconds: 7200 }]),
    (m) => (m.type === 'renew' ? answer(renewals++) : null),
  );
  const lease = await acquire6(channel, identity, { hint: null, deadline: Date.now() + 3000, prefixLength: 64 });
  const renewsSent = (): number => sent.filter((m) => m.type === 'renew').length;

  answer = (n) => (n === 0 ? { code: RFC8415.useMulticast, text: 'multicast please', inIa: false } : null);
  const afterMulticast = await renew6(channel, identity, lease, 'renew', Date.now() + 3000);
  assert.equal(afterMulticast.kind, 'ack', 'answered once sent again');
  assert.equal(renewsSent(), 2);

  renewals = 0;
  answer = () => ({ code: RFC8415.unspecFail, text: 'busy', inIa: false });
  const started = Date.now();
  const failing = await renew6(channel, identity, lease, 'renew', Date.now() + 2500);
  assert.deepEqual(failing, { kind: 'silent', message: 'the server answered UnspecFail: busy' });
  const tries = sentAt.slice(-renewals);
  assert.equal(renewals, 2, 'sent again at the next gap (1 s), not at once');
  assert.ok((tries[1] ?? 0) - (tries[0] ?? 0) >= 900 && (tries[0] ?? 0) - started < 100, tries.join(' '));

  answer = () => ({ code: RFC8415.noAddrsAvail, text: 'full', inIa: true });
  assert.deepEqual(await renew6(channel, identity, lease, 'renew', Date.now() + 1500), {
    kind: 'silent',
    message: 'the server answered NoAddrsAvail',
  });
  answer = () => ({ code: RFC8415.noBinding, text: 'unknown lease', inIa: true });
  assert.deepEqual(await renew6(channel, identity, lease, 'renew', Date.now() + 1500), {
    kind: 'nak',
    message: 'NoBinding',
  });
});

test('acquire6: an Advertise without an address is ignored, not answered with a new Solicit at once; NotOnLink asks again for no address in particular, a second later', async () => {
  const { acquire6 } = await import('../../src/dhcp/client6');
  const { OPT6, decodeIaNa, option } = await import('../../src/dhcp/message6');
  const full = await fakeServer6(
    () => [],
    () => ({ code: RFC8415.noAddrsAvail, text: 'none left', inIa: false }),
  );
  const refused: unknown = await acquire6(full.channel, identity, {
    hint: null,
    deadline: Date.now() + 2500,
    prefixLength: 64,
  }).catch((err: unknown) => err);
  assert.equal(full.sent.length, 2, 'a Solicit, and again after 1 s');
  assert.equal(
    refused instanceof Error ? refused.message : refused,
    'the DHCPv6 server gave no address on eth0 (NoAddrsAvail: none left)',
  );

  const hint = parseAddress('2001:db8:99::5');
  const good = parseAddress('2001:db8:86::151');
  let requests = 0;
  const moved = await fakeServer6(
    (m) => [
      { address: m.type === 'solicit' && requests === 0 ? hint : good, preferredSeconds: 3600, validSeconds: 7200 },
    ],
    (m) =>
      m.type === 'request' && requests++ === 0 ? { code: RFC8415.notOnLink, text: 'wrong link', inIa: true } : null,
  );
  const lease = await acquire6(moved.channel, identity, { hint, deadline: Date.now() + 5000, prefixLength: 64 });
  assert.equal(lease.address.address.text, good.text);
  assert.deepEqual(
    moved.sent.map((m) => m.type),
    ['solicit', 'request', 'solicit', 'request'],
  );
  const second = moved.sent[2];
  const ia = second === undefined ? null : option(second, OPT6.iaNa);
  assert.deepEqual(ia === null ? null : decodeIaNa(ia)?.addresses, [], 'no address asked for after NotOnLink');
  assert.ok((moved.sentAt[2] ?? 0) - (moved.sentAt[1] ?? 0) >= 900, 'a second after the refusal');
});

test('T1 and T2 a client can act on: the server’s when sane, else 50 % and 87.5 %; an infinite lease is never renewed', async () => {
  const { leaseTimes, INFINITE_SECONDS } = await import('../../src/model/lease');
  assert.deepEqual(leaseTimes(120, 3, 6), { renewSeconds: 3, rebindSeconds: 6 });
  assert.deepEqual(leaseTimes(3600, null, null), { renewSeconds: 1800, rebindSeconds: 3150 });
  assert.deepEqual(leaseTimes(3600, 0, 0), { renewSeconds: 1800, rebindSeconds: 3150 }, 'a T1 of 0 is no T1');
  assert.deepEqual(leaseTimes(3600, 3000, 2000), { renewSeconds: 3000, rebindSeconds: 3150 }, 'T2 before T1');
  assert.deepEqual(leaseTimes(INFINITE_SECONDS, null, null), {
    renewSeconds: INFINITE_SECONDS,
    rebindSeconds: INFINITE_SECONDS,
  });
});

// ---- What a hostile server's answer may not decide ----

/** A logger that keeps its warn lines (message and fields), for asserting the one line a refusal or a clamp gives. */
function warnings(): { log: import('../../src/log').Logger; lines: string[] } {
  const lines: string[] = [];
  const log = {
    debug() {},
    info() {},
    warn: (msg: string, fields?: Record<string, unknown>) => lines.push(`${msg} ${JSON.stringify(fields ?? {})}`),
    error() {},
  };
  return { log, lines };
}

test('the offered prefix itself: its network and broadcast address are refused whatever the host knows; a mask broader than /8 is refused', () => {
  const none: NetworkFacts = { subnets: [], routers: [], heldBy: () => null };
  const hostWide = { ...none, subnets: [parsePrefix('172.16.0.0/16')] };
  const why = (address: string, prefixLength: number, f = none): string | null => {
    // A variable, not a literal: the fields the check reads of the answer, the offered mask among them.
    const by = { server: parseAddress('192.168.1.1'), router: null, prefixLength };
    return refuseOffered(parseAddress(address), by, f)?.why ?? null;
  };
  // A dedicated NIC: the host has no address on the parent, so no subnet is known.
  assert.equal(why('192.168.1.255', 24), 'the network or broadcast address of 192.168.1.0/24');
  assert.equal(why('192.168.1.0', 24), 'the network or broadcast address of 192.168.1.0/24');
  assert.equal(why('192.168.1.5', 24), null);
  // The broadcast of the offered /24 inside the host's /16.
  assert.equal(why('172.16.86.255', 24, hostWide), 'the network or broadcast address of 172.16.86.0/24');
  assert.equal(why('172.16.86.5', 24, hostWide), null);
  // /31 and /32 have no network or broadcast address (RFC 3021).
  assert.equal(why('192.168.1.0', 31), null);
  assert.equal(why('192.168.1.255', 32), null);
  // Mask 0.0.0.0 (read as /0) or 128.0.0.0: the whole Internet on-link.
  assert.equal(why('192.168.1.5', 0), 'a subnet mask broader than /8 (/0)');
  assert.equal(why('192.168.1.5', 1), 'a subnet mask broader than /8 (/1)');
  assert.equal(why('10.1.2.3', 8), null);
});

test('acquire: an ACK with mask 0.0.0.0 goes to the offer check with its prefix, is declined, and the next one taken', async () => {
  let acks = 0;
  const channel = new ScriptedChannel((m) => {
    // The server remembers a declined address as unusable: the next exchange is of another one.
    const address = acks === 0 ? '172.16.86.120' : '172.16.86.121';
    if (m.type === 'discover') return answerWith('offer', m, address);
    if (m.type !== 'request') return null;
    const ack = answerWith('ack', m, address);
    if (acks++ === 0) ack.options.set(OPT.subnetMask, Buffer.from('00000000', 'hex'));
    return ack;
  });
  const facts = { subnets: [], routers: [], heldBy: () => null };
  const lease = await acquire(channel, identity, {
    hint: null,
    deadline: Date.now() + 10_000,
    check: (address, _mac, by) => Promise.resolve(refuseOffered(address, by, facts)?.why ?? null),
  });
  const decline = channel.sent.find((m) => m.type === 'decline');
  assert.equal(decline?.options.get(OPT.message)?.toString(), 'address a subnet mask broader than /8 (/0)');
  assert.equal(`${lease.address.address.text}/${lease.address.prefixLength}`, '172.16.86.121/24');
});

test('acquire: a router outside the leased prefix (or the leased address itself) is no router, with one line; unusable DNS servers are dropped', async () => {
  const { log, lines } = warnings();
  const ackWith = (router: string) =>
    new ScriptedChannel((m) => {
      const answer = answerWith(m.type === 'discover' ? 'offer' : 'ack', m, '172.16.86.120');
      answer.options.set(OPT.router, ipv4Option(parseAddress(router)));
      answer.options.set(
        OPT.dnsServers,
        Buffer.concat(
          ['0.0.0.0', '172.16.86.53', '255.255.255.255', '224.0.0.251', '9.9.9.9'].map((a) =>
            ipv4Option(parseAddress(a)),
          ),
        ),
      );
      return answer;
    });
  const outside = await acquire(ackWith('10.9.9.1'), identity, { hint: null, deadline: Date.now() + 5000, log });
  assert.equal(outside.router, null);
  assert.deepEqual(
    outside.dns.map((a) => a.text),
    ['172.16.86.53', '9.9.9.9'],
  );
  assert.equal(
    lines.filter((l) => l.startsWith('ignoring the router a DHCP server named')).length,
    1,
    lines.join('\n'),
  );
  assert.match(
    lines.join('\n'),
    /"server":"172\.16\.86\.1","router":"10\.9\.9\.1","why":"outside the leased prefix 172\.16\.86\.0\/24"/,
  );
  const itself = await acquire(ackWith('172.16.86.120'), identity, { hint: null, deadline: Date.now() + 5000 });
  assert.equal(itself.router, null);
  const inside = await acquire(ackWith('172.16.86.254'), identity, { hint: null, deadline: Date.now() + 5000 });
  assert.equal(inside.router?.text, '172.16.86.254');
});

test('encodeDhcp refuses an option value longer than 255 bytes (its length byte cannot say it) instead of writing a wrong one', () => {
  const m: DhcpMessage = {
    reply: false,
    xid: 1,
    secs: 0,
    broadcast: false,
    ciaddr: ZERO_V4,
    yiaddr: ZERO_V4,
    chaddr: identity.mac,
    type: 'discover',
    options: new Map([[OPT.hostname, Buffer.alloc(256, 0x61)]]),
  };
  assert.throws(() => encodeDhcp(m), { name: 'LanplugError', code: 'Internal' });
  m.options.set(OPT.hostname, Buffer.alloc(255, 0x61));
  assert.equal(decodeDhcp(encodeDhcp(m))?.options.get(OPT.hostname)?.length, 255);
});

test('acquire6: a valid lifetime under a minute keeps its expiry (lanplug never counts an address longer than its server gave it) and only the renewal timers get their floor (T1 30 s, T2 52 s); 136 years counted as 7 days, infinite as infinite; one line when bounded', async () => {
  const { acquire6 } = await import('../../src/dhcp/client6');
  const counted = async (preferredSeconds: number, validSeconds: number) => {
    const { log, lines } = warnings();
    const { channel } = await fakeServer6(() => [
      { address: parseAddress('2001:db8:86::150'), preferredSeconds, validSeconds },
    ]);
    // A variable, not a literal: the options acquire6 reads, its log among them.
    const options = { hint: null, deadline: Date.now() + 3000, prefixLength: 64, log };
    const lease = await acquire6(channel, identity, options);
    return {
      times: [lease.leaseSeconds, lease.renewSeconds, lease.rebindSeconds],
      expiresIn: leaseExpiresAt(lease) - lease.boundAt,
      lines,
    };
  };
  const short = await counted(1, 1);
  assert.deepEqual(short.times, [1, 30, 52]);
  assert.equal(short.expiresIn, 1000, 'the lease ends when its server said');
  assert.equal(short.lines.length, 1, short.lines.join('\n'));
  assert.match(
    short.lines[0] ?? '',
    /^dhcp valid lifetime under a minute: renewed as if a minute, expires as given .*"given":1,"renewAfter":30/,
  );
  const half = await counted(20, 45);
  assert.deepEqual(half.times, [45, 30, 52]);
  assert.equal(half.expiresIn, 45_000);
  const long = await counted(0xfffffffe, 0xfffffffe);
  assert.deepEqual(long.times, [604_800, 302_400, 529_200]);
  assert.equal(long.lines.length, 1);
  const infinite = await counted(INFINITE_SECONDS, INFINITE_SECONDS);
  assert.deepEqual(infinite.times, [INFINITE_SECONDS, INFINITE_SECONDS, INFINITE_SECONDS]);
  assert.deepEqual(infinite.lines, []);
  const usual = await counted(3600, 7200);
  assert.deepEqual(usual.times, [7200, 1800, 3150]);
  assert.deepEqual(usual.lines, []);
});

test('usableRouter: a /32 lease keeps its router (off the prefix by nature, reached on-link); a /24 lease drops one outside it', () => {
  const ignored: string[] = [];
  const note = (why: string): void => void ignored.push(why);
  assert.equal(usableRouter(parseAddress('10.128.0.1'), parsePrefix('10.128.0.7/32'), note)?.text, '10.128.0.1');
  assert.deepEqual(ignored, []);
  assert.equal(usableRouter(parseAddress('10.9.9.1'), parsePrefix('172.16.86.7/24'), note), null);
  assert.equal(ignored.length, 1);
});

test('renew: an ACK of the address held with a new mask or router goes through the offer check (a mask of 0.0.0.0 is declined); a router outside the prefix held is ignored and the held one kept, but a /32 lease keeps the router its server names', async () => {
  const held = await acquire(
    new ScriptedChannel((m) => answerWith(m.type === 'discover' ? 'offer' : 'ack', m, '172.16.86.125')),
    identity,
    { hint: null, deadline: Date.now() + 5000 },
  );
  const facts = { subnets: [], routers: [], heldBy: () => null };
  const checked: string[] = [];
  const check = (address: IpAddress, _mac: string, by: BoundBy): Promise<string | null> => {
    checked.push(`${address.text}/${by.prefixLength} via ${by.router?.text ?? 'none'}`);
    return Promise.resolve(refuseOffered(address, by, facts)?.why ?? null);
  };
  const reshaped = (mask: string, router: string) =>
    new ScriptedChannel((m) => {
      if (m.type !== 'request') return null;
      const ack = answerWith('ack', m, m.ciaddr.text);
      ack.options.set(OPT.subnetMask, Buffer.from(mask, 'hex'));
      ack.options.set(OPT.router, ipv4Option(parseAddress(router)));
      return ack;
    });

  const everything = reshaped('00000000', '172.16.86.1');
  const wide = await renew(everything, identity, held, 'renew', Date.now() + 5000, check);
  assert.deepEqual(wide, {
    kind: 'declined',
    message: 'declined 172.16.86.125, a subnet mask broader than /8 (/0)',
  });
  assert.deepEqual(checked, ['172.16.86.125/0 via 172.16.86.1']);
  assert.deepEqual(
    everything.sent.map((m) => m.type),
    ['request', 'decline'],
  );

  // A broader mask would bring a router off the network on-link: the route stays on the prefix held.
  const { log, lines } = warnings();
  const away = await renew(
    reshaped('ffff0000', '172.16.200.1'),
    identity,
    held,
    'renew',
    Date.now() + 5000,
    check,
    log,
  );
  assert.equal(away.kind, 'ack');
  assert.equal(away.kind === 'ack' ? away.lease.router?.text : null, '172.16.86.1');
  assert.deepEqual(checked.slice(1), ['172.16.86.125/16 via 172.16.86.1']);
  assert.match(
    lines.join('\n'),
    /ignoring the router a DHCP server named.*"router":"172\.16\.200\.1","why":"outside the prefix held 172\.16\.86\.0\/24"/,
  );

  const moved = await renew(reshaped('ffffff00', '172.16.86.254'), identity, held, 'renew', Date.now() + 5000, check);
  assert.equal(moved.kind === 'ack' ? moved.lease.router?.text : moved.kind, '172.16.86.254');
  assert.deepEqual(checked.slice(2), ['172.16.86.125/24 via 172.16.86.254'], 'a new router is checked too');

  const single = { ...held, address: parsePrefix('172.16.86.125/32'), router: parseAddress('10.128.0.1') };
  const cloud = await renew(reshaped('ffffffff', '10.128.0.9'), identity, single, 'renew', Date.now() + 5000, check);
  assert.equal(cloud.kind === 'ack' ? cloud.lease.router?.text : cloud.kind, '10.128.0.9');
});

/**
 * A LAN device answering each request with `count` malformed answers (from as many sources, so that no
 * two lines would be alike), then the server's good one.
 */
class FloodedChannel implements DhcpChannel {
  readonly where = 'eth0';
  private readonly pending: UdpDatagram[] = [];
  constructor(private readonly count: number) {}
  send(frame: Buffer): void {
    const d = decodeUdpFrame(frame);
    const m = d === null ? null : decodeDhcp(d.payload);
    assert.ok(m !== null);
    if (m.type === 'decline') return;
    const reply = answerWith(
      m.type === 'discover' ? 'offer' : 'ack',
      m,
      m.ciaddr.value === 0n ? '172.16.86.140' : m.ciaddr.text,
    );
    const datagram = (source: string, payload: Buffer): UdpDatagram => {
      const out = decodeUdpFrame(
        encodeUdpFrame({
          sourceMac: SERVER_MAC,
          destinationMac: m.chaddr,
          source: parseAddress(source),
          destination: parseAddress('255.255.255.255'),
          sourcePort: 67,
          destinationPort: 68,
          payload,
        }),
      );
      assert.ok(out !== null);
      return out;
    };
    const good = encodeDhcp(reply);
    for (let i = 0; i < this.count; i++) this.pending.push(datagram(`172.16.87.${i % 250}`, good.subarray(0, 247)));
    this.pending.push(datagram(SERVER.text, good));
  }
  async next(accept: (d: UdpDatagram) => boolean, deadline: number): Promise<UdpDatagram | null> {
    while (this.pending.length > 0) {
      const d = this.pending.shift();
      if (d !== undefined && accept(d)) return d;
    }
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())));
    return null;
  }
  async close(): Promise<void> {}
}

test('malformed answers at line rate: one line for the first on a network, then one a minute saying how many more came (per network, across exchanges), none in a quiet minute', async () => {
  const { MalformedAnswers } = await import('../../src/dhcp/malformed-log');
  const { log, lines } = warnings();
  const minute = 300; // stands in for the minute
  const reports = new MalformedAnswers(log, minute);
  try {
    const lease = await acquire(new FloodedChannel(200), identity, {
      hint: null,
      deadline: Date.now() + 5000,
      log,
      malformed: reports.on('net-a'),
    });
    assert.equal(lease.address.address.text, '172.16.86.140', 'the good answer after the flood is taken');
    const renewed = await renew(
      new FloodedChannel(200),
      identity,
      lease,
      'renew',
      Date.now() + 5000,
      undefined,
      log,
      reports.on('net-a'),
    );
    assert.equal(renewed.kind, 'ack');
    await acquire(new FloodedChannel(3), identity, {
      hint: null,
      deadline: Date.now() + 5000,
      log,
      malformed: reports.on('net-b'),
    });
    const malformed = (): string[] => lines.filter((l) => /malformed DHCP answer/.test(l));
    assert.equal(malformed().length, 2, malformed().join('\n'));
    assert.match(
      malformed()[0] ?? '',
      /^ignoring a malformed DHCP answer \{"network":"net-a","link":"eth0","server":"172\.16\.87\.0","why":"option \d+ runs past the end of the message"\}$/,
    );
    assert.match(malformed()[1] ?? '', /"network":"net-b"/);
    await new Promise((r) => setTimeout(r, minute * 1.5));
    assert.equal(malformed().length, 4, malformed().join('\n'));
    const summaries = malformed().slice(2).sort();
    assert.match(
      summaries[0] ?? '',
      /^ignoring malformed DHCP answers: more in the last minute \{"network":"net-a","count":599,.*"server":"172\.16\.87\.199"/,
    );
    assert.match(summaries[1] ?? '', /"network":"net-b","count":5,/);
    await new Promise((r) => setTimeout(r, minute * 2));
    assert.equal(malformed().length, 4, 'a quiet minute says nothing');
    await acquire(new FloodedChannel(1), identity, {
      hint: null,
      deadline: Date.now() + 5000,
      log,
      malformed: reports.on('net-a'),
    });
    assert.equal(malformed().length, 5, 'after a quiet minute the next one is a first again');
  } finally {
    reports.stop();
  }
});
