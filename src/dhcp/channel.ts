/**
 * Where a DHCP client's frames go and its answers come from: an AF_PACKET
 * socket on one link (in the daemon's namespace, or opened inside a
 * container's), keeping only UDP datagrams to the client's port.
 */
import { decodeUdp6Frame, decodeUdpFrame, ETH_P_IP, ETH_P_IPV6, type UdpDatagram } from '../l2/udp-frames';
import { LanplugError } from '../errors';
import { PacketSocket } from '../l2/packet-socket';
import type { Family, IpAddress } from '../net/address';
import { inNetworkNamespace } from '../netlink/netns';

/**
 * The clock of a DHCP exchange: its deadlines (DhcpChannel.next, acquire, renew, informationRequest) and
 * the elapsed time its messages carry. Monotonic ms, of any origin: only ever compared with itself. On
 * the wall clock, one set forward (an NTP step, `date -s`) ended an exchange at once ("no DHCP server
 * answered") and one set back an hour kept it resending for the hour.
 */
export function exchangeNow(): number {
  return performance.now();
}

/** The deadline `ms` from now, on exchangeNow's clock. */
export function exchangeDeadline(ms: number): number {
  return exchangeNow() + ms;
}

export interface DhcpChannel {
  /** The link's name, for messages. */
  readonly where: string;
  /**
   * DHCPv6: the link-local address the client sends from, as the link holds it in its namespace; absent:
   * the one the MAC gives (EUI-64), which a link has unless its namespace makes addresses otherwise
   * (`-o ipv6=slaac`'s stable privacy). A server answers that address: it must be the link's own.
   */
  readonly source6?: IpAddress;
  send(frame: Buffer): void;
  /** The first datagram `accept` takes, received from now until `deadline` (exchangeNow's clock), or null. */
  next(accept: (datagram: UdpDatagram) => boolean, deadline: number): Promise<UdpDatagram | null>;
  close(): Promise<void>;
}

interface Waiter {
  accept: (datagram: UdpDatagram) => boolean;
  done: (datagram: UdpDatagram | null) => void;
}

export interface ChannelOptions {
  family: Family;
  /** The client's UDP port: 68, or 546 for DHCPv6. */
  port: number;
  /** A namespace file (Docker's SandboxKey) to open the socket in; default: the daemon's. */
  netns?: string;
  /** DHCPv6: the link's own link-local address (DhcpChannel.source6). */
  source6?: IpAddress;
}

export class PacketChannel implements DhcpChannel {
  private readonly waiters = new Set<Waiter>();
  /** Set at close(): nothing more goes out, even while the socket waits for its last receive to end. */
  private closed = false;
  readonly source6?: IpAddress;

  private constructor(
    private readonly socket: PacketSocket,
    readonly where: string,
    private readonly options: ChannelOptions,
  ) {
    if (options.source6 !== undefined) this.source6 = options.source6;
    socket.listen((frame) => this.onFrame(frame));
  }

  static open(ifindex: number, where: string, options: ChannelOptions): PacketChannel {
    const protocol = options.family === 4 ? ETH_P_IP : ETH_P_IPV6;
    const socket =
      options.netns === undefined
        ? PacketSocket.open(ifindex, protocol, where)
        : inNetworkNamespace(
            options.netns,
            () => PacketSocket.open(ifindex, protocol, where),
            (socket) => void socket.close(),
          );
    return new PacketChannel(socket, where, options);
  }

  send(frame: Buffer): void {
    if (this.closed) throw new LanplugError('Internal', `the DHCP exchange on ${this.where} was stopped`);
    this.socket.send(frame);
  }

  next(accept: (datagram: UdpDatagram) => boolean, deadline: number): Promise<UdpDatagram | null> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        accept,
        done: (datagram) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(datagram);
        },
      };
      const timer = setTimeout(
        () => {
          // An answer may sit in the socket, not yet handed over by the receiving thread: read it first.
          this.socket.deliverPending();
          if (this.waiters.has(waiter)) waiter.done(null);
        },
        Math.max(0, deadline - exchangeNow()),
      );
      this.waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of [...this.waiters]) waiter.done(null);
    await this.socket.close();
  }

  private onFrame(frame: Buffer): void {
    const datagram = this.options.family === 4 ? decodeUdpFrame(frame) : decodeUdp6Frame(frame);
    if (datagram === null || datagram.destinationPort !== this.options.port) return;
    for (const waiter of [...this.waiters]) {
      if (waiter.accept(datagram)) {
        waiter.done(datagram);
        return;
      }
    }
  }
}
