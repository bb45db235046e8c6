/**
 * The kernel's rtnetlink notifications, read without ever waiting: a socket
 * joined to some multicast groups (addresses added and removed, …) whose
 * `changed()` drains what the kernel queued since the last call and says
 * whether there was anything.
 *
 * It is the cheap half of a cache that is never stale: the kernel queues a
 * notification inside the very call that made the change, so a change made
 * before `changed()` runs is always seen by it, and a dump is needed only
 * then. A receive queue that overflowed (ENOBUFS: notifications were lost)
 * counts as a change too. Only the kernel's datagrams count, and a call reads
 * a bounded number: a socket held in a container's namespace is one its
 * processes can send to.
 */
import { LanplugError } from '../errors';
import { libc, type Libc } from '../sys/libc';
import { NETLINK_ROUTE, parseMessages, type NlMsg } from './codec';
import { EAGAIN, EINTR, ENOBUFS } from './errno';
import { inNetworkNamespace, syscallError } from './netns';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
/** struct sockaddr_nl: u16 family, u16 pad, u32 pid, u32 groups. */
const SOCKADDR_NL_LEN = 12;

/** rtnetlink multicast groups (RTNLGRP_*, linux/rtnetlink.h). */
export const RTNLGRP_LINK = 1;
export const RTNLGRP_IPV4_IFADDR = 5;
export const RTNLGRP_IPV6_IFADDR = 9;

/** At most this many datagrams are read by one call of changed() (a kernel's burst is a few). */
export const MAX_DRAINED = 64;

export class NetlinkEvents {
  private fd: number;
  /** Each notification is read and dropped: only that one arrived matters. */
  private readonly scratch = Buffer.alloc(64);
  private readonly sender = Buffer.alloc(SOCKADDR_NL_LEN);
  private readonly senderLength = Buffer.alloc(4);

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Joined to `groups` (RTNLGRP_*), in the caller's network namespace or in `netns` (a namespace file). */
  static open(groups: readonly number[], options: { netns?: string } = {}): NetlinkEvents {
    const open = (c: Libc): number => {
      const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
      if (fd < 0) throw syscallError('socket(AF_NETLINK, NETLINK_ROUTE)', c.errno());
      return fd;
    };
    const c = libc();
    const fd = options.netns === undefined ? open(c) : inNetworkNamespace(options.netns, open, (f) => c.close(f));
    const addr = Buffer.alloc(SOCKADDR_NL_LEN);
    addr.writeUInt16LE(AF_NETLINK, 0);
    // The legacy bitmask reaches groups 1-32, which is every group used here.
    addr.writeUInt32LE(
      groups.reduce((mask, group) => (mask | (1 << (group - 1))) >>> 0, 0),
      8,
    );
    if (c.bind(fd, addr, addr.length) !== 0) {
      const errno = c.errno();
      c.close(fd);
      throw syscallError('bind(AF_NETLINK) to notification groups', errno);
    }
    return new NetlinkEvents(fd);
  }

  /**
   * True when the kernel sent anything since the last call (or lost some): whatever was cached is stale.
   * A datagram another process sent does not count (a container's process with NET_ADMIN may send any
   * to a socket in its namespace), and one call reads at most MAX_DRAINED of them: a sender that keeps
   * the queue full must not hold the daemon here. With more queued than that, it says true: reading
   * the state again once is cheap, and the rest is read at the next calls.
   */
  changed(): boolean {
    if (this.fd < 0) throw new LanplugError('Internal', 'netlink notification socket is closed');
    const c = libc();
    let any = false;
    for (let read = 0; read < MAX_DRAINED; read++) {
      this.senderLength.writeUInt32LE(SOCKADDR_NL_LEN, 0);
      // MSG_TRUNC: the datagram is consumed whole even though only its first bytes are copied.
      const n = c.recvfrom(
        this.fd,
        this.scratch,
        this.scratch.length,
        MSG_DONTWAIT | MSG_TRUNC,
        this.sender,
        this.senderLength,
      );
      if (n >= 0) {
        if (this.fromKernel()) any = true;
        continue;
      }
      const errno = c.errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) return any;
      if (errno === ENOBUFS) {
        any = true;
        continue;
      }
      throw syscallError('recv from the netlink notification socket', errno);
    }
    return true;
  }

  /** The datagram just received is the kernel's (port id 0), not another process's. */
  private fromKernel(): boolean {
    return this.senderLength.readUInt32LE(0) >= 8 && this.sender.readUInt32LE(4) === 0;
  }

  /**
   * The notifications the kernel sent since the last call, read whole (those too long for the buffer,
   * and a queue that overflowed, are dropped: a caller that needs every one must also read the state);
   * a datagram another process sent is dropped too. At most MAX_DRAINED datagrams a call, as changed():
   * what is left is read at the next call.
   */
  messages(): NlMsg[] {
    if (this.fd < 0) throw new LanplugError('Internal', 'netlink notification socket is closed');
    const c = libc();
    const buffer = Buffer.alloc(8192);
    const out: NlMsg[] = [];
    for (let read = 0; read < MAX_DRAINED; read++) {
      this.senderLength.writeUInt32LE(SOCKADDR_NL_LEN, 0);
      const n = c.recvfrom(this.fd, buffer, buffer.length, MSG_DONTWAIT | MSG_TRUNC, this.sender, this.senderLength);
      if (n >= 0) {
        // The kernel's only (port id 0): any process of the namespace (a container's, for a socket opened
        // in it) may send a datagram to this socket, and a malformed one would throw out of parseMessages.
        if (this.fromKernel() && n <= buffer.length) out.push(...parseMessages(Buffer.from(buffer.subarray(0, n))));
        continue;
      }
      const errno = c.errno();
      if (errno === EINTR || errno === ENOBUFS) continue;
      if (errno === EAGAIN) return out;
      throw syscallError('recv from the netlink notification socket', errno);
    }
    return out;
  }

  close(): void {
    if (this.fd < 0) return;
    libc().close(this.fd);
    this.fd = -1;
  }
}
