// Fakes for the DHCP client's unit tests: a client identity, a scripted DHCPv4 server and a DHCPv6 one
// behind fake channels, a LAN device flooding malformed answers, and a logger that keeps its warnings.
// The e2e lane runs the same client against dnsmasq on a real LAN.

import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { exchangeDeadline, exchangeNow, type DhcpChannel } from '../../src/dhcp/channel';
import {
  decodeDhcp,
  encodeDhcp,
  ipv4Option,
  OPT,
  secondsOption,
  ZERO_V4,
  type DhcpMessage,
} from '../../src/dhcp/message';
import { decodeUdpFrame, encodeUdpFrame, type UdpDatagram } from '../../src/l2/udp-frames';
import { type DhcpIdentity } from '../../src/model/lease';
import { addressFromBytes, parseAddress } from '../../src/net/address';

export const identity: DhcpIdentity = {
  mac: '02:00:00:00:00:09',
  clientId: '0102000000000009',
  duid: '00030001020000000009',
  iaid: 1,
  stable: true,
  hostname: 'web',
  broadcast: false,
};
export const SERVER = parseAddress('172.16.86.1');
export const SERVER_MAC = '02:00:00:00:00:01';

/** A channel whose server answers each sent DHCP message with what `answer` returns. */
export class ScriptedChannel implements DhcpChannel {
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
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - exchangeNow())));
    return null;
  }
  async close(): Promise<void> {}
}

/** A channel no server answers: it counts the frames sent (calling `onSend` after each), and sends none once closed. */
export class SilentChannel implements DhcpChannel {
  readonly where = 'eth0';
  sends = 0;
  private closed = false;
  constructor(private readonly onSend: () => void = () => undefined) {}
  send(): void {
    if (this.closed) throw new Error('the channel is closed');
    this.sends++;
    this.onSend();
  }
  async next(_accept: (d: UdpDatagram) => boolean, deadline: number): Promise<null> {
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - exchangeNow())));
    return null;
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** What `work` came to within `ms` of real time: its value, its error's message, or `timedOut`. */
export async function within<T>(ms: number, work: Promise<T>, timedOut: string): Promise<T | string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work.catch((err: unknown) => (err instanceof Error ? err.message : String(err))),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve(timedOut), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A silent exchange's run under a wall-clock step (exchangeOnSteppedClocks). */
export interface SteppedRun<T> {
  step: number;
  outcome: T | string;
  sends: number;
  tookMs: number;
}

/**
 * Runs `exchange` against a server that never answers, with a deadline 1.2 s away, twice: the wall
 * clock (Date.now, mocked through `t`) set forward a day at its first message, then back an hour. An
 * exchange on the monotonic clock sends twice (at 0 and 1 s) and ends after about 1.2 s both times.
 */
export async function exchangeOnSteppedClocks<T>(
  t: TestContext,
  exchange: (channel: SilentChannel, deadline: number) => Promise<T>,
): Promise<SteppedRun<T>[]> {
  let wall = Date.UTC(2026, 11, 6);
  t.mock.method(Date, 'now', () => wall);
  const runs: SteppedRun<T>[] = [];
  for (const step of [24 * 3_600_000, -3_600_000]) {
    const channel = new SilentChannel(() => {
      if (channel.sends === 1) wall += step;
    });
    const began = performance.now();
    const outcome = await within(5_000, exchange(channel, exchangeDeadline(1_200)), 'still resending 5 s later');
    runs.push({ step, outcome, sends: channel.sends, tookMs: performance.now() - began });
    await channel.close();
  }
  return runs;
}

export function answerWith(type: DhcpMessage['type'], to: DhcpMessage, address: string): DhcpMessage {
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

/** A REQUEST of xid 7, for answerWith. */
export function emptyRequest(): DhcpMessage {
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

export type IaAddress = import('../../src/dhcp/message6').IaNa['addresses'][number];

/**
 * The addresses a client's IA_NA names, lifetimes or not (a client sends 0: decodeIaNa, which reads
 * a server's, drops those as taken back).
 */
export async function namedIn(ia: Buffer | null): Promise<string[] | null> {
  const m6 = await import('../../src/dhcp/message6');
  if (ia === null) return null;
  const inner = m6.decodeOptions(ia.subarray(12)) ?? [];
  return inner.filter((o) => o.code === m6.OPT6.iaAddr).map((o) => addressFromBytes(o.value.subarray(0, 16)).text);
}

/** RFC 8415 §21.13's status codes, as a server sends them. */
export const RFC8415 = { unspecFail: 1, noAddrsAvail: 2, noBinding: 3, notOnLink: 4, useMulticast: 5 } as const;

/** A status code a fake server puts in its answer: in the message, or in its IA_NA. */
export interface FakeStatus {
  code: number;
  text: string;
  inIa: boolean;
}

/**
 * A DHCPv6 server behind a fake channel: every Solicit gets an Advertise, every other message a
 * Reply, each with an IA_NA of the addresses `give` returns for it, and the status `status` returns.
 * `sent` records what the client sent, with when.
 */
export async function fakeServer6(
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
      await new Promise((r) => setTimeout(r, Math.max(0, deadline - exchangeNow())));
      return null;
    },
    async close() {},
  };
  return { channel, sent, sentAt, serverDuid, m6 };
}

/** A logger that keeps its warn lines (message and fields), for asserting the one line a refusal or a clamp gives. */
export function warnings(): { log: import('../../src/log').Logger; lines: string[] } {
  const lines: string[] = [];
  const log = {
    debug() {},
    info() {},
    warn: (msg: string, fields?: Record<string, unknown>) => lines.push(`${msg} ${JSON.stringify(fields ?? {})}`),
    error() {},
  };
  return { log, lines };
}

/**
 * A LAN device answering each request with `count` malformed answers (from as many sources, so that no
 * two lines would be alike), then the server's good one.
 */
export class FloodedChannel implements DhcpChannel {
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
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - exchangeNow())));
    return null;
  }
  async close(): Promise<void> {}
}
