/**
 * Asking the LAN whether an address is in use before a container takes it:
 * RFC 5227 ARP probes (sender IP 0.0.0.0) for IPv4, RFC 4862 duplicate
 * address detection (NS from ::) for IPv6, with the timings scaled down as
 * NetworkManager and systemd-networkd 258 do (3 probes within 200 ms instead
 * of 4-7 s): an address in use answers in well under a millisecond on a LAN,
 * so the window bounds only the "free" verdict.
 *
 * The answer names who answered, for the one-line refusal a user sees.
 */
import { randomInt } from 'node:crypto';
import { sameAddress, type IpAddress } from '../net/address';
import { arpProbe, dadSolicitation, decodeArp, decodeNeighbor, ETH_P_ALL, ETH_P_ARP, ETH_P_IPV6 } from '../l2/frames';
import { PacketSocket } from '../l2/packet-socket';
import { countProbe } from '../metrics/registry';

/** The link probes go out of: its index and name (for messages) and its MAC (the probes' sender). */
export interface ProbeLink {
  index: number;
  /** The parent's name, for messages ("it answered an ARP probe on eth0"). */
  name: string;
  mac: string;
  /**
   * Receive every frame (ETH_P_ALL) rather than ARP or IPv6 only: needed on a
   * parent with macvlan or ipvlan children, whose rx handler takes frames before
   * protocol-specific packet sockets would see them.
   */
  listenAll: boolean;
}

/**
 * `contended`: the other device did not answer for the address, it probed for it too (it wants it,
 * it does not hold it yet). That ends this probe as RFC 5227 says, but is not remembered as the
 * address being in use: on a LAN where several lanplug hosts share a pool, it is mostly another
 * host's background check of the same candidate, and remembering it would lose the address.
 */
export type ProbeVerdict =
  | { inUse: false }
  | {
      inUse: true;
      mac: string;
      how: string;
      contended?: boolean;
      /** The one that answered is a container of this host holding the address (LanGuard's ownAnswer). */
      ownContainer?: boolean;
    };

export interface ProbeTiming {
  /** Probes sent; the first after U(0, firstDelayMs), then one every U(spacingMs, 2 × spacingMs). */
  probes: number;
  firstDelayMs: number;
  spacingMs: number;
  /** The whole window: a silent address is free once it has passed. */
  windowMs: number;
}

/** 3 probes within 200 ms (NetworkManager's and systemd 258's scaled RFC 5227 timing). */
export const QUICK: ProbeTiming = { probes: 3, firstDelayMs: 20, spacingMs: 20, windowMs: 200 };

/**
 * `ownMac`: the MAC of the one the address is for, whose answer is no conflict (a container asking
 * its DHCP server from scratch while its link still holds the address answers the probe itself).
 */
export function probe(
  link: ProbeLink,
  candidate: IpAddress,
  timing: ProbeTiming = QUICK,
  ownMac: string | null = null,
): Promise<ProbeVerdict> {
  const v6 = candidate.family === 6;
  const socket = PacketSocket.open(link.index, link.listenAll ? ETH_P_ALL : v6 ? ETH_P_IPV6 : ETH_P_ARP, link.name);
  return new Promise<ProbeVerdict>((resolve, reject) => {
    const timers: NodeJS.Timeout[] = [];
    let settled = false;
    const settle = (verdict: ProbeVerdict | Error): void => {
      if (settled) return;
      settled = true;
      countProbe(candidate.family, verdict instanceof Error ? 'error' : verdict.inUse ? 'in_use' : 'free');
      for (const t of timers) clearTimeout(t);
      void socket.close().then(() => (verdict instanceof Error ? reject(verdict) : resolve(verdict)));
    };
    // A link that goes away mid-probe (the network was removed) ends the probe with an error, not the daemon.
    const send = (frame: Buffer): void => {
      try {
        socket.send(frame);
      } catch (err) {
        settle(err instanceof Error ? err : new Error(String(err)));
      }
    };
    const mine = new Set([link.mac, ...(ownMac === null ? [] : [ownMac])]);
    socket.listen((frame) => {
      const verdict = v6 ? readNeighbor(frame, link, mine, candidate) : readArp(frame, link, mine, candidate);
      if (verdict !== null) settle(verdict);
    });
    const frame = v6 ? dadSolicitation(link.mac, candidate) : arpProbe(link.mac, candidate);
    let at = randomInt(0, timing.firstDelayMs + 1);
    for (let i = 0; i < timing.probes; i++) {
      timers.push(setTimeout(() => send(frame), at));
      at += randomInt(timing.spacingMs, 2 * timing.spacingMs + 1);
    }
    timers.push(
      setTimeout(
        () => {
          // An answer may sit in the socket, not yet handed over by the receiving thread: read it first.
          socket.deliverPending();
          settle({ inUse: false });
        },
        Math.max(timing.windowMs, at),
      ),
    );
  });
}

/** RFC 5227 §2.1.1: any ARP from a MAC not `mine` with the candidate as sender IP, or another host's probe for it. */
function readArp(frame: Buffer, link: ProbeLink, mine: Set<string>, candidate: IpAddress): ProbeVerdict | null {
  const arp = decodeArp(frame);
  if (arp === null || mine.has(arp.senderMac)) return null;
  if (sameAddress(arp.senderIp, candidate))
    return { inUse: true, mac: arp.senderMac, how: `it answered an ARP probe on ${link.name}` };
  if (arp.op === 'request' && arp.senderIp.value === 0n && sameAddress(arp.targetIp, candidate)) {
    return {
      inUse: true,
      mac: arp.senderMac,
      how: `it is probing for the same address on ${link.name}`,
      contended: true,
    };
  }
  return null;
}

/** RFC 4862 §5.4.3-5.4.5: an NA for the candidate, or another node's DAD for it. */
function readNeighbor(frame: Buffer, link: ProbeLink, mine: Set<string>, candidate: IpAddress): ProbeVerdict | null {
  const nd = decodeNeighbor(frame);
  if (nd === null || mine.has(nd.frameSource) || nd.target.value !== candidate.value) return null;
  if (nd.type === 'advertisement')
    return { inUse: true, mac: nd.mac, how: `it answered duplicate address detection on ${link.name}` };
  if (nd.source.value === 0n)
    return { inUse: true, mac: nd.frameSource, how: `another node is claiming it on ${link.name}`, contended: true };
  return null;
}
