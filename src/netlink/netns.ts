/**
 * Opening a socket in another network namespace. setns() moves the *calling
 * thread* only, so the window between setns(target) and setns(back) must run
 * to completion on this thread with no `await` (where unrelated JS could run
 * inside the foreign namespace) and no koffi `.async` call (which would run on
 * a worker thread, in the wrong namespace). A socket stays in the namespace it
 * was made in: everything after the window runs in the caller's own namespace.
 *
 * The namespace files are opened with Node's fs.openSync, which performs
 * open(2) synchronously on the calling thread: that avoids declaring libc's
 * variadic open() through FFI.
 */
import { closeSync, openSync } from 'node:fs';
import { LanplugError } from '../errors';
import { libc, type Libc } from '../sys/libc';
import { describeErrno, ENOENT } from './errno';

const CLONE_NEWNET = 0x40000000;

/** A target for inNetworkNamespace: a new, empty, throw-away namespace that lives as long as its sockets. */
export const FRESH_NAMESPACE = 'fresh';

/**
 * Set when this thread could not return to its own network namespace. Every
 * later socket would silently be made in the wrong namespace, so none is.
 */
let strandedIn: string | undefined;

/** A failed system call, as a LanplugError carrying errno. */
export function syscallError(what: string, errno: number): LanplugError {
  return new LanplugError('Kernel', `${what}: ${describeErrno(errno)}`, { errno });
}

/**
 * Runs `open` inside network namespace `target` (a namespace file such as
 * /run/netns/x or a Docker SandboxKey, or FRESH_NAMESPACE) and returns to the
 * caller's namespace before returning what it made (`dispose` undoes it if
 * the way back fails). `open` must be synchronous and make only sockets (see
 * above); nothing in the window may start a thread either (a new thread
 * inherits this thread's namespace): libc() is loaded before entering.
 */
export function inNetworkNamespace<T>(target: string, open: (c: Libc) => T, dispose: (made: T) => void): T {
  const c = libc();
  if (strandedIn !== undefined) {
    throw new LanplugError(
      'Internal',
      `this thread could not return from network namespace ${strandedIn}; restart the process`,
    );
  }
  // /proc/thread-self, not /proc/self: the namespace of *this* thread is what setns changes.
  const home = openNamespaceFile('/proc/thread-self/ns/net');
  try {
    let made: { value: T } | undefined;
    try {
      enter(c, target);
      made = { value: open(c) };
    } finally {
      // Always back home, even if entering failed half-way (a setns that worked, then a close that threw).
      if (c.setns(home, CLONE_NEWNET) !== 0) {
        const errno = c.errno();
        strandedIn = target;
        if (made !== undefined) dispose(made.value);
        // Throwing from finally is deliberate: nothing may continue in the wrong namespace.
        // eslint-disable-next-line no-unsafe-finally
        throw new LanplugError(
          'Internal',
          `could not return from network namespace ${target}: ${describeErrno(errno)}; restart the process`,
          { errno },
        );
      }
    }
    return made.value;
  } finally {
    closeSync(home);
  }
}

/** Moves this thread into `target` (a namespace file, or a fresh namespace). */
function enter(c: Libc, target: string): void {
  if (target === FRESH_NAMESPACE) {
    if (c.unshare(CLONE_NEWNET) !== 0) throw syscallError('unshare(CLONE_NEWNET)', c.errno());
    return;
  }
  const fd = openNamespaceFile(target);
  try {
    if (c.setns(fd, CLONE_NEWNET) !== 0) throw syscallError(`setns(${target})`, c.errno());
  } finally {
    closeSync(fd);
  }
}

function openNamespaceFile(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const errno = Math.abs((err as NodeJS.ErrnoException).errno ?? 0);
    if (code === 'ENOENT') {
      throw new LanplugError('NotFound', `network namespace ${path} does not exist`, { errno: ENOENT, cause: err });
    }
    throw new LanplugError('Kernel', `open ${path}: ${code ?? String(err)}`, { errno: errno || undefined, cause: err });
  }
}
