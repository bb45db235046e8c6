/**
 * One DHCPv4 exchange on the wire (RFC 2131 §4.1, §4.3): the client's
 * messages built (options, flags, the frame from 0.0.0.0 a client without an
 * address sends), sent and resent at growing gaps until an answer of the
 * kind wanted arrives, and an ACK read into a lease (its mask, router, DNS
 * and times, each option checked). The transactions that string these
 * together are in client.ts.
 */
import { encodeUdpFrame } from '../l2/udp-frames';
import type { Fields } from '../log';
import { boundedLeaseSeconds, leaseTimes, type DhcpIdentity, type Lease } from '../model/lease';
import { isHostName } from '../net/dns-name';
import { formatPrefix, prefixContains, type IpAddress, type IpPrefix } from '../net/address';
import { usableDnsServer, usableRouter } from './offer-rules';
import type { UdpDatagram } from '../l2/udp-frames';
import { exchangeNow, type DhcpChannel } from './channel';
import {
  BROADCAST_V4,
  clientFqdnOption,
  DHCP_CLIENT_PORT,
  DHCP_SERVER_PORT,
  encodeDhcp,
  ipv4Option,
  isReplyTo,
  malformedOptions,
  OPT,
  parseDhcp,
  readAddress,
  readAddresses,
  readPrefixLength,
  readSeconds,
  ZERO_V4,
  type DhcpMessage,
  type MessageType,
} from './message';

/** A server's answer: the message, and the datagram it came in (its source is the server or relay). */
export interface Reply {
  message: DhcpMessage;
  datagram: UdpDatagram;
}

export const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';
/** Retransmission gaps: short first (a lost frame on a quiet LAN), then RFC 2131's growing back-off. */
const RETRANSMIT_MS = [1_000, 2_000, 4_000, 8_000];
const VENDOR_CLASS = Buffer.from('lanplug');
/** What lanplug asks for: mask, router, DNS, domain, lease times. */
const PARAMETERS = Buffer.from([
  OPT.subnetMask,
  OPT.router,
  OPT.dnsServers,
  OPT.domainName,
  OPT.leaseTime,
  OPT.renewalTime,
  OPT.rebindingTime,
]);
/** What a lease is taken to last when an ACK has no lease time (it must have one, RFC 2131 table 3). */
const DEFAULT_LEASE_SECONDS = 3600;
/** DHCPDECLINE (RFC 2131 table 5): the address and the server that gave it, from 0.0.0.0, broadcast. */
export function decline(identity: DhcpIdentity, lease: Lease, xid: number, started: number, why: string): DhcpMessage {
  return message(identity, 'decline', xid, started, {
    broadcast: false,
    noBroadcastFlag: true,
    extra: [
      [OPT.requestedAddress, ipv4Option(lease.address.address)],
      [OPT.serverId, ipv4Option(lease.serverId)],
      [OPT.message, Buffer.from(`address ${why}`.slice(0, 255))],
    ],
  });
}

/**
 * Sends `frame` and waits for a reply of `types` to `xid`, sending again at growing gaps until
 * `deadline`. A reply to `xid` that does not decode goes to `onMalformed` and is not taken.
 */
export async function exchange(
  channel: DhcpChannel,
  sent: DhcpMessage,
  frame: Buffer,
  xid: number,
  types: readonly MessageType[],
  deadline: number,
  onMalformed: (from: UdpDatagram, why: string) => void = () => undefined,
): Promise<Reply | null> {
  const answer = (d: UdpDatagram): DhcpMessage | null => {
    const m = parseDhcp(d.payload);
    if (typeof m === 'string') {
      if (isReplyTo(d.payload, xid, sent.chaddr)) onMalformed(d, m);
      return null;
    }
    return m.reply && m.xid === xid && m.chaddr === sent.chaddr && types.includes(m.type) ? m : null;
  };
  for (let attempt = 0; exchangeNow() < deadline; attempt++) {
    channel.send(frame);
    const gap = RETRANSMIT_MS[Math.min(attempt, RETRANSMIT_MS.length - 1)] ?? 8_000;
    const resendAt = Math.min(deadline, exchangeNow() + gap);
    // Answers that arrive after a resend still count: a slow server (dnsmasq pings an address first) is not a lost one.
    const datagram = await channel.next((d) => answer(d) !== null, resendAt);
    const message = datagram === null ? null : parseDhcp(datagram.payload);
    if (datagram !== null && message !== null && typeof message !== 'string') return { message, datagram };
    // The wait ran to the deadline: the exchange is over, even when its timer ended a hair before it by
    // this clock (Node's timers count on the event loop's time, read at the start of its turn).
    if (resendAt === deadline) break;
  }
  return null;
}

export function message(
  identity: DhcpIdentity,
  type: MessageType,
  xid: number,
  started: number,
  opts: { broadcast: boolean; noBroadcastFlag?: boolean; ciaddr?: IpAddress; extra?: [number, Buffer][] },
): DhcpMessage {
  const options = new Map<number, Buffer>([[OPT.clientId, Buffer.from(identity.clientId, 'hex')]]);
  for (const [code, value] of opts.extra ?? []) options.set(code, value);
  // A release or decline carries no parameters (RFC 2131 table 5).
  if (type !== 'release' && type !== 'decline') {
    // Both: option 12 for the servers that know no other (many home routers), 81 for those that register
    // only clients asking for it (Windows' server); dnsmasq prefers 81. RFC 4702 §3.1 asks a client to send
    // 81 alone: Windows clients send both, and so does lanplug.
    if (identity.hostname !== null) {
      options.set(OPT.hostname, Buffer.from(identity.hostname));
      if (isHostName(identity.hostname)) options.set(OPT.clientFqdn, clientFqdnOption(identity.hostname));
    }
    options.set(OPT.vendorClass, VENDOR_CLASS);
    options.set(OPT.parameterList, PARAMETERS);
  }
  return {
    reply: false,
    xid,
    secs: Math.floor((exchangeNow() - started) / 1000),
    broadcast: opts.noBroadcastFlag === true ? false : opts.broadcast || identity.broadcast,
    ciaddr: opts.ciaddr ?? ZERO_V4,
    yiaddr: ZERO_V4,
    chaddr: identity.mac,
    type,
    options,
  };
}

/** A frame from 0.0.0.0:68 to 255.255.255.255:67, as a client without an address sends. */
export function fromZero(identity: DhcpIdentity, m: DhcpMessage): Buffer {
  return encodeUdpFrame({
    sourceMac: identity.mac,
    destinationMac: BROADCAST_MAC,
    source: ZERO_V4,
    destination: BROADCAST_V4,
    sourcePort: DHCP_CLIENT_PORT,
    destinationPort: DHCP_SERVER_PORT,
    payload: encodeDhcp(m),
  });
}

/**
 * The prefix length of an address whose ACK named no subnet mask (it should: RFC 2131 §3.3): that
 * of the network's subnet holding it (the user's --subnet, or the host's own on the parent), else
 * the address's natural (classful) mask, what dhcpcd and busybox's udhcpc script fall back to.
 */
export function prefixLengthFor(address: IpAddress, subnets: readonly IpPrefix[]): number {
  const known = subnets.find((s) => prefixContains(s, address));
  if (known !== undefined) return known.prefixLength;
  const first = Number(address.value >> 24n);
  return first < 128 ? 8 : first < 192 ? 16 : 24;
}

/**
 * The lease an ACK grants. Options of a malformed value are ignored as if absent, each reported to
 * `note`; so is a lease time lanplug counts otherwise (boundedLeaseSeconds).
 */
export function leaseFrom(
  ack: Reply,
  withoutMask: (address: IpAddress) => number,
  note: (msg: string, fields: Fields) => void,
): Lease {
  const options = new Map(ack.message.options);
  const address = ack.message.yiaddr;
  const faults = malformedOptions(options);
  for (const fault of faults) options.delete(fault.option);
  const serverId = readAddress(options, OPT.serverId) ?? ack.datagram.source;
  for (const fault of faults) {
    note('ignoring a malformed DHCP option', {
      address: address.text,
      server: serverId.text,
      option: fault.option,
      name: fault.name,
      why: fault.why,
    });
  }
  const given = readSeconds(options, OPT.leaseTime) ?? DEFAULT_LEASE_SECONDS;
  const leaseSeconds = boundedLeaseSeconds(given);
  if (leaseSeconds !== given)
    note('dhcp lease time out of bounds: counted as the nearest bound', {
      address: address.text,
      server: serverId.text,
      given,
      counted: leaseSeconds,
    });
  const times = leaseTimes(
    leaseSeconds,
    readSeconds(options, OPT.renewalTime),
    readSeconds(options, OPT.rebindingTime),
  );
  const leased = { address, prefixLength: readPrefixLength(options) ?? withoutMask(address) };
  const named = readAddress(options, OPT.router);
  const router = usableRouter(named, leased, (why) =>
    note('ignoring the router a DHCP server named: no default route via it', {
      address: formatPrefix(leased),
      server: serverId.text,
      router: named?.text,
      why,
    }),
  );
  return {
    family: 4,
    address: leased,
    router,
    dns: readAddresses(options, OPT.dnsServers).filter(usableDnsServer),
    serverId,
    serverMac: ack.datagram.sourceMac,
    serverDuid: null,
    leaseSeconds,
    ...times,
    boundAt: Date.now(),
    state: 'bound',
  };
}

export function nakText(m: DhcpMessage): string {
  const text = m.options
    .get(OPT.message)
    ?.toString('utf8')
    .replace(/[^\x20-\x7e]/g, '?');
  return text === undefined || text === '' ? 'DHCPNAK' : `DHCPNAK: ${text}`;
}
