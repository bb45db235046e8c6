/**
 * After the fact (RFC 5227 §2.4, RFC 4861): a device that starts using one of
 * lanplug's container addresses. lanplug listens for ARP and neighbour
 * advertisements on each LAN link it uses; a claim on a container's address
 * from another MAC is logged, remembered for `lanplug doctor`, and defended
 * with one gratuitous ARP (unsolicited NA) at most every DEFEND_INTERVAL_MS per
 * address and link.
 * The container is never torn down: the user decides who keeps the address.
 */
import type { Logger } from '../log';
import type { IpAddress } from '../net/address';
import {
  arpAnnouncement,
  decodeArp,
  decodeNeighbor,
  ETH_P_ALL,
  ETH_P_ARP,
  ETH_P_IPV6,
  unsolicitedAdvertisement,
} from '../l2/frames';
import { PacketSocket } from '../l2/packet-socket';
import type { LanSightings } from '../state/store';
import type { ProbeLink } from './probe';
import { countConflict } from '../metrics/registry';
import { recordEvent } from '../metrics/events';
import { PassTimes } from './pass-times';

const DEFEND_INTERVAL_MS = 10_000;
/**
 * A claim is recorded (lan_seen's last-seen time) at most this often per link and address, whatever
 * the MAC: a device claiming at line rate would otherwise have every frame written to the store, on
 * the event loop.
 */
const RECORD_INTERVAL_MS = 1_000;
/**
 * The same device defended against on the same address and link is one event per this long; another
 * device on it is news, but at most once a minute (a sender rotating its MAC buys nothing).
 */
const NEW_DEVICE_EVENT_INTERVAL_MS = 60_000;
/** The same device defended against on the same address is one event per this long. */
const EVENT_INTERVAL_MS = 10 * 60_000;

/** An address one of lanplug's containers holds, with the MAC it holds it with. */
export interface Holding {
  address: IpAddress;
  mac: string;
  networkId: string;
}

interface Watched {
  link: ProbeLink;
  sockets: PacketSocket[];
}

/** The link by its index (what `watched` keys it by: a name may be reused by another link). */
function defenceKey(link: ProbeLink, address: IpAddress): string {
  return `${link.index} ${address.text}`;
}

/**
 * The watch's two clocks: the limits run on a monotonic one (a wall clock set back would mute the
 * defence for as long, one set forward would let a storm through at once); what the store records of a
 * sighting is the wall time an operator reads.
 */
export interface WatchClock {
  monotonic(): number;
  wall(): number;
}
const SYSTEM_CLOCK: WatchClock = { monotonic: () => performance.now(), wall: () => Date.now() };

export class LanWatch {
  private readonly watched = new Map<number, Watched>();
  /*
   * All three by link and address (defenceKey): the same address on two VLANs is two LANs' business,
   * and a storm on one must not mute the defence, the sighting or the event of the other.
   */
  private readonly lastDefence = new PassTimes<number>(DEFEND_INTERVAL_MS, (t) => t);
  private readonly lastRecorded = new PassTimes<number>(RECORD_INTERVAL_MS, (t) => t);
  /** The MAC last reported defended against, and when. */
  private readonly lastReported = new PassTimes<{ mac: string; at: number }>(EVENT_INTERVAL_MS, (r) => r.at);

  /**
   * `holding` answers, at the moment a frame arrives, which container behind
   * `link` holds an address (read from the store then, so that a container
   * re-created with a new MAC is never taken for a stranger; and per link,
   * since two VLANs may carry the same subnet).
   */
  constructor(
    private readonly holding: (link: ProbeLink, address: IpAddress) => Holding | null,
    private readonly sightings: LanSightings,
    private readonly log: Logger,
    private readonly clock: WatchClock = SYSTEM_CLOCK,
  ) {}

  /** Opens sockets for new links and closes those of links no longer used. */
  sync(links: readonly ProbeLink[]): void {
    const wanted = new Map(links.map((l) => [l.index, l]));
    for (const [index, w] of this.watched) {
      if (wanted.get(index)?.mac === w.link.mac) continue;
      for (const s of w.sockets) void s.close();
      this.watched.delete(index);
    }
    for (const link of links) {
      if (this.watched.has(link.index)) continue;
      try {
        this.watched.set(link.index, this.open(link));
      } catch (err) {
        this.log.warn('cannot watch the LAN for address conflicts', { link: link.name, error: String(err) });
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.watched.values()].flatMap((w) => w.sockets.map((s) => s.close())));
    this.watched.clear();
  }

  private open(link: ProbeLink): Watched {
    const protocols = link.listenAll ? [ETH_P_ALL] : [ETH_P_ARP, ETH_P_IPV6];
    const w: Watched = { link, sockets: [] };
    for (const protocol of protocols) {
      const socket = PacketSocket.open(link.index, protocol, link.name);
      w.sockets.push(socket);
      socket.listen((frame) => this.onFrame(w, frame));
    }
    return w;
  }

  private onFrame(w: Watched, frame: Buffer): void {
    const arp = decodeArp(frame);
    if (arp !== null)
      return this.check(w, arp.senderIp, arp.senderMac, `it sent an ARP ${arp.op} for it on ${w.link.name}`);
    const nd = decodeNeighbor(frame);
    if (nd !== null && nd.type === 'advertisement')
      this.check(w, nd.target, nd.mac, `it advertised it on ${w.link.name}`);
  }

  private check(w: Watched, address: IpAddress, mac: string, how: string): void {
    if (mac === w.link.mac) return;
    const holding = this.holding(w.link, address);
    if (holding === null || mac === holding.mac) return;
    const at = this.clock.monotonic();
    countConflict('claim');
    const key = defenceKey(w.link, address);
    // Not by MAC: the MAC is the sender's to write, and a new one per frame must not buy a write.
    if (at - (this.lastRecorded.get(key) ?? -Infinity) >= RECORD_INTERVAL_MS) {
      this.lastRecorded.pass(key, at, at);
      this.sightings.recordSighting(
        { address: address.text, mac, how, networkId: holding.networkId },
        this.clock.wall(),
      );
    }
    const last = this.lastDefence.get(key) ?? -Infinity;
    if (at - last < DEFEND_INTERVAL_MS) return;
    // Links come and go (a re-made VLAN has a new index): a gone link's keys age out like the rest.
    this.lastDefence.pass(key, at, at);
    // Said every time (at most once per 10 s per address and link); one event per device per 10 minutes, so
    // that one device claiming many addresses does not push everything else out of the events ring.
    this.log.warn("a device on the LAN claims a container's address; defending it once", {
      address: address.text,
      mac,
      how,
    });
    const reported = this.lastReported.get(key);
    const since = reported === undefined ? Infinity : at - reported.at;
    if (since >= EVENT_INTERVAL_MS || (reported?.mac !== mac && since >= NEW_DEVICE_EVENT_INTERVAL_MS)) {
      this.lastReported.pass(key, { mac, at }, at);
      recordEvent('conflict.defended', { address: address.text, mac, how });
    }
    const frame =
      address.family === 4 ? arpAnnouncement(holding.mac, address) : unsolicitedAdvertisement(holding.mac, address);
    const socket = w.sockets[address.family === 4 || w.sockets.length === 1 ? 0 : 1];
    try {
      socket?.send(frame);
    } catch (err) {
      this.log.warn('could not defend an address', { address: address.text, error: String(err) });
    }
  }
}
