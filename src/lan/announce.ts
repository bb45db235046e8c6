/**
 * Announcements on attach: gratuitous ARP (RFC 5227 §2.3) and, for IPv6,
 * unsolicited neighbour advertisements (RFC 4861 §7.2.6) carrying the
 * container's MAC, so that the LAN's caches — a router's ARP entry lasts hours
 * — learn a re-created container's new MAC at once. Docker ≥ 28 does this
 * itself (3 messages, 1 s apart, `com.docker.network.advertise_addr_nmsgs` /
 * `_ms`); Docker 20.10 does not. lanplug honours the same options, so one
 * setting rules both; duplicates on Docker ≥ 28 are harmless.
 */
import type { Logger } from '../log';
import type { AnnouncePolicy } from '../model/network';
import type { IpAddress } from '../net/address';
import { arpAnnouncement, unsolicitedAdvertisement } from '../l2/frames';
import { PacketSocket, SEND_ONLY } from '../l2/packet-socket';
import type { ProbeLink } from './probe';
import { countAnnouncement } from '../metrics/registry';
import { recordEvent } from '../metrics/events';

export interface Announcer {
  /**
   * Sends the announcements in the background: the first now, the rest
   * `intervalMs` apart. Announcements still pending for the same addresses
   * (an earlier container's) are dropped: they would teach the LAN the old MAC.
   */
  announce(link: ProbeLink, mac: string, addresses: readonly IpAddress[], policy: AnnouncePolicy): void;
  /** Drops what is still pending for these addresses (their container is gone). */
  withdraw(addresses: readonly IpAddress[]): void;
}

/** A link's send socket is closed after this long without an announcement. */
const SENDER_IDLE_MS = 60_000;

export class PacketAnnouncer implements Announcer {
  /** The timer of the next announcement, by address. */
  private readonly pending = new Map<string, NodeJS.Timeout>();
  /**
   * One send-only socket per link, kept while announcements go out: closing a
   * packet socket costs an RCU wait in the kernel, too much for every frame.
   */
  private readonly senders = new Map<number, { socket: PacketSocket; idle: NodeJS.Timeout }>();

  constructor(private readonly log: Logger) {}

  /** Closes every send socket (daemon shutdown). */
  async close(): Promise<void> {
    const senders = [...this.senders.keys()];
    await Promise.all(senders.map((index) => this.dropSender(index)));
    for (const timer of this.pending.values()) clearTimeout(timer);
    this.pending.clear();
  }

  private senderFor(link: ProbeLink): PacketSocket {
    const known = this.senders.get(link.index);
    if (known !== undefined) {
      known.idle.refresh();
      return known.socket;
    }
    const socket = PacketSocket.open(link.index, SEND_ONLY, link.name);
    const idle = setTimeout(() => void this.dropSender(link.index), SENDER_IDLE_MS);
    idle.unref();
    this.senders.set(link.index, { socket, idle });
    return socket;
  }

  private dropSender(index: number): Promise<void> {
    const known = this.senders.get(index);
    if (known === undefined) return Promise.resolve();
    this.senders.delete(index);
    clearTimeout(known.idle);
    return known.socket.close();
  }

  withdraw(addresses: readonly IpAddress[]): void {
    for (const address of addresses) {
      clearTimeout(this.pending.get(address.text));
      this.pending.delete(address.text);
    }
  }

  announce(link: ProbeLink, mac: string, addresses: readonly IpAddress[], policy: AnnouncePolicy): void {
    this.withdraw(addresses);
    if (policy.count === 0 || addresses.length === 0) return;
    const frames = addresses.map((a) => (a.family === 4 ? arpAnnouncement(mac, a) : unsolicitedAdvertisement(mac, a)));
    recordEvent('announce.sent', {
      link: link.name,
      mac,
      addresses: addresses.map((a) => a.text).join(','),
      count: policy.count,
    });
    const send = (round: number): void => {
      try {
        const socket = this.senderFor(link);
        for (const frame of frames) socket.send(frame);
        for (const address of addresses) countAnnouncement(address.family);
      } catch (err) {
        void this.dropSender(link.index);
        this.log.warn('could not announce an address', { link: link.name, error: String(err) });
        return;
      }
      if (round + 1 >= policy.count) return this.withdraw(addresses);
      const timer = setTimeout(() => send(round + 1), policy.intervalMs);
      timer.unref();
      for (const address of addresses) this.pending.set(address.text, timer);
    };
    send(0);
  }
}
