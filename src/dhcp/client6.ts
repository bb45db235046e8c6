/**
 * The DHCPv6 client's transactions (RFC 8415 §18): acquire (Solicit,
 * Advertise, Request, Reply), renew and rebind, release, each over a channel.
 * Every message goes to All_DHCP_Relay_Agents_and_Servers (ff02::1:2) from
 * the link-local address the container's MAC gives (EUI-64), which is the
 * one its link has in any namespace; servers answer it by unicast.
 */
import { randomInt } from 'node:crypto';
import { LanplugError } from '../errors';
import { encodeUdp6Frame, linkLocalOf, type UdpDatagram } from '../l2/udp-frames';
import { silentLogger, type Fields, type Logger } from '../log';
import { boundedLeaseSeconds, leaseTimes, type DhcpIdentity, type Lease } from '../model/lease';
import { addressFromBytes, parseAddress, type IpAddress } from '../net/address';
import { decodeDnsNames, isHostName } from '../net/dns-name';
import { exchangeNow, type DhcpChannel } from './channel';
import { onceEach, type OfferCheck, type RenewOutcome } from './outcomes';
import {
  DHCP6_CLIENT_PORT,
  DHCP6_SERVER_PORT,
  decodeDhcp6,
  decodeIaNa,
  encodeDhcp6,
  encodeIaNa,
  fqdnOption,
  OPT6,
  option,
  STATUS6,
  STATUS6_NAMES,
  statusOf,
  type Dhcp6Message,
  type Dhcp6Option,
  type IaNa,
  type Message6Type,
} from './message6';

const ALL_SERVERS = parseAddress('ff02::1:2');
const ALL_SERVERS_MAC = '33:33:00:01:00:02';
/** RFC 8415 §7.6 gives 1 s first (SOL_TIMEOUT); lanplug doubles from there within its budget. */
const RETRANSMIT_MS = [1_000, 2_000, 4_000, 8_000];
/** After a Reply that binds nothing, the next Solicit waits a moment: a server that keeps refusing is not flooded. */
const AFTER_REFUSAL_MS = 1_000;
/** How long a Decline waits for its Reply (RFC 8415 §18.2.8 asks for one; nothing depends on it): sent twice. */
const DECLINE_REPLY_MS = 2_000;
/** As for DHCPv4: a server that offers only addresses in use is not asked for ever. */
const MAX_DECLINES = 3;

interface Reply6 {
  message: Dhcp6Message;
  datagram: UdpDatagram;
  ia: IaNa | null;
}

/**
 * Solicit until an Advertise with an address, then Request it until a Reply
 * that binds it, all before `deadline`. `prefixLength` is what the
 * container's address gets (DHCPv6 hands out addresses, not prefixes: the
 * on-link prefix comes from the LAN's routers). A bound address that `check`
 * refuses (this host's own, one in use on the LAN, one outside the network) is declined and the
 * exchange starts over, asking for no address in particular.
 */
export async function acquire6(
  channel: DhcpChannel,
  identity: DhcpIdentity,
  options: {
    hint: IpAddress | null;
    deadline: number;
    prefixLength: number;
    check?: OfferCheck | undefined;
    log?: Logger | undefined;
  },
): Promise<Lease> {
  const started = exchangeNow();
  const note = onceEach(options.log ?? silentLogger);
  let refused: string | null = null;
  const declined: string[] = [];
  let hint = options.hint;
  let wait = 0;
  while (exchangeNow() < options.deadline && declined.length < MAX_DECLINES) {
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(wait, options.deadline - exchangeNow())));
    const xid = randomInt(0, 2 ** 24);
    const solicit = message6(identity, 'solicit', xid, started, [{ code: OPT6.iaNa, value: iaNa(identity, hint) }]);
    // RFC 8415 §18.2.9: an Advertise without an address is ignored (another server may offer one).
    const advertise = await exchange6(channel, identity, solicit, xid, 'advertise', options.deadline, (r) =>
      r.ia?.addresses[0] === undefined || option(r.message, OPT6.serverId) === null
        ? statusText(r) || 'no address offered'
        : null,
    );
    refused = advertise.notYet ?? refused;
    const offered = advertise.reply?.ia?.addresses[0];
    const serverId = advertise.reply === null ? null : option(advertise.reply.message, OPT6.serverId);
    if (offered === undefined || serverId === null) break;
    const request = message6(identity, 'request', xid, started, [
      { code: OPT6.serverId, value: serverId },
      { code: OPT6.iaNa, value: iaNa(identity, offered.address) },
    ]);
    const reply = await exchange6(channel, identity, request, xid, 'reply', options.deadline, sendAgainFor);
    refused = reply.notYet ?? refused;
    if (reply.reply === null) break;
    const lease = leaseFrom(reply.reply, options.prefixLength, note);
    if (lease !== null) {
      const refusal =
        options.check === undefined
          ? null
          : await options.check(lease.address.address, identity.mac, {
              server: lease.serverId,
              router: null,
              prefixLength: lease.address.prefixLength,
              identity,
            });
      if (refusal === null) return lease;
      await decline6(channel, identity, lease, started, options.deadline);
      declined.push(`${lease.address.address.text}, ${refusal}`);
      hint = null;
      wait = 0;
      continue;
    }
    refused = replyProblem(reply.reply);
    // RFC 8415 §18.2.10.1: an address not on this link is not asked for again.
    if (statusCode(reply.reply) === STATUS6.notOnLink) hint = null;
    wait = AFTER_REFUSAL_MS;
  }
  const seconds = Math.round((options.deadline - started) / 1000);
  throw new LanplugError(
    'Unavailable',
    declined.length > 0
      ? `the DHCPv6 server offered only addresses ${declined.every((d) => / in use by /.test(d)) ? 'in use on the LAN' : 'lanplug may not use'} on ${channel.where} (declined: ${[...new Set(declined)].join('; ')})`
      : refused === null
        ? `no DHCPv6 server answered on ${channel.where} within ${seconds} s`
        : `the DHCPv6 server gave no address on ${channel.where} (${refused})`,
  );
}

/**
 * Renew (to the server that bound it, T1) or Rebind (any server, T2) the held address. RFC 8415
 * §18.2.10.1: only a server that no longer knows the binding (NoBinding) or takes the address back
 * (a valid lifetime of 0) ends the lease; any other refusal leaves it as it is until it expires, and
 * the keeper tries again later. A Reply that binds another address than the one held (the server
 * moved the client) goes through `check` first; refused, it is declined.
 */
export async function renew6(
  channel: DhcpChannel,
  identity: DhcpIdentity,
  lease: Lease,
  how: 'renew' | 'rebind',
  deadline: number,
  check?: OfferCheck,
  log: Logger = silentLogger,
): Promise<RenewOutcome> {
  const xid = randomInt(0, 2 ** 24);
  const started = exchangeNow();
  const extra: Dhcp6Option[] = [{ code: OPT6.iaNa, value: iaNa(identity, lease.address.address) }];
  if (how === 'renew' && lease.serverDuid !== null)
    extra.unshift({ code: OPT6.serverId, value: Buffer.from(lease.serverDuid, 'hex') });
  const sent = message6(identity, how, xid, started, extra);
  const { reply, notYet } = await exchange6(channel, identity, sent, xid, 'reply', deadline, sendAgainFor);
  if (reply === null)
    return notYet === null ? { kind: 'silent' } : { kind: 'silent', message: `the server answered ${notYet}` };
  // What a Reply of the address held says about itself is logged only when it changes the lease.
  const notes: [string, Fields][] = [];
  const next = leaseFrom(reply, lease.address.prefixLength, (msg, fields) => notes.push([msg, fields]));
  if (next !== null) {
    const moved = next.address.address.value !== lease.address.address.value;
    if (moved || next.leaseSeconds !== lease.leaseSeconds)
      for (const [msg, fields] of notes) log.warn(msg, { link: channel.where, ...fields });
    const refusal =
      !moved || check === undefined
        ? null
        : await check(next.address.address, identity.mac, {
            server: next.serverId,
            router: null,
            prefixLength: next.address.prefixLength,
            identity,
          });
    if (refusal === null) return { kind: 'ack', lease: next };
    await decline6(channel, identity, next, started, deadline);
    return { kind: 'declined', message: `declined ${next.address.address.text}, ${refusal}` };
  }
  const code = statusCode(reply);
  const withdrawn = code === STATUS6.success && reply.ia !== null;
  if (code === STATUS6.noBinding || withdrawn) return { kind: 'nak', message: replyProblem(reply) };
  return {
    kind: 'silent',
    message: `the server answered ${reply.ia === null ? 'without the address' : replyProblem(reply)}`,
  };
}

/** What an Information-request's Reply gives: DNS servers and the search list (RFC 3646). */
export interface OtherConfig {
  dns: IpAddress[];
  search: string[];
}

/**
 * Stateless DHCPv6 (RFC 8415 §18.2.6): an Information-request for other configuration, no address, what
 * a host does for a router advertisement with the O flag and without M. Null when no server answered by
 * `deadline`.
 */
export async function informationRequest(
  channel: DhcpChannel,
  identity: DhcpIdentity,
  deadline: number,
): Promise<OtherConfig | null> {
  const xid = randomInt(0, 2 ** 24);
  const sent = message6(identity, 'information-request', xid, exchangeNow(), []);
  const { reply } = await exchange6(channel, identity, sent, xid, 'reply', deadline, () => null);
  if (reply === null) return null;
  return {
    dns: dnsServersOf(reply.message),
    search: decodeDnsNames(option(reply.message, OPT6.domainList) ?? Buffer.alloc(0)),
  };
}

/** Release: the binding goes back to the server (no answer awaited). */
export function release6Frame(identity: DhcpIdentity, lease: Lease): Buffer {
  const extra: Dhcp6Option[] = [{ code: OPT6.iaNa, value: iaNa(identity, lease.address.address) }];
  if (lease.serverDuid !== null) extra.unshift({ code: OPT6.serverId, value: Buffer.from(lease.serverDuid, 'hex') });
  return frame(identity, message6(identity, 'release', randomInt(0, 2 ** 24), exchangeNow(), extra));
}

/**
 * Decline (RFC 8415 §18.2.8): the bound address goes back to the server that bound it, which no
 * longer hands it out. Its Reply is waited for a moment, not needed: the client starts over anyway.
 */
async function decline6(
  channel: DhcpChannel,
  identity: DhcpIdentity,
  lease: Lease,
  started: number,
  deadline: number,
): Promise<void> {
  const xid = randomInt(0, 2 ** 24);
  const extra: Dhcp6Option[] = [{ code: OPT6.iaNa, value: iaNa(identity, lease.address.address) }];
  if (lease.serverDuid !== null) extra.unshift({ code: OPT6.serverId, value: Buffer.from(lease.serverDuid, 'hex') });
  const sent = message6(identity, 'decline', xid, started, extra);
  await exchange6(
    channel,
    identity,
    sent,
    xid,
    'reply',
    Math.min(deadline, exchangeNow() + DECLINE_REPLY_MS),
    () => null,
  );
}

function iaNa(identity: DhcpIdentity, address: IpAddress | null): Buffer {
  return encodeIaNa({
    iaid: identity.iaid,
    renewSeconds: 0,
    rebindSeconds: 0,
    addresses: address === null ? [] : [{ address, preferredSeconds: 0, validSeconds: 0 }],
    status: null,
  });
}

function message6(
  identity: DhcpIdentity,
  type: Message6Type,
  xid: number,
  started: number,
  extra: Dhcp6Option[],
): Dhcp6Message {
  const elapsed = Buffer.alloc(2);
  elapsed.writeUInt16BE(Math.min(0xffff, Math.floor((exchangeNow() - started) / 10)), 0);
  const options: Dhcp6Option[] = [{ code: OPT6.clientId, value: Buffer.from(identity.duid, 'hex') }, ...extra];
  if (type !== 'release') options.push({ code: OPT6.elapsedTime, value: elapsed });
  // A Decline, like a Release, asks for no configuration: no option request, no name.
  if (type !== 'release' && type !== 'decline') {
    const oro = Buffer.alloc(type === 'information-request' ? 4 : 2);
    oro.writeUInt16BE(OPT6.dnsServers, 0);
    // The search list only where it is all that is asked (no address is bound that a name could follow).
    if (type === 'information-request') oro.writeUInt16BE(OPT6.domainList, 2);
    options.push({ code: OPT6.oro, value: oro });
    if (identity.hostname !== null && type !== 'information-request' && isHostName(identity.hostname))
      options.push({ code: OPT6.clientFqdn, value: fqdnOption(identity.hostname) });
  }
  return { type, xid, options };
}

function frame(identity: DhcpIdentity, m: Dhcp6Message, source: IpAddress = linkLocalOf(identity.mac)): Buffer {
  return encodeUdp6Frame({
    sourceMac: identity.mac,
    destinationMac: ALL_SERVERS_MAC,
    source,
    destination: ALL_SERVERS,
    sourcePort: DHCP6_CLIENT_PORT,
    destinationPort: DHCP6_SERVER_PORT,
    payload: encodeDhcp6(m),
  });
}

/**
 * Sends `sent` and waits for its answer of `type`, sending again at growing gaps until `deadline`.
 * An answer `notYet` gives a reason for is none: the reason is kept, and the exchange goes on at
 * the same gaps (the limited rate RFC 8415 §18.2.10 asks of a client that tries again).
 */
async function exchange6(
  channel: DhcpChannel,
  identity: DhcpIdentity,
  sent: Dhcp6Message,
  xid: number,
  type: Message6Type,
  deadline: number,
  notYet: (reply: Reply6) => string | null,
): Promise<{ reply: Reply6 | null; notYet: string | null }> {
  const answer = (d: UdpDatagram): Dhcp6Message | null => {
    const m = decodeDhcp6(d.payload);
    const client = m === null ? null : option(m, OPT6.clientId);
    return m !== null && m.xid === xid && m.type === type && client?.toString('hex') === identity.duid ? m : null;
  };
  const bytes = frame(identity, sent, channel.source6);
  let last: string | null = null;
  for (let attempt = 0; exchangeNow() < deadline; attempt++) {
    channel.send(bytes);
    const gap = RETRANSMIT_MS[Math.min(attempt, RETRANSMIT_MS.length - 1)] ?? 8_000;
    const resendAt = Math.min(deadline, exchangeNow() + gap);
    for (;;) {
      const datagram = await channel.next((d) => answer(d) !== null, resendAt);
      const message = datagram === null ? null : answer(datagram);
      if (datagram === null || message === null) break;
      const ia = option(message, OPT6.iaNa);
      const reply: Reply6 = { message, datagram, ia: ia === null ? null : decodeIaNa(ia) };
      const reason = notYet(reply);
      if (reason === null) return { reply, notYet: last };
      last = reason;
    }
    // The wait ran to the deadline: the exchange is over, even when its timer ended a hair before it by
    // this clock (Node's timers count on the event loop's time, read at the start of its turn).
    if (resendAt === deadline) break;
  }
  return { reply: null, notYet: last };
}

/**
 * RFC 8415 §18.2.10: UseMulticast asks for the same message again by multicast (lanplug sends
 * every message to ff02::1:2 already), UnspecFail for a retry at a limited rate. Neither answers.
 */
function sendAgainFor(reply: Reply6): string | null {
  const code = statusOf(reply.message).code;
  return code === STATUS6.useMulticast || code === STATUS6.unspecFail ? statusText(reply) : null;
}

/** The status that counts: the IA's own, else the message's. */
function statusCode(reply: Reply6): number {
  return reply.ia?.status ?? statusOf(reply.message).code;
}

/** A status as a user reads it: its RFC 8415 name and the server's text. */
function statusText(reply: Reply6): string {
  const status = statusOf(reply.message);
  const code = statusCode(reply);
  if (code === STATUS6.success) return status.text;
  const name = STATUS6_NAMES[code] ?? `status ${code}`;
  return status.text === '' ? name : `${name}: ${status.text}`;
}

/**
 * A Reply that binds an address, as a lease; null when it binds none (a status says why). Addresses the
 * server takes back (valid lifetime 0, RFC 8415 §18.3.4) are not among the IA's (decodeIaNa).
 */
function leaseFrom(reply: Reply6, prefixLength: number, note: (msg: string, fields: Fields) => void): Lease | null {
  const address = reply.ia?.addresses[0];
  const serverId = option(reply.message, OPT6.serverId);
  if (address === undefined || reply.ia === null || (reply.ia.status ?? STATUS6.success) !== STATUS6.success)
    return null;
  const servers = dnsServersOf(reply.message);
  // Bounded as DHCPv4 lease times are, for the timers: a valid lifetime of 1 s would have the keeper start over
  // at every timer, 136 years would never be renewed (and the server never heard again). The expiry is the
  // server's when shorter than a minute: a lease counted past it would be an address lanplug believes it
  // holds after the server may have given it to another client.
  const counted = boundedLeaseSeconds(address.validSeconds);
  // The preferred lifetime sets T1 (RFC 8415 §21.4): bounded too, and never past the valid one.
  const preferred = Math.min(boundedLeaseSeconds(address.preferredSeconds || counted), counted);
  // T1/T2 of 0 leave the times to the client (RFC 8415 §21.4): halves of the preferred lifetime, as for DHCPv4.
  const times = leaseTimes(preferred, reply.ia.renewSeconds || null, reply.ia.rebindSeconds || null);
  const valid = Math.min(counted, address.validSeconds);
  if (address.validSeconds < counted)
    note('dhcp valid lifetime under a minute: renewed as if a minute, expires as given', {
      address: address.address.text,
      server: reply.datagram.source.text,
      given: address.validSeconds,
      renewAfter: times.renewSeconds,
    });
  else if (counted !== address.validSeconds)
    note('dhcp lease time out of bounds: counted as the nearest bound', {
      address: address.address.text,
      server: reply.datagram.source.text,
      given: address.validSeconds,
      counted,
    });
  return {
    family: 6,
    address: { address: address.address, prefixLength },
    router: null,
    dns: servers,
    serverId: reply.datagram.source,
    serverMac: reply.datagram.sourceMac,
    serverDuid: serverId?.toString('hex') ?? null,
    leaseSeconds: valid,
    ...times,
    boundAt: Date.now(),
    state: 'bound',
  };
}

/** Option 23 (RFC 3646): DNS servers, 16 bytes each. */
function dnsServersOf(message: Dhcp6Message): IpAddress[] {
  const dns = option(message, OPT6.dnsServers) ?? Buffer.alloc(0);
  const servers: IpAddress[] = [];
  for (let off = 0; off + 16 <= dns.length; off += 16) servers.push(addressFromBytes(dns.subarray(off, off + 16)));
  return servers;
}

function replyProblem(reply: Reply6): string {
  // Success, yet no address: the server took the one asked for back and gave none instead.
  if (statusCode(reply) === STATUS6.success) return 'no address bound (the server withdrew the one asked for)';
  return statusText(reply);
}
