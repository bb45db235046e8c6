// A DHCPv4 server that lies, for what no honest server does. By default it ACKs a renewal (a REQUEST
// with ciaddr set) with another address than the one renewed, `moveTo`, once, and answers every
// other exchange as a server would (DISCOVER: an OFFER of `offer`; REQUEST of an offered address: its
// ACK; later renewals: an ACK of the address held). Per client MAC (`clients`) it can instead offer a
// list of addresses in turn, give any lease time (or none), NAK every REQUEST, or send its answers
// malformed. It runs in this process, on the LAN's br0 through a packet socket opened in the LAN
// namespace, speaking as br0 (the lab's dnsmasq's address and MAC, so a container's unicast renewal
// reaches it): stop dnsmasq while it answers.

import {
  DHCP_SERVER_PORT,
  DHCP_CLIENT_PORT,
  decodeDhcp,
  encodeDhcp,
  ipv4Option,
  OPT,
  secondsOption,
} from '../../src/dhcp/message';
import type { DhcpMessage } from '../../src/dhcp/message';
import { PacketChannel } from '../../src/dhcp/channel';
import { encodeUdpFrame, type UdpDatagram } from '../../src/l2/udp-frames';
import { parseAddress, type IpAddress } from '../../src/net/address';
import type { Lan } from './lan';
import { runOk } from './proc';

/** How the server treats one client (by its MAC). */
export interface RogueClient {
  /** What its DISCOVERs are offered, in turn; the last one again from then on. */
  offers?: string[];
  /** The lease time in its OFFERs and ACKs (default 120); null: no lease time option at all. */
  leaseSeconds?: number | null;
  /** T1 and T2 in its answers (default: the server's); null: none. */
  renewSeconds?: number | null;
  rebindSeconds?: number | null;
  /** Every REQUEST of it is NAKed (with message "no"). */
  nak?: boolean;
  /** Rewrites each encoded answer before it goes out (`n`: the answer's number for this client, from 0). */
  mangle?: (payload: Buffer, n: number) => Buffer;
}

export interface RogueDhcpOptions {
  /** Where the first renewal is moved to; none: renewals are ACKed as they are. */
  moveTo?: string;
  /** What a DISCOVER is offered (a client of `clients` with `offers` aside). */
  offer: string;
  /** The server's address (br0's). */
  serverId?: string;
  /** T1 and T2 in its ACKs (the lease is 120 s). */
  renewSeconds?: number;
  rebindSeconds?: number;
  /** Clients treated their own way, by MAC. */
  clients?: Record<string, RogueClient>;
}

interface Answer {
  type: 'offer' | 'ack' | 'nak';
  address: IpAddress;
}

export class RogueDhcpServer {
  /** Every message a client sent it, in order. */
  readonly heard: DhcpMessage[] = [];
  private moved = false;
  private stopped = false;
  private readonly loop: Promise<void>;
  /** Per client MAC: DISCOVERs heard, answers sent. */
  private readonly discovers = new Map<string, number>();
  private readonly answers = new Map<string, number>();

  private constructor(
    private readonly channel: PacketChannel,
    private readonly mac: string,
    private readonly options: RogueDhcpOptions,
  ) {
    this.loop = this.serve();
  }

  static start(lan: Lan, options: RogueDhcpOptions): RogueDhcpServer {
    const link = JSON.parse(runOk(['ip', '-n', lan.ns, '-j', 'link', 'show', lan.bridge])) as {
      ifindex: number;
      address: string;
    }[];
    const br0 = link[0];
    if (br0 === undefined) throw new Error(`lab: no ${lan.bridge} in ${lan.ns}`);
    const channel = PacketChannel.open(br0.ifindex, lan.bridge, {
      family: 4,
      port: DHCP_SERVER_PORT,
      netns: `/run/netns/${lan.ns}`,
    });
    return new RogueDhcpServer(channel, br0.address, options);
  }

  /** The messages of `type` it heard from `mac`. */
  heardFrom(type: DhcpMessage['type'], mac: string): DhcpMessage[] {
    return this.heard.filter((m) => m.type === type && m.chaddr === mac);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.channel.close();
    await this.loop;
  }

  private async serve(): Promise<void> {
    const request = (d: UdpDatagram): boolean => {
      const m = decodeDhcp(d.payload);
      return m !== null && !m.reply;
    };
    while (!this.stopped) {
      const datagram = await this.channel.next(request, Date.now() + 500);
      const m = datagram === null ? null : decodeDhcp(datagram.payload);
      if (m === null) continue;
      this.heard.push(m);
      const answer = this.answer(m);
      if (answer !== null) this.send(m, answer);
    }
  }

  private answer(m: DhcpMessage): Answer | null {
    const client = this.options.clients?.[m.chaddr];
    if (m.type === 'discover') {
      const n = this.discovers.get(m.chaddr) ?? 0;
      this.discovers.set(m.chaddr, n + 1);
      const offers = client?.offers ?? [this.options.offer];
      const offer = offers[Math.min(n, offers.length - 1)] ?? this.options.offer;
      return { type: 'offer', address: parseAddress(offer) };
    }
    if (m.type !== 'request') return null;
    if (client?.nak === true) return { type: 'nak', address: parseAddress('0.0.0.0') };
    if (m.ciaddr.value !== 0n) {
      if (this.moved || this.options.moveTo === undefined) return { type: 'ack', address: m.ciaddr };
      this.moved = true;
      return { type: 'ack', address: parseAddress(this.options.moveTo) };
    }
    const asked = m.options.get(OPT.requestedAddress);
    return asked === undefined ? null : { type: 'ack', address: parseAddress(asked.join('.')) };
  }

  private send(to: DhcpMessage, answer: Answer): void {
    const client = this.options.clients?.[to.chaddr];
    const server = parseAddress(this.options.serverId ?? '172.16.86.1');
    const leaseSeconds = client?.leaseSeconds === undefined ? 120 : client.leaseSeconds;
    const renewSeconds = client?.renewSeconds === undefined ? (this.options.renewSeconds ?? 3) : client.renewSeconds;
    const rebindSeconds =
      client?.rebindSeconds === undefined ? (this.options.rebindSeconds ?? 6) : client.rebindSeconds;
    const options = new Map<number, Buffer>([[OPT.serverId, ipv4Option(server)]]);
    if (answer.type === 'nak') options.set(OPT.message, Buffer.from('no'));
    else {
      if (leaseSeconds !== null) options.set(OPT.leaseTime, secondsOption(leaseSeconds));
      if (renewSeconds !== null) options.set(OPT.renewalTime, secondsOption(renewSeconds));
      if (rebindSeconds !== null) options.set(OPT.rebindingTime, secondsOption(rebindSeconds));
      options.set(OPT.subnetMask, Buffer.from('ffffff00', 'hex'));
      options.set(OPT.router, ipv4Option(server));
    }
    const reply: DhcpMessage = {
      reply: true,
      xid: to.xid,
      secs: 0,
      broadcast: to.broadcast,
      ciaddr: to.ciaddr,
      yiaddr: answer.address,
      chaddr: to.chaddr,
      type: answer.type,
      options,
    };
    const n = this.answers.get(to.chaddr) ?? 0;
    this.answers.set(to.chaddr, n + 1);
    const payload = client?.mangle === undefined ? encodeDhcp(reply) : client.mangle(encodeDhcp(reply), n);
    this.channel.send(
      encodeUdpFrame({
        sourceMac: this.mac,
        destinationMac: to.chaddr,
        source: server,
        destination: to.ciaddr.value !== 0n ? to.ciaddr : parseAddress('255.255.255.255'),
        sourcePort: DHCP_SERVER_PORT,
        destinationPort: DHCP_CLIENT_PORT,
        payload,
      }),
    );
  }
}
