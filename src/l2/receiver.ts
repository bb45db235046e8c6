/**
 * Where every packet socket's frames are received: one poll() over all the
 * sockets that listen, on one thread of libuv's pool, and the frames read on
 * the main thread without blocking, each socket's in the order the kernel
 * queued them.
 *
 * Why. A receive waits on the LAN, for as long as the LAN is quiet. Each
 * socket used to wait in its own blocking recv on libuv's pool (koffi's async
 * call, 100 ms at a time): libuv's default 4 threads, shared with fs,
 * dns, crypto and every other koffi async call (closing a socket, a netlink
 * request). From four listening sockets on (two watched parents, ARP and
 * IPv6 each) the LAN watch's receives held all four, and a probe's receive,
 * a DHCP answer, a socket's close and any fs call queued behind them: with 16
 * parents, 300 ms for an fs call, and 18 of 20 probes missed the device that
 * answered for their address (the bench's "LAN watch" rows). Now receiving holds one pool thread however many
 * sockets listen (none when none does), and the rest of the pool (bin/lanplug
 * makes it 16 threads) is never a receive's. A worker_thread that polls would hold no pool thread at all,
 * but a Node thread costs 10-15 MB of RSS (measured), an eighth of the
 * daemon's budget; a larger pool only moves the line.
 *
 * A socket joins or leaves the set by waking the poll in flight (an eventfd
 * in every poll): it returns at once, and the next one polls the new set.
 * forget() resolves once no poll refers to the socket; only then may its fd
 * be closed (a closed fd number is soon another socket's).
 */
import { LanplugError } from '../errors';
import { describeErrno } from '../netlink/errno';
import { libc } from '../sys/libc';

const POLLIN = 0x1;
const POLLNVAL = 0x20;
const POLLFD_BYTES = 8;
const MSG_DONTWAIT = 0x40;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
/** An Ethernet frame of a 1500-byte MTU with room for tags; ARP, ND and DHCP fit with room to spare. */
const FRAME_BYTES = 2048;
/** Frames read from one socket per poll, so that one busy socket cannot keep the others waiting. */
const BURST = 64;
/**
 * The poll's own limit. Nothing needs it to end (a change wakes it), but a
 * pool thread still in poll() holds the process's exit: the exit hook wakes
 * it, and this bounds the wait should anything ever exit past that hook.
 */
const POLL_LIMIT_MS = 1000;
/** After a failed poll, before the next: the frames wait in the kernel's buffers meanwhile. */
const RETRY_MS = 50;

interface Listener {
  fd: number;
  onFrame: (frame: Buffer) => void;
}

class FrameReceiver {
  private readonly listeners = new Map<number, Listener>();
  /** forget() calls waiting for the poll in flight to return. */
  private readonly forgetting: (() => void)[] = [];
  private nextId = 1;
  private wake = -1;
  private polling = false;
  private pollQueued = false;
  private readonly scratch = Buffer.alloc(FRAME_BYTES);
  private readonly one = Buffer.alloc(8);

  constructor() {
    this.one.writeBigUInt64LE(1n);
  }

  /** `onFrame` gets each frame `fd` receives from now until forget(). */
  listen(fd: number, onFrame: (frame: Buffer) => void): number {
    const id = this.nextId++;
    this.listeners.set(id, { fd, onFrame });
    if (this.polling) this.interrupt();
    else this.queuePoll();
    return id;
  }

  /** No frame reaches the listener from now; resolves once no poll refers to the socket. */
  forget(id: number): Promise<void> {
    if (!this.listeners.delete(id) || !this.polling) return Promise.resolve();
    return new Promise((resolve) => {
      this.forgetting.push(resolve);
      this.interrupt();
    });
  }

  /**
   * Hands `id`'s listener what its socket holds now, without waiting for the poll: for a caller about
   * to conclude that nothing came (a probe's window, an exchange's deadline), whose answer may be
   * queued in the kernel while the poll's thread waits its turn in libuv's pool.
   */
  deliverPending(id: number): void {
    const listener = this.listeners.get(id);
    if (listener !== undefined) this.drain(id, listener);
  }

  /**
   * From a microtask, never from listen() itself: a socket may be opened and
   * listened to inside a network namespace window (netns.ts), where no koffi
   * async call may start (libuv's pool threads, made at its first use, would
   * be born in that namespace).
   */
  private queuePoll(): void {
    if (this.pollQueued) return;
    this.pollQueued = true;
    queueMicrotask(() => {
      this.pollQueued = false;
      this.poll();
    });
  }

  private interrupt(): void {
    libc().write(this.wake, this.one, this.one.length);
  }

  private poll(): void {
    if (this.polling || this.listeners.size === 0) return;
    const c = libc();
    if (this.wake < 0) {
      this.wake = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (this.wake < 0) throw new LanplugError('Kernel', `make the receiver's eventfd: ${describeErrno(c.errno())}`);
      process.once('exit', () => {
        if (this.polling) this.interrupt();
      });
    }
    const polled = [...this.listeners];
    const fds = Buffer.alloc(POLLFD_BYTES * (polled.length + 1));
    [this.wake, ...polled.map(([, l]) => l.fd)].forEach((fd, i) => {
      fds.writeInt32LE(fd, i * POLLFD_BYTES);
      fds.writeInt16LE(POLLIN, i * POLLFD_BYTES + 4);
    });
    this.polling = true;
    c.pollAsync(fds, polled.length + 1, POLL_LIMIT_MS, (ready) => this.polled(fds, polled, ready));
  }

  private polled(fds: Buffer, polled: readonly [number, Listener][], ready: number): void {
    this.polling = false;
    if (ready > 0) {
      if (fds.readInt16LE(6) !== 0) libc().read(this.wake, this.scratch, 8);
      polled.forEach(([id, listener], i) => {
        const revents = fds.readInt16LE((i + 1) * POLLFD_BYTES + 6);
        // A closed fd (a bug: close() closes only after forget()) would end every poll at once.
        if ((revents & POLLNVAL) !== 0) this.listeners.delete(id);
        else if (revents !== 0) this.drain(id, listener);
      });
    }
    for (const resolve of this.forgetting.splice(0)) resolve();
    if (ready < 0) setTimeout(() => this.poll(), RETRY_MS);
    else this.poll();
  }

  /** Reads what `listener`'s socket holds, up to BURST frames, until its listener goes (it may close it). */
  private drain(id: number, listener: Listener): void {
    const c = libc();
    for (let n = 0; n < BURST && this.listeners.get(id) === listener; n++) {
      // A failed read (EAGAIN: drained; ENETDOWN: the link went down) ends it; the error is consumed by it.
      const got = c.recvfrom(listener.fd, this.scratch, this.scratch.length, MSG_DONTWAIT, null, null);
      if (got <= 0) return;
      try {
        listener.onFrame(Buffer.from(this.scratch.subarray(0, got)));
      } catch {
        // a listener's failure is its own; the socket keeps receiving
      }
    }
  }
}

let receiver: FrameReceiver | undefined;

/** The process's one receiver. */
export function frameReceiver(): FrameReceiver {
  receiver ??= new FrameReceiver();
  return receiver;
}
