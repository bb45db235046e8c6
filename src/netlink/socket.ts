/**
 * A NETLINK_ROUTE socket reached through libc with the `koffi` FFI package.
 *
 * Why synchronous: the kernel answers rtnetlink requests in microseconds, from
 * inside the send() call for most link operations, so a blocking
 * send-then-recv pairs each request with its ACK without queues, callbacks or
 * interleaving, and SO_RCVTIMEO (5 s) bounds the worst case. A socket for
 * another network namespace is made there by netns.ts and used from here.
 */
import { LanplugError } from '../errors';
import {
  assertLittleEndian,
  encodeMessage,
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  parseDone,
  parseError,
  parseMessages,
  type NlMsg,
} from './codec';
import { libc, type Libc } from '../sys/libc';
import { describeErrno, EAGAIN, EINTR } from './errno';
import { FRESH_NAMESPACE, inNetworkNamespace, syscallError } from './netns';

// Values from the kernel/glibc headers of x86_64 and arm64 (checked with a C program).
const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const MSG_PEEK = 0x2;
const MSG_TRUNC = 0x20;
/** struct sockaddr_nl: u16 family, u16 pad, u32 pid, u32 groups. */
const SOCKADDR_NL_LEN = 12;

const RECEIVE_TIMEOUT_SECONDS = 5;
/** A dump that changed under us (NLM_F_DUMP_INTR) is restarted this many times. */
const DUMP_ATTEMPTS = 5;

/** NetlinkSocketOptions.netns for a new, empty, throw-away namespace. */
export { FRESH_NAMESPACE };

export interface NetlinkSocketOptions {
  /**
   * A network namespace file such as /run/netns/x or /proc/<pid>/ns/net, or
   * FRESH_NAMESPACE for a new empty one that lives as long as the socket;
   * default: the caller's.
   */
  netns?: string;
}

export class NetlinkSocket {
  private fd: number;
  private seq: number;
  private rx = Buffer.alloc(64 * 1024);
  private readonly rxAddr = Buffer.alloc(SOCKADDR_NL_LEN);
  private readonly rxAddrLen = Buffer.alloc(4);
  /** For messages: "netlink socket in /run/netns/x". */
  readonly where: string;

  private constructor(fd: number, where: string) {
    this.fd = fd;
    this.where = where;
    // Replies are matched on seq alone. Starting from the clock (as iproute2
    // does) keeps sequence numbers of successive sockets apart in traces.
    this.seq = Math.floor(Date.now() / 1000) >>> 0;
  }

  static open(options: NetlinkSocketOptions = {}): NetlinkSocket {
    assertLittleEndian();
    const c = libc();
    const netns = options.netns;
    const fd =
      netns === undefined ? openRouteSocket(c) : inNetworkNamespace(netns, openRouteSocket, (fd) => c.close(fd));
    try {
      configure(c, fd);
    } catch (err) {
      c.close(fd);
      throw err;
    }
    return new NetlinkSocket(fd, netns === undefined ? 'netlink socket' : `netlink socket in ${netns}`);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  close(): void {
    if (this.fd < 0) return;
    libc().close(this.fd);
    this.fd = -1;
  }

  /**
   * Sends one request with NLM_F_REQUEST|NLM_F_ACK and returns the messages
   * the kernel sent before its ACK (e.g. the RTM_NEWLINK answering a
   * RTM_GETLINK). A negative ACK throws LanplugError('Kernel') with the errno
   * and the kernel's extended-ACK text.
   */
  request(type: number, flags: number, body: readonly Uint8Array[]): NlMsg[] {
    return this.exchange(type, flags | NLM_F_REQUEST | NLM_F_ACK, body).replies;
  }

  /** A dump (NLM_F_DUMP): every message up to NLMSG_DONE, restarted if the kernel flags it inconsistent. */
  dump(type: number, body: readonly Uint8Array[]): NlMsg[] {
    for (let attempt = 1; ; attempt++) {
      const { replies, interrupted } = this.exchange(type, NLM_F_REQUEST | NLM_F_DUMP, body);
      if (!interrupted) return replies;
      if (attempt >= DUMP_ATTEMPTS) {
        throw new LanplugError('Kernel', `dump of message type ${type} kept changing under us (${attempt} attempts)`, {
          errno: EINTR,
        });
      }
    }
  }

  /**
   * Sends one request from a worker thread and then reads its ACK: for a
   * request the kernel handles inside send() for long (a link removal waits
   * for an RCU grace period there), so that the event loop keeps serving.
   * One at a time, and never mixed with synchronous requests on the same
   * socket: the owner of the socket must make sure of both.
   */
  requestInBackground(type: number, flags: number, body: readonly Uint8Array[]): Promise<NlMsg[]> {
    if (this.fd < 0) return Promise.reject(new LanplugError('Internal', `${this.where} is closed`));
    const seq = this.nextSeq();
    const msg = encodeMessage({ type, flags: flags | NLM_F_REQUEST | NLM_F_ACK, seq, pid: 0 }, body);
    return new Promise((resolve, reject) => {
      libc().sendAsync(this.fd, msg, msg.length, (sent) => {
        if (sent !== msg.length) {
          reject(new LanplugError('Kernel', `${this.where}: send in the background failed (${sent} of ${msg.length})`));
          return;
        }
        try {
          // The kernel queued its ACK before send() returned: this read does not wait.
          resolve(this.collect(type, seq).replies);
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
  }

  private exchange(
    type: number,
    flags: number,
    body: readonly Uint8Array[],
  ): { replies: NlMsg[]; interrupted: boolean } {
    if (this.fd < 0) throw new LanplugError('Internal', `${this.where} is closed`);
    const seq = this.nextSeq();
    this.send(encodeMessage({ type, flags, seq, pid: 0 }, body));
    return this.collect(type, seq);
  }

  /** The kernel's messages for request `seq` up to its ACK, DONE or error. */
  private collect(type: number, seq: number): { replies: NlMsg[]; interrupted: boolean } {
    const replies: NlMsg[] = [];
    let interrupted = false;
    for (;;) {
      for (const msg of parseMessages(this.receive(type, seq))) {
        // An answer to an earlier request that timed out: not ours.
        if (msg.seq !== seq) continue;
        if ((msg.flags & NLM_F_DUMP_INTR) !== 0) interrupted = true;
        switch (msg.type) {
          case NLMSG_NOOP:
            continue;
          case NLMSG_OVERRUN:
            throw new LanplugError('Kernel', `${this.where}: the kernel reported lost data (NLMSG_OVERRUN)`);
          case NLMSG_ERROR: {
            const e = parseError(msg.payload, msg.flags);
            if (e.error === 0) return { replies, interrupted };
            throw kernelError(-e.error, e.extackMsg);
          }
          case NLMSG_DONE: {
            const d = parseDone(msg.payload, msg.flags);
            if (d.error < 0) throw kernelError(-d.error, d.extackMsg);
            return { replies, interrupted };
          }
          default:
            replies.push(msg);
        }
      }
    }
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    if (this.seq === 0) this.seq = 1;
    return this.seq;
  }

  private send(msg: Buffer): void {
    const c = libc();
    for (;;) {
      const n = c.send(this.fd, msg, msg.length, 0);
      if (n === msg.length) return;
      if (n >= 0) throw new LanplugError('Kernel', `${this.where}: short send (${n} of ${msg.length} bytes)`);
      const errno = c.errno();
      if (errno !== EINTR) throw syscallError(`${this.where}: send`, errno);
    }
  }

  /** One datagram from the kernel; the buffer grows when a message would not fit. */
  private receive(type: number, seq: number): Buffer {
    for (;;) {
      // MSG_PEEK|MSG_TRUNC returns the datagram's full size without consuming it.
      const size = this.recvfrom(MSG_PEEK | MSG_TRUNC, type, seq);
      if (size > this.rx.length) this.rx = Buffer.alloc(size);
      const n = this.recvfrom(0, type, seq);
      // Only the kernel (port id 0) speaks for the kernel; ignore any other sender.
      if (this.rxAddr.readUInt32LE(4) !== 0) continue;
      // A copy: parsed messages are views into it, and a dump spans several datagrams.
      return Buffer.from(this.rx.subarray(0, n));
    }
  }

  private recvfrom(flags: number, type: number, seq: number): number {
    const c = libc();
    for (;;) {
      this.rxAddrLen.writeUInt32LE(SOCKADDR_NL_LEN, 0);
      const n = c.recvfrom(this.fd, this.rx, this.rx.length, flags, this.rxAddr, this.rxAddrLen);
      if (n >= 0) return n;
      const errno = c.errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) {
        throw new LanplugError(
          'Kernel',
          `${this.where}: no answer from the kernel within ${RECEIVE_TIMEOUT_SECONDS} s (message type ${type}, seq ${seq})`,
          { errno },
        );
      }
      throw syscallError(`${this.where}: recv`, errno);
    }
  }
}

/** "EEXIST (File exists): <kernel's extack text>" */
export function kernelError(errno: number, extack?: string): LanplugError {
  const text = extack === undefined ? describeErrno(errno) : `${describeErrno(errno)}: ${extack}`;
  return new LanplugError('Kernel', text, { errno });
}

function openRouteSocket(c: Libc): number {
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) throw syscallError('socket(AF_NETLINK, NETLINK_ROUTE)', c.errno());
  return fd;
}

/** Receive timeout, extended ACKs with the kernel's reason text, capped ACKs, bind. */
function configure(c: Libc, fd: number): void {
  const tv = Buffer.alloc(16); // struct timeval { long tv_sec; long tv_usec; } on LP64
  tv.writeBigInt64LE(BigInt(RECEIVE_TIMEOUT_SECONDS), 0);
  if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length) !== 0) {
    throw syscallError('setsockopt(SO_RCVTIMEO)', c.errno());
  }
  const one = Buffer.alloc(4);
  one.writeInt32LE(1, 0);
  // Best effort: kernels before 4.12 lack both; errors then just carry no text.
  c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, one.length);
  // Do not echo our whole request back inside every error.
  c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, one.length);
  const addr = Buffer.alloc(SOCKADDR_NL_LEN); // family AF_NETLINK, pid 0 = kernel assigns, no groups
  addr.writeUInt16LE(AF_NETLINK, 0);
  if (c.bind(fd, addr, addr.length) !== 0) throw syscallError('bind(AF_NETLINK)', c.errno());
}
