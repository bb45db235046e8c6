/**
 * The DHCPv4 client's transactions (RFC 2131 §3-§4.4), each over a channel:
 * acquire (DISCOVER, OFFER, REQUEST, ACK), renew and rebind (REQUEST with the
 * address held), release. No state between calls: the lease keeper decides
 * when each runs.
 *
 * Frames are built whole (Ethernet, IPv4, UDP): the client sends from 0.0.0.0
 * before it has an address, and from the leased address out of a namespace
 * that may not hold it, neither of which a UDP socket can do.
 */
import { randomInt } from 'node:crypto';
import { LanplugError } from '../errors';
import { encodeUdpFrame } from '../l2/udp-frames';
import { leaseTimes, type DhcpIdentity, type Lease } from '../model/lease';
import { prefixContains, type IpAddress, type IpPrefix } from '../net/address';
import type { UdpDatagram } from '../l2/udp-frames';
import type { DhcpChannel } from './channel';
import {
  BROADCAST_V4,
  DHCP_CLIENT_PORT,
  DHCP_SERVER_PORT,
  encodeDhcp,
  ipv4Option,
  OPT,
  readAddress,
  readAddresses,
  readPrefixLength,
  readSeconds,
  ZERO_V4,
  decodeDhcp,
  type DhcpMessage,
  type MessageType,
} from './message';

/** A server's answer: the message, and the datagram it came in (its source is the server or relay). */
interface Reply {
  message: DhcpMessage;
  datagram: UdpDatagram;
}

const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';
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
/** After a NAK, the next DISCOVER waits a moment (RFC 2131 §3.1 step 5 asks for a back-off). */
const AFTER_NAK_MS = 1_000;
/**
 * After a DECLINE too. RFC 2131 §3.1 step 5 asks for 10 s, which would not fit
 * Docker's budget; a server marks a declined address unusable (dnsmasq: for
 * 10 minutes), so the next DISCOVER gets another one, and the loop is bounded
 * by the deadline and by MAX_DECLINES.
 */
const AFTER_DECLINE_MS = 1_000;
const MAX_DECLINES = 3;

/**
 * Asks whether an address a server bound (IPv4 or IPv6) may be used before it
 * is (RFC 2131 §4.4.1: the client SHOULD probe it, and DECLINE it when another
 * device answers; RFC 8415 §18.2.10.1 likewise). Resolves to who holds it
 * ("aa:bb:… (ARP reply)", or this host), or null: free, or in use but the
 * network's policy is to use it anyway. An answer from `ownMac`, the client's
 * own, is no other device: a container that starts over after its lease ran
 * out still holds the address it asks for.
 */
export type OfferCheck = (address: IpAddress, ownMac: string) => Promise<string | null>;

/**
 * `silent`: the lease stays as it is until the keeper tries again; `message` says why, when a server answered.
 * `declined`: the server moved the lease onto an address the check refused, and was told so; the client
 * starts over (RFC 2131 §4.4.1, RFC 8415 §18.2.8), keeping the address it held meanwhile.
 */
export type RenewOutcome =
  | { kind: 'ack'; lease: Lease }
  | { kind: 'nak'; message: string }
  | { kind: 'declined'; message: string }
  | { kind: 'silent'; message?: string };

/**
 * DISCOVER until an OFFER, then REQUEST it until an ACK, all before
 * `deadline`; a NAK starts over. `hint` is the address this identity held
 * last (option 50): a server that still has it free gives it back. An
 * acknowledged address that `check` finds in use on the LAN is declined
 * and the exchange starts over. `subnets`: where the network is known to be
 * (see prefixLengthFor), for an ACK that names no subnet mask.
 */
export async function acquire(
  channel: DhcpChannel,
  identity: DhcpIdentity,
  options: {
    hint: IpAddress | null;
    deadline: number;
    check?: OfferCheck | undefined;
    subnets?: readonly IpPrefix[] | undefined;
  },
): Promise<Lease> {
  const started = Date.now();
  let lastNak: string | null = null;
  let offered: string | null = null;
  const declined: string[] = [];
  let wait = 0;
  while (Date.now() < options.deadline && declined.length < MAX_DECLINES) {
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const xid = randomInt(0, 2 ** 32);
    // After a DECLINE, no address is asked for: a server gives a requested address that is free in its
    // books (dnsmasq does, declined or not), and only picks another for a client that asks for none.
    const hint = declined.length === 0 ? options.hint : null;
    const discover = message(identity, 'discover', xid, started, {
      broadcast: true,
      extra: hint === null ? [] : [[OPT.requestedAddress, ipv4Option(hint)]],
    });
    const offer = await exchange(channel, discover, fromZero(identity, discover), xid, ['offer'], options.deadline);
    if (offer === null) break;
    const serverId = readAddress(offer.message.options, OPT.serverId) ?? offer.datagram.source;
    offered = `${offer.message.yiaddr.text} from ${serverId.text}`;
    const request = message(identity, 'request', xid, started, {
      broadcast: true,
      extra: [
        [OPT.requestedAddress, ipv4Option(offer.message.yiaddr)],
        [OPT.serverId, ipv4Option(serverId)],
      ],
    });
    const answer = await exchange(channel, request, fromZero(identity, request), xid, ['ack', 'nak'], options.deadline);
    if (answer === null) break;
    if (answer.message.type === 'ack' && answer.message.yiaddr.value !== 0n) {
      const lease = leaseFrom(answer, (address) => prefixLengthFor(address, options.subnets ?? []));
      const inUseBy = options.check === undefined ? null : await options.check(lease.address.address, identity.mac);
      if (inUseBy === null) return lease;
      channel.send(fromZero(identity, decline(identity, lease, xid, started, inUseBy)));
      declined.push(`${lease.address.address.text}, in use by ${inUseBy}`);
      wait = AFTER_DECLINE_MS;
      continue;
    }
    lastNak = answer.message.type === 'nak' ? nakText(answer.message) : 'an ACK without an address';
    wait = AFTER_NAK_MS;
  }
  const seconds = Math.round((options.deadline - started) / 1000);
  throw new LanplugError(
    'Unavailable',
    declined.length > 0
      ? `the DHCP server offered only addresses in use on the LAN on ${channel.where} (declined: ${[...new Set(declined)].join('; ')})`
      : lastNak !== null
        ? `the DHCP server refused every address it offered on ${channel.where} (${lastNak})`
        : offered !== null
          ? `the DHCP server offered ${offered} on ${channel.where} but did not acknowledge it within ${seconds} s`
          : `no DHCP server answered on ${channel.where} within ${seconds} s`,
  );
}

/**
 * REQUEST with the held address as ciaddr: 'renew' unicast to the server that
 * granted it (RFC 2131 §4.4.5, T1), 'rebind' broadcast to any server (T2).
 * An ACK of another address than the one held goes through `check` as an
 * offer does: whoever answered (a rebind is broadcast: any device on the LAN
 * may) could name this host's address, or a router's. Refused, it is declined.
 */
export async function renew(
  channel: DhcpChannel,
  identity: DhcpIdentity,
  lease: Lease,
  how: 'renew' | 'rebind',
  deadline: number,
  check?: OfferCheck,
): Promise<RenewOutcome> {
  const xid = randomInt(0, 2 ** 32);
  const started = Date.now();
  const request = message(identity, 'request', xid, started, { broadcast: false, ciaddr: lease.address.address });
  const toServer = how === 'renew';
  const frame = encodeUdpFrame({
    sourceMac: identity.mac,
    destinationMac: toServer ? lease.serverMac : BROADCAST_MAC,
    source: lease.address.address,
    destination: toServer ? lease.serverId : BROADCAST_V4,
    sourcePort: DHCP_CLIENT_PORT,
    destinationPort: DHCP_SERVER_PORT,
    payload: encodeDhcp(request),
  });
  const answer = await exchange(channel, request, frame, xid, ['ack', 'nak'], deadline);
  if (answer === null) return { kind: 'silent' };
  if (answer.message.type === 'nak') return { kind: 'nak', message: nakText(answer.message) };
  // The mask is the server's to change; one that names none keeps the one held.
  const next = leaseFrom(answer, () => lease.address.prefixLength);
  const moved = next.address.address.value !== lease.address.address.value;
  const inUseBy = !moved || check === undefined ? null : await check(next.address.address, identity.mac);
  if (inUseBy === null) return { kind: 'ack', lease: next };
  channel.send(fromZero(identity, decline(identity, next, xid, started, inUseBy)));
  return { kind: 'declined', message: `declined ${next.address.address.text}, in use by ${inUseBy}` };
}

/** DHCPRELEASE, unicast from the leased address (dnsmasq ignores one from 0.0.0.0). Nothing answers a release. */
export function release(send: (frame: Buffer) => void, identity: DhcpIdentity, lease: Lease): void {
  const m = message(identity, 'release', randomInt(0, 2 ** 32), Date.now(), {
    broadcast: false,
    // RFC 2131 table 5: flags are 0 in a DHCPRELEASE, whatever the network.
    noBroadcastFlag: true,
    ciaddr: lease.address.address,
    extra: [[OPT.serverId, ipv4Option(lease.serverId)]],
  });
  send(
    encodeUdpFrame({
      sourceMac: identity.mac,
      destinationMac: lease.serverMac,
      source: lease.address.address,
      destination: lease.serverId,
      sourcePort: DHCP_CLIENT_PORT,
      destinationPort: DHCP_SERVER_PORT,
      payload: encodeDhcp(m),
    }),
  );
}

/** DHCPDECLINE (RFC 2131 table 5): the address and the server that gave it, from 0.0.0.0, broadcast. */
function decline(identity: DhcpIdentity, lease: Lease, xid: number, started: number, why: string): DhcpMessage {
  return message(identity, 'decline', xid, started, {
    broadcast: false,
    noBroadcastFlag: true,
    extra: [
      [OPT.requestedAddress, ipv4Option(lease.address.address)],
      [OPT.serverId, ipv4Option(lease.serverId)],
      [OPT.message, Buffer.from(`address in use by ${why}`.slice(0, 255))],
    ],
  });
}

/** Sends `frame` and waits for a reply of `types` to `xid`, sending again at growing gaps until `deadline`. */
async function exchange(
  channel: DhcpChannel,
  sent: DhcpMessage,
  frame: Buffer,
  xid: number,
  types: readonly MessageType[],
  deadline: number,
): Promise<Reply | null> {
  const answer = (d: UdpDatagram): DhcpMessage | null => {
    const m = decodeDhcp(d.payload);
    return m !== null && m.reply && m.xid === xid && m.chaddr === sent.chaddr && types.includes(m.type) ? m : null;
  };
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    channel.send(frame);
    const gap = RETRANSMIT_MS[Math.min(attempt, RETRANSMIT_MS.length - 1)] ?? 8_000;
    // Answers that arrive after a resend still count: a slow server (dnsmasq pings an address first) is not a lost one.
    const datagram = await channel.next((d) => answer(d) !== null, Math.min(deadline, Date.now() + gap));
    const message = datagram === null ? null : answer(datagram);
    if (datagram !== null && message !== null) return { message, datagram };
  }
  return null;
}

function message(
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
    if (identity.hostname !== null) options.set(OPT.hostname, Buffer.from(identity.hostname));
    options.set(OPT.vendorClass, VENDOR_CLASS);
    options.set(OPT.parameterList, PARAMETERS);
  }
  return {
    reply: false,
    xid,
    secs: Math.floor((Date.now() - started) / 1000),
    broadcast: opts.noBroadcastFlag === true ? false : opts.broadcast || identity.broadcast,
    ciaddr: opts.ciaddr ?? ZERO_V4,
    yiaddr: ZERO_V4,
    chaddr: identity.mac,
    type,
    options,
  };
}

/** A frame from 0.0.0.0:68 to 255.255.255.255:67, as a client without an address sends. */
function fromZero(identity: DhcpIdentity, m: DhcpMessage): Buffer {
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

function leaseFrom(ack: Reply, withoutMask: (address: IpAddress) => number): Lease {
  const { options } = ack.message;
  const leaseSeconds = readSeconds(options, OPT.leaseTime) ?? DEFAULT_LEASE_SECONDS;
  const times = leaseTimes(
    leaseSeconds,
    readSeconds(options, OPT.renewalTime),
    readSeconds(options, OPT.rebindingTime),
  );
  return {
    family: 4,
    address: {
      address: ack.message.yiaddr,
      prefixLength: readPrefixLength(options) ?? withoutMask(ack.message.yiaddr),
    },
    router: readAddress(options, OPT.router),
    dns: readAddresses(options, OPT.dnsServers),
    serverId: readAddress(options, OPT.serverId) ?? ack.datagram.source,
    serverMac: ack.datagram.sourceMac,
    serverDuid: null,
    leaseSeconds,
    ...times,
    boundAt: Date.now(),
    state: 'bound',
  };
}

function nakText(m: DhcpMessage): string {
  const text = m.options
    .get(OPT.message)
    ?.toString('utf8')
    .replace(/[^\x20-\x7e]/g, '?');
  return text === undefined || text === '' ? 'DHCPNAK' : `DHCPNAK: ${text}`;
}
