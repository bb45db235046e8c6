/**
 * The few libc calls lanplug makes, through the koffi FFI package, with real
 * types instead of koffi's `any`. Loaded on first use, so that importing a
 * module that needs it (e.g. in unit tests) loads no native code.
 */
import koffi, { type LibraryHandle } from 'koffi';
import { LanplugError } from '../errors';

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  /** `addr` and `addrLen` null: the sender is not wanted. */
  recvfrom(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer | null, addrLen: Buffer | null): number;
  close(fd: number): number;
  setns(fd: number, nstype: number): number;
  unshare(flags: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrLen: number): number;
  /**
   * poll on a worker thread; `fds` is struct pollfd[] (s32 fd, s16 events, s16 revents), written
   * back in place. `done` gets the number of ready entries, 0 at the timeout, or -1.
   */
  pollAsync(fds: Buffer, count: number, timeoutMs: number, done: (result: number) => void): void;
  eventfd(initial: number, flags: number): number;
  read(fd: number, buf: Buffer, len: number): number;
  write(fd: number, buf: Buffer, len: number): number;
  /**
   * send on a worker thread: for a netlink request the kernel handles inside
   * the send call and that can wait long (a link removal waits for RCU).
   * `done` gets the byte count or -1.
   */
  sendAsync(fd: number, buf: Buffer, len: number, done: (result: number) => void): void;
  /**
   * close on a worker thread: closing a packet socket waits for an RCU grace
   * period in the kernel (packet_release calls synchronize_net), 10-20 ms.
   */
  closeAsync(fd: number, done: (result: number) => void): void;
  flock(fd: number, operation: number): number;
  /** errno of the last FFI call; must be read before any other FFI call. */
  errno(): number;
}

let cache: Libc | undefined;

/**
 * Runs `fn(...args)` on libuv's thread pool (koffi's async call): 4 threads that fs, dns, crypto and
 * zlib share, so for calls that end soon; the one call that waits on the LAN is the receiver's
 * single poll (src/l2/receiver.ts). `done` gets its number result, or -1 if it failed.
 */
function onWorker(fn: ReturnType<LibraryHandle['func']>, args: unknown[], done: (result: number) => void): void {
  (fn.async as (...a: unknown[]) => void)(...args, (err: unknown, result: unknown) => {
    done(err === null && typeof result === 'number' ? result : -1);
  });
}

export function libc(): Libc {
  if (cache !== undefined) return cache;
  const lib = koffi.load('libc.so.6');
  // koffi knows no `ssize_t`: `long` is the same width on LP64 Linux.
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const bind = lib.func('int bind(int fd, const void *addr, uint32_t len)');
  const setsockopt = lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)');
  const send = lib.func('long send(int fd, const void *buf, size_t len, int flags)');
  const recvfrom = lib.func('long recvfrom(int fd, void *buf, size_t len, int flags, void *addr, void *addrlen)');
  const close = lib.func('int close(int fd)');
  const setns = lib.func('int setns(int fd, int nstype)');
  const unshare = lib.func('int unshare(int flags)');
  const flock = lib.func('int flock(int fd, int operation)');
  const sendto = lib.func(
    'long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)',
  );
  const pollForAsync = lib.func('int poll(void *fds, unsigned long count, int timeout)');
  const eventfd = lib.func('int eventfd(unsigned int initval, int flags)');
  const read = lib.func('long read(int fd, void *buf, size_t len)');
  const write = lib.func('long write(int fd, const void *buf, size_t len)');
  const closeForAsync = lib.func('int close(int fd)');
  const sendForAsync = lib.func('long send(int fd, const void *buf, size_t len, int flags)');
  const num = (v: unknown): number => {
    if (typeof v !== 'number') throw new LanplugError('Internal', `koffi returned ${typeof v}, expected a number`);
    return v;
  };
  cache = {
    socket: (d, t, p) => num(socket(d, t, p)),
    bind: (fd, a, l) => num(bind(fd, a, l)),
    setsockopt: (fd, lv, n, v, l) => num(setsockopt(fd, lv, n, v, l)),
    send: (fd, b, l, f) => num(send(fd, b, l, f)),
    recvfrom: (fd, b, l, f, a, al) => num(recvfrom(fd, b, l, f, a, al)),
    close: (fd) => num(close(fd)),
    setns: (fd, t) => num(setns(fd, t)),
    unshare: (flags) => num(unshare(flags)),
    flock: (fd, op) => num(flock(fd, op)),
    sendto: (fd, b, l, f, a, al) => num(sendto(fd, b, l, f, a, al)),
    eventfd: (v, f) => num(eventfd(v, f)),
    read: (fd, b, l) => num(read(fd, b, l)),
    write: (fd, b, l) => num(write(fd, b, l)),
    sendAsync: (fd, b, l, done) => onWorker(sendForAsync, [fd, b, l, 0], done),
    closeAsync: (fd, done) => onWorker(closeForAsync, [fd], done),
    pollAsync: (fds, n, t, done) => onWorker(pollForAsync, [fds, n, t], done),
    errno: () => koffi.errno(),
  };
  return cache;
}
