/**
 * Where a DHCP client's frames go and its answers come from: an AF_PACKET
 * socket on one link (in the daemon's namespace, or opened inside a
 * container's), keeping only DHCP replies for the client port.
 */
import { ETH_P_IP, decodeUdpFrame, type UdpDatagram } from '../l2/udp-frames';
import { PacketSocket } from '../l2/packet-socket';
import { inNetworkNamespace } from '../netlink/netns';
import { DHCP_CLIENT_PORT, decodeDhcp, type DhcpMessage } from './message';

export interface Reply {
  message: DhcpMessage;
  datagram: UdpDatagram;
}

export interface DhcpChannel {
  /** The link's name, for messages. */
  readonly where: string;
  send(frame: Buffer): void;
  /** The first reply `accept` takes, received from now until `deadline` (ms since the epoch), or null. */
  next(accept: (reply: Reply) => boolean, deadline: number): Promise<Reply | null>;
  close(): Promise<void>;
}

interface Waiter {
  accept: (reply: Reply) => boolean;
  done: (reply: Reply | null) => void;
}

export class PacketChannel implements DhcpChannel {
  private readonly waiters = new Set<Waiter>();

  private constructor(
    private readonly socket: PacketSocket,
    readonly where: string,
  ) {
    socket.listen((frame) => this.onFrame(frame));
  }

  /** A channel on link `ifindex` of the daemon's namespace, or of namespace file `netns`. */
  static open(ifindex: number, where: string, netns?: string): PacketChannel {
    const socket =
      netns === undefined
        ? PacketSocket.open(ifindex, ETH_P_IP, where)
        : inNetworkNamespace(netns, () => PacketSocket.open(ifindex, ETH_P_IP, where));
    return new PacketChannel(socket, where);
  }

  send(frame: Buffer): void {
    this.socket.send(frame);
  }

  next(accept: (reply: Reply) => boolean, deadline: number): Promise<Reply | null> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        accept,
        done: (reply) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(reply);
        },
      };
      const timer = setTimeout(() => waiter.done(null), Math.max(0, deadline - Date.now()));
      this.waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    for (const waiter of [...this.waiters]) waiter.done(null);
    await this.socket.close();
  }

  private onFrame(frame: Buffer): void {
    const datagram = decodeUdpFrame(frame);
    if (datagram === null || datagram.destinationPort !== DHCP_CLIENT_PORT) return;
    const message = decodeDhcp(datagram.payload);
    if (message === null || !message.reply) return;
    for (const waiter of [...this.waiters]) {
      if (waiter.accept({ message, datagram })) {
        waiter.done({ message, datagram });
        return;
      }
    }
  }
}
