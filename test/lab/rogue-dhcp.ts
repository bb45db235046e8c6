// A DHCPv4 server that lies, for what no honest server does: it ACKs a renewal (a REQUEST with
// ciaddr set) with another address than the one renewed, `moveTo`, once; every other exchange it
// answers as a server would (DISCOVER: an OFFER of `offer`; REQUEST of an offered address: its ACK;
// later renewals: an ACK of the address held). It runs in this process, on the LAN's br0 through
// a packet socket opened in the LAN namespace, speaking as br0 (the lab's dnsmasq's address and
// MAC, so a container's unicast renewal reaches it): stop dnsmasq while it answers.

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

export interface RogueDhcpOptions {
  /** Where the first renewal is moved to. */
  moveTo: string;
  /** What a DISCOVER is offered. */
  offer: string;
  /** The server's address (br0's). */
  serverId?: string;
  /** T1 and T2 in its ACKs (the lease is 120 s). */
  renewSeconds?: number;
  rebindSeconds?: number;
}

export class RogueDhcpServer {
  /** Every message a client sent it, in order. */
  readonly heard: DhcpMessage[] = [];
  private moved = false;
  private stopped = false;
  private readonly loop: Promise<void>;

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

  private answer(m: DhcpMessage): { type: 'offer' | 'ack'; address: IpAddress } | null {
    if (m.type === 'discover') return { type: 'offer', address: parseAddress(this.options.offer) };
    if (m.type !== 'request') return null;
    if (m.ciaddr.value !== 0n) {
      if (this.moved) return { type: 'ack', address: m.ciaddr };
      this.moved = true;
      return { type: 'ack', address: parseAddress(this.options.moveTo) };
    }
    const asked = m.options.get(OPT.requestedAddress);
    return asked === undefined ? null : { type: 'ack', address: parseAddress(asked.join('.')) };
  }

  private send(to: DhcpMessage, answer: { type: 'offer' | 'ack'; address: IpAddress }): void {
    const server = parseAddress(this.options.serverId ?? '172.16.86.1');
    const reply: DhcpMessage = {
      reply: true,
      xid: to.xid,
      secs: 0,
      broadcast: to.broadcast,
      ciaddr: to.ciaddr,
      yiaddr: answer.address,
      chaddr: to.chaddr,
      type: answer.type,
      options: new Map([
        [OPT.serverId, ipv4Option(server)],
        [OPT.leaseTime, secondsOption(120)],
        [OPT.renewalTime, secondsOption(this.options.renewSeconds ?? 3)],
        [OPT.rebindingTime, secondsOption(this.options.rebindSeconds ?? 6)],
        [OPT.subnetMask, Buffer.from('ffffff00', 'hex')],
        [OPT.router, ipv4Option(server)],
      ]),
    };
    this.channel.send(
      encodeUdpFrame({
        sourceMac: this.mac,
        destinationMac: to.chaddr,
        source: server,
        destination: to.ciaddr.value !== 0n ? to.ciaddr : parseAddress('255.255.255.255'),
        sourcePort: DHCP_SERVER_PORT,
        destinationPort: DHCP_CLIENT_PORT,
        payload: encodeDhcp(reply),
      }),
    );
  }
}
