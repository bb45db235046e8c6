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
import type { DhcpIdentity, Lease } from '../model/lease';
import { formatPrefix, networkOf, prefixContains, sameAddress, type IpAddress, type IpPrefix } from '../net/address';
import type { UdpDatagram } from '../l2/udp-frames';
import { exchangeNow, type DhcpChannel } from './channel';
import { BROADCAST_MAC, decline, exchange, fromZero, leaseFrom, message, nakText, prefixLengthFor } from './exchange';
import { onceEach, type MalformedReport, type OfferCheck, type RenewOutcome } from './outcomes';
import { BROADCAST_V4, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, encodeDhcp, ipv4Option, OPT, readAddress } from './message';

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
  const started = exchangeNow();
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
  while (exchangeNow() < options.deadline && declined.length < MAX_DECLINES && naks < MAX_NAKS) {
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
  const started = exchangeNow();
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

/** DHCPRELEASE, unicast from the leased address (dnsmasq ignores one from 0.0.0.0). Nothing answers a release. */
export function release(send: (frame: Buffer) => void, identity: DhcpIdentity, lease: Lease): void {
  const m = message(identity, 'release', randomInt(0, 2 ** 32), exchangeNow(), {
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
