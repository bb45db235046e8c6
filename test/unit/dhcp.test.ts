/**
 * The DHCP client's wire formats and transactions. The frames are checked
 * byte for byte where RFC 2131 fixes them; the transactions run against a
 * scripted server on a fake channel (the Docker lane runs them against
 * dnsmasq on a real LAN).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DhcpChannel, Reply } from '../../src/dhcp/channel';
import { acquire, renew } from '../../src/dhcp/client';
import {
  decodeDhcp,
  encodeDhcp,
  ipv4Option,
  OPT,
  readPrefixLength,
  secondsOption,
  ZERO_V4,
  type DhcpMessage,
} from '../../src/dhcp/message';
import { decodeUdpFrame, encodeUdpFrame, internetChecksum } from '../../src/l2/udp-frames';
import type { DhcpIdentity } from '../../src/model/lease';
import { parseAddress } from '../../src/net/address';

const identity: DhcpIdentity = {
  mac: '02:00:00:00:00:09',
  clientId: '0102000000000009',
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
  private pending: Reply[] = [];
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
      this.pending.push({ message: reply, datagram });
    }
  }
  async next(accept: (r: Reply) => boolean, deadline: number): Promise<Reply | null> {
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
