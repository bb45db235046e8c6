/**
 * An AF_PACKET socket on one link, for the frames in frames.ts: send a frame
 * as it is, and receive the frames of one Ethernet protocol without blocking
 * the event loop that serves Docker (the receive thread of receiver.ts reads
 * them). Bound to the link's index in the namespace it was opened in.
 */
import { LanplugError } from '../errors';
import { describeErrno } from '../netlink/errno';
import { libc } from '../sys/libc';
import { frameReceiver } from './receiver';

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_PACKET = 263;
const PACKET_ADD_MEMBERSHIP = 1;
const PACKET_MR_ALLMULTI = 2;
/** struct sockaddr_ll: u16 family, u16 protocol (network order), s32 ifindex, u16 hatype, u8 pkttype, u8 halen, u8 addr[8]. */
const SOCKADDR_LL_LEN = 20;
/** PacketSocket.open's protocol for a socket that only sends. */
export const SEND_ONLY = 0;

function sockaddr(ifindex: number, protocol: number, destination?: Buffer): Buffer {
  const sll = Buffer.alloc(SOCKADDR_LL_LEN);
  sll.writeUInt16LE(AF_PACKET, 0);
  sll.writeUInt16BE(protocol, 2);
  sll.writeInt32LE(ifindex, 4);
  if (destination !== undefined) {
    sll[11] = 6;
    destination.copy(sll, 12, 0, 6);
  }
  return sll;
}

export class PacketSocket {
  private fd: number;
  /** The receiver's id for this socket, while it listens. */
  private listening: number | null = null;
  private closing: Promise<void> | null = null;

  private constructor(
    fd: number,
    private readonly ifindex: number,
    private readonly protocol: number,
    readonly where: string,
  ) {
    this.fd = fd;
  }

  /**
   * A socket for Ethernet protocol `protocol` (ETH_P_ARP, ETH_P_IPV6,
   * ETH_P_ALL) on link `ifindex`, multicast included; protocol 0 for a
   * socket that only sends (it receives nothing and costs the kernel nothing).
   *
   * The socket is made with protocol 0 and given its protocol by bind():
   * made with one, the kernel would hook it to every link first and then,
   * at bind, unhook it with an RCU wait (10-20 ms) on the calling thread.
   */
  static open(ifindex: number, protocol: number, name: string): PacketSocket {
    const c = libc();
    const fd = c.socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new LanplugError('Kernel', `open a packet socket on ${name}: ${describeErrno(c.errno())}`);
    try {
      const addr = sockaddr(ifindex, protocol);
      if (c.bind(fd, addr, addr.length) !== 0)
        throw new LanplugError('Kernel', `bind a packet socket to ${name}: ${describeErrno(c.errno())}`);
      if (protocol !== SEND_ONLY) {
        // IPv6 neighbour discovery answers to multicast groups the link has not joined.
        const mreq = Buffer.alloc(16);
        mreq.writeInt32LE(ifindex, 0);
        mreq.writeUInt16LE(PACKET_MR_ALLMULTI, 4);
        c.setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq, mreq.length);
      }
    } catch (err) {
      c.close(fd);
      throw err;
    }
    return new PacketSocket(fd, ifindex, protocol, name);
  }

  send(frame: Buffer): void {
    if (this.fd < 0) throw new LanplugError('Internal', `the packet socket on ${this.where} is closed`);
    // The frame's own EtherType, so that the kernel and every tap see the protocol it carries.
    const to = sockaddr(
      this.ifindex,
      frame.length >= 14 ? frame.readUInt16BE(12) : this.protocol,
      frame.subarray(0, 6),
    );
    const c = libc();
    if (c.sendto(this.fd, frame, frame.length, 0, to, to.length) !== frame.length) {
      const errno = c.errno();
      throw new LanplugError('Kernel', `send a frame on ${this.where}: ${describeErrno(errno)}`, { errno });
    }
  }

  /** Calls `onFrame` for every frame received until close(), in the order received. One listener per socket. */
  listen(onFrame: (frame: Buffer) => void): void {
    if (this.fd < 0 || this.closing !== null)
      throw new LanplugError('Internal', `the packet socket on ${this.where} is closed`);
    if (this.listening !== null)
      throw new LanplugError('Internal', `the packet socket on ${this.where} already has a listener`);
    this.listening = frameReceiver().listen(this.fd, onFrame);
  }

  /**
   * The listener gets, now, every frame the socket holds: before a caller concludes that nothing came
   * (the receiving thread may not have had its turn yet). Nothing happens without a listener.
   */
  deliverPending(): void {
    if (this.listening !== null) frameReceiver().deliverPending(this.listening);
  }

  /**
   * No frame reaches the listener once close() is called. The fd is closed
   * once the receive thread has let it go (at once: it is woken for that), on
   * libuv's thread pool: the kernel waits for an RCU grace period in every
   * packet socket's close (10-20 ms), a short job the pool is there for.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    if (this.fd < 0) return Promise.resolve();
    const fd = this.fd;
    const listening = this.listening;
    this.listening = null;
    this.closing = (listening === null ? Promise.resolve() : frameReceiver().forget(listening)).then(
      () =>
        new Promise<void>((resolve) => {
          this.fd = -1;
          libc().closeAsync(fd, () => resolve());
        }),
    );
    return this.closing;
  }
}
