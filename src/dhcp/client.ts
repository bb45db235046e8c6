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
import { silentLogger, type Fields, type Logger } from '../log';
import { boundedLeaseSeconds, leaseTimes, type DhcpIdentity, type Lease } from '../model/lease';
import { formatPrefix, networkOf, prefixContains, sameAddress, type IpAddress, type IpPrefix } from '../net/address';
import { usableDnsServer, usableRouter } from './offer-rules';
import type { UdpDatagram } from '../l2/udp-frames';
import type { DhcpChannel } from './channel';
import {
  BROADCAST_V4,
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
 * NAKs of the address just offered before lanplug gives up: one is a race (another client took
 * the address between OFFER and REQUEST), three in a row is a server that refuses what it offers,
 * and waiting out the rest of dhcp.timeout would only delay the same error.
 */
const MAX_NAKS = 3;
/**
 * After a DECLINE too. RFC 2131 §3.1 step 5 asks for 10 s, which would not fit
 * Docker's budget; a server marks a declined address unusable (dnsmasq: for
 * 10 minutes), so the next DISCOVER gets another one, and the loop is bounded
 * by the deadline and by MAX_DECLINES.
 */
const AFTER_DECLINE_MS = 1_000;
const MAX_DECLINES = 3;

/** What the answer that bound an address said besides it: who sent it, the router it names (DHCPv4), its prefix length, and to whom. */
export interface BoundBy {
  server: IpAddress;
  router: IpAddress | null;
  /** DHCPv4: the mask the answer gave (or the one assumed without one); DHCPv6: the network's. */
  prefixLength: number;
  identity: DhcpIdentity;
}

/**
 * Asks whether an address a server bound (IPv4 or IPv6) may be used before it
 * is (RFC 2131 §4.4.1: the client SHOULD probe it, and DECLINE it when another
 * device answers; RFC 8415 §18.2.10.1 likewise; and what the network knows
 * without asking: its subnet, its router, this host's and its other
 * containers' addresses). Resolves to why not, as a phrase ("in use by
 * aa:bb:… (…)", "outside the network's subnet …"), or null: usable, or in use
 * but the network's policy is to use it anyway. An answer from `ownMac`, the
 * client's own, is no other device: a container that starts over after its
 * lease ran out still holds the address it asks for.
 */
export type OfferCheck = (address: IpAddress, ownMac: string, by: BoundBy) => Promise<string | null>;

/**
 * Where a malformed answer to one of lanplug's transactions is said (fields: the link, the server,
 * why): the keeper's rate-limited log of its network (malformed-log.ts). Without one, a line per
 * exchange and fault.
 */
export type MalformedReport = (fields: Fields) => void;

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
 * `deadline`; a NAK starts over (MAX_NAKS at most). `hint` is the address
 * this identity held last (option 50): a server that still has it free gives
 * it back. An acknowledged address that `check` refuses is declined and the
 * exchange starts over (MAX_DECLINES at most). `subnets`: where the network
 * is known to be (see prefixLengthFor), for an ACK that names no subnet
 * mask. An answer that does not decode is ignored and said to `malformed`
 * (else a line in `log`), an option of a malformed value with a line in `log`.
 */
export async function acquire(
  channel: DhcpChannel,
  identity: DhcpIdentity,
  options: {
    hint: IpAddress | null;
    deadline: number;
    check?: OfferCheck | undefined;
    subnets?: readonly IpPrefix[] | undefined;
    log?: Logger | undefined;
    malformed?: MalformedReport | undefined;
  },
): Promise<Lease> {
  const started = Date.now();
  const note = onceEach(options.log ?? silentLogger);
  const report = options.malformed ?? ((fields: Fields) => note('ignoring a malformed DHCP answer', fields));
  let lastNak: { server: string; address: string; text: string } | null = null;
  let naks = 0;
  let offered: string | null = null;
  let malformed: { server: string; why: string } | null = null;
  const onMalformed = (from: UdpDatagram, why: string): void => {
    malformed = { server: from.source.text, why };
    report({ link: channel.where, server: from.source.text, why });
  };
  const declined: string[] = [];
  // A server offering a refused address again (a rogue one does) is not asked about, nor logged, twice.
  const refusals = new Map<string, string | null>();
  let wait = 0;
  while (Date.now() < options.deadline && declined.length < MAX_DECLINES && naks < MAX_NAKS) {
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const xid = randomInt(0, 2 ** 32);
    // After a DECLINE, no address is asked for: a server gives a requested address that is free in its
    // books (dnsmasq does, declined or not), and only picks another for a client that asks for none.
    const hint = declined.length === 0 ? options.hint : null;
    const discover = message(identity, 'discover', xid, started, {
      broadcast: true,
      extra: hint === null ? [] : [[OPT.requestedAddress, ipv4Option(hint)]],
    });
    const offer = await exchange(
      channel,
      discover,
      fromZero(identity, discover),
      xid,
      ['offer'],
      options.deadline,
      onMalformed,
    );
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
    const answer = await exchange(
      channel,
      request,
      fromZero(identity, request),
      xid,
      ['ack', 'nak'],
      options.deadline,
      onMalformed,
    );
    if (answer === null) break;
    if (answer.message.type === 'ack' && answer.message.yiaddr.value !== 0n) {
      const lease = leaseFrom(
        answer,
        (address) => prefixLengthFor(address, options.subnets ?? []),
        (msg, fields) => note(msg, { link: channel.where, ...fields }),
      );
      const address = lease.address.address;
      const seen = refusals.get(address.text);
      const refusal =
        seen !== undefined || options.check === undefined
          ? (seen ?? null)
          : await options.check(address, identity.mac, {
              server: lease.serverId,
              router: lease.router,
              prefixLength: lease.address.prefixLength,
              identity,
            });
      refusals.set(address.text, refusal);
      if (refusal === null) return lease;
      channel.send(fromZero(identity, decline(identity, lease, xid, started, refusal)));
      declined.push(`${address.text}, ${refusal}`);
      wait = AFTER_DECLINE_MS;
      continue;
    }
    naks++;
    lastNak = {
      server: (readAddress(answer.message.options, OPT.serverId) ?? answer.datagram.source).text,
      address: offer.message.yiaddr.text,
      text: answer.message.type === 'nak' ? nakText(answer.message) : 'an ACK without an address',
    };
    wait = AFTER_NAK_MS;
  }
  throw new LanplugError(
    'Unavailable',
    acquireFailure(channel.where, started, options.deadline, {
      declined,
      naks,
      lastNak,
      offered,
      malformed,
    }),
  );
}

/** The one line a failed acquire ends with: the most telling of what happened. */
function acquireFailure(
  where: string,
  started: number,
  deadline: number,
  what: {
    declined: readonly string[];
    naks: number;
    lastNak: { server: string; address: string; text: string } | null;
    offered: string | null;
    malformed: { server: string; why: string } | null;
  },
): string {
  const seconds = Math.round((deadline - started) / 1000);
  const { declined, lastNak, malformed } = what;
  if (declined.length > 0) {
    const list = [...new Set(declined)].join('; ');
    return declined.every((d) => / in use by /.test(d))
      ? `the DHCP server offered only addresses in use on the LAN on ${where} (declined: ${list})`
      : `the DHCP server offered only addresses lanplug may not use on ${where} (declined: ${list})`;
  }
  if (lastNak !== null)
    return `the DHCP server ${lastNak.server} refused the address it offered (${lastNak.address})${what.naks > 1 ? ` ${what.naks} times` : ''} on ${where} (${lastNak.text})`;
  if (what.offered !== null)
    return `the DHCP server offered ${what.offered} on ${where} but did not acknowledge it within ${seconds} s`;
  if (malformed !== null)
    return `the DHCP server ${malformed.server} answered on ${where} only with malformed messages (${malformed.why})`;
  return `no DHCP server answered on ${where} within ${seconds} s`;
}

/**
 * REQUEST with the held address as ciaddr: 'renew' unicast to the server that
 * granted it (RFC 2131 §4.4.5, T1), 'rebind' broadcast to any server (T2).
 * An ACK of another address than the one held, or of the same with another
 * mask or router, goes through `check` as an offer does: whoever answered (a
 * rebind is broadcast: any device on the LAN may) could name this host's
 * address, or a router's, or a mask that puts the Internet on-link. Refused,
 * it is declined. A router outside the prefix held is not taken (keepRouterOnPrefix).
 * What an ACK of the address held says about itself (a lease time out of
 * bounds, a malformed option) is logged only when it changes the lease.
 */
export async function renew(
  channel: DhcpChannel,
  identity: DhcpIdentity,
  lease: Lease,
  how: 'renew' | 'rebind',
  deadline: number,
  check?: OfferCheck,
  log: Logger = silentLogger,
  malformed?: MalformedReport,
): Promise<RenewOutcome> {
  const xid = randomInt(0, 2 ** 32);
  const started = Date.now();
  const note = onceEach(log);
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
  const report = malformed ?? ((fields: Fields) => note('ignoring a malformed DHCP answer', fields));
  const answer = await exchange(channel, request, frame, xid, ['ack', 'nak'], deadline, (from, why) =>
    report({ link: channel.where, server: from.source.text, why }),
  );
  if (answer === null) return { kind: 'silent' };
  if (answer.message.type === 'nak') return { kind: 'nak', message: nakText(answer.message) };
  // The mask is the server's to change; one that names none keeps the one held.
  const notes: [string, Fields][] = [];
  let next = leaseFrom(
    answer,
    () => lease.address.prefixLength,
    (msg, fields) => notes.push([msg, fields]),
  );
  const moved = next.address.address.value !== lease.address.address.value;
  if (!moved) next = keepRouterOnPrefix(next, lease, (msg, fields) => notes.push([msg, fields]));
  const reshaped = next.address.prefixLength !== lease.address.prefixLength || !sameAddress(next.router, lease.router);
  if (moved || reshaped || next.leaseSeconds !== lease.leaseSeconds)
    for (const [msg, fields] of notes) note(msg, { link: channel.where, ...fields });
  // The address held was checked when it was bound; a new mask or router was not (mask 0.0.0.0 puts
  // the Internet on-link, a router that is the server's own address or a neighbour's takes the traffic).
  const refusal =
    !(moved || reshaped) || check === undefined
      ? null
      : await check(next.address.address, identity.mac, {
          server: next.serverId,
          router: next.router,
          prefixLength: next.address.prefixLength,
          identity,
        });
  if (refusal === null) return { kind: 'ack', lease: next };
  if (!moved) {
    // The address is the container's and in use: never declined. Only the new shape is refused (a
    // rogue's mask 0.0.0.0 at a broadcast rebind, or a typo in the server's options would otherwise
    // renumber every container at its next renewal); the lease keeps the shape it was bound with and
    // takes the server's new times.
    note('keeping the mask and router held: the ones a DHCP renewal brought are refused', {
      link: channel.where,
      address: formatPrefix(lease.address),
      server: next.serverId.text,
      offered: formatPrefix(next.address),
      router: next.router?.text ?? null,
      why: refusal,
    });
    return { kind: 'ack', lease: { ...next, address: lease.address, router: lease.router } };
  }
  channel.send(fromZero(identity, decline(identity, next, xid, started, refusal)));
  return { kind: 'declined', message: `declined ${next.address.address.text}, ${refusal}` };
}

/**
 * A renewal of the address held keeps its route on the prefix held: a router outside it (brought
 * on-link by a broader mask in the same ACK) is ignored, with a line, and the router held kept. A
 * server renumbering its LAN moves its clients with a NAK; a renewal that widens the mask and moves
 * the default route off the network is a rogue's or a typo. A /32 lease has its router off the
 * prefix by nature (usableRouter) and keeps the one its server names.
 */
function keepRouterOnPrefix(next: Lease, held: Lease, note: (msg: string, fields: Fields) => void): Lease {
  const router = next.router;
  if (router === null || held.address.prefixLength >= 32 || prefixContains(held.address, router)) return next;
  note('ignoring the router a DHCP server named: no default route via it', {
    address: formatPrefix(next.address),
    server: next.serverId.text,
    router: router.text,
    why: `outside the prefix held ${formatPrefix(networkOf(held.address))}`,
    kept: held.router?.text ?? null,
  });
  return { ...next, router: held.router };
}

/** A warning logger that says each thing once (a rogue server repeats itself at every retransmission). */
export function onceEach(log: Logger): (msg: string, fields: Fields) => void {
  const said = new Set<string>();
  return (msg, fields) => {
    const key = `${msg} ${JSON.stringify(fields)}`;
    if (said.has(key)) return;
    said.add(key);
    log.warn(msg, fields);
  };
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
      [OPT.message, Buffer.from(`address ${why}`.slice(0, 255))],
    ],
  });
}

/**
 * Sends `frame` and waits for a reply of `types` to `xid`, sending again at growing gaps until
 * `deadline`. A reply to `xid` that does not decode goes to `onMalformed` and is not taken.
 */
async function exchange(
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
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    channel.send(frame);
    const gap = RETRANSMIT_MS[Math.min(attempt, RETRANSMIT_MS.length - 1)] ?? 8_000;
    // Answers that arrive after a resend still count: a slow server (dnsmasq pings an address first) is not a lost one.
    const datagram = await channel.next((d) => answer(d) !== null, Math.min(deadline, Date.now() + gap));
    const message = datagram === null ? null : parseDhcp(datagram.payload);
    if (datagram !== null && message !== null && typeof message !== 'string') return { message, datagram };
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

/**
 * The lease an ACK grants. Options of a malformed value are ignored as if absent, each reported to
 * `note`; so is a lease time lanplug counts otherwise (boundedLeaseSeconds).
 */
function leaseFrom(
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

function nakText(m: DhcpMessage): string {
  const text = m.options
    .get(OPT.message)
    ?.toString('utf8')
    .replace(/[^\x20-\x7e]/g, '?');
  return text === undefined || text === '' ? 'DHCPNAK' : `DHCPNAK: ${text}`;
}
