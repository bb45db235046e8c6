/**
 * One error type for the whole daemon. Callers branch on `code` (and, for
 * kernel failures, on `errno`), never on message text. The message is a single
 * line that stands on its own: Docker shows it to the user behind its own
 * "NetworkDriver.CreateNetwork: " prefix.
 */
export type ErrorCode =
  | 'InvalidArgument' // the user's input is wrong; nothing was changed
  | 'NotFound' // a network, endpoint or link that was asked for does not exist
  | 'Conflict' // the request clashes with something that exists (a passthru parent, a duplicate)
  | 'Unsupported' // the running kernel lacks a feature (8021q, ipvlan, ...)
  | 'Kernel' // the kernel refused an operation; see errno
  | 'Unavailable' // something lanplug relies on did not answer (a DHCP server, etcd, dockerd)
  | 'Environment' // the host is not as the request needs it: a namespace or link gone, a file missing or read-only
  | 'Internal'; // a bug or a broken invariant

export class LanplugError extends Error {
  readonly code: ErrorCode;
  /** Positive errno from the kernel, when code is 'Kernel' (or a kernel error was translated). */
  readonly errno: number | undefined;

  constructor(code: ErrorCode, message: string, options: { errno?: number; cause?: unknown } = {}) {
    super(oneLine(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LanplugError';
    this.code = code;
    this.errno = options.errno;
  }
}

export function invalidArgument(message: string): LanplugError {
  return new LanplugError('InvalidArgument', message);
}

export function conflict(message: string): LanplugError {
  return new LanplugError('Conflict', message);
}

export function notFound(message: string): LanplugError {
  return new LanplugError('NotFound', message);
}

/**
 * Wraps any failure with context ("create macvlan link lp-1234: ..."), keeping code and errno. A
 * failure of Node's own calls on the host (a file or namespace missing, read-only, not allowed,
 * a disk full) is the environment's, told apart from a bug.
 */
export function withContext(context: string, err: unknown): LanplugError {
  if (err instanceof LanplugError) {
    return new LanplugError(err.code, `${context}: ${err.message}`, { errno: err.errno, cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new LanplugError(isEnvironmentFailure(err) ? 'Environment' : 'Internal', `${context}: ${message}`, {
    cause: err,
  });
}

/** Node's system-call failures that say the host is not as expected, not that lanplug is wrong. */
const ENVIRONMENT_CODES = new Set([
  'ENOENT',
  'ENOTDIR',
  'EACCES',
  'EPERM',
  'EROFS',
  'ENOSPC',
  'EDQUOT',
  'EIO',
  'EBUSY',
]);

export function isEnvironmentFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && ENVIRONMENT_CODES.has(code);
}

/** ENOSPC: the errno an 'Environment' error carries when a file system had no room for a write. */
export const NO_ROOM_ERRNO = 28;

/** True for a write a file system had no room for (the state directory's: nothing of it was recorded). */
export function isNoRoom(err: unknown): boolean {
  return err instanceof LanplugError && err.code === 'Environment' && err.errno === NO_ROOM_ERRNO;
}

/** The host is not as the request needs it (see ErrorCode). */
export function environment(message: string): LanplugError {
  return new LanplugError('Environment', message);
}

/** Messages cross a JSON API and end up on one terminal line. */
function oneLine(message: string): string {
  return message.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/**
 * Runs every step of a teardown even when some fail, and reports all the
 * failures at the end as one error (as netavark's NetavarkErrorList does):
 * a link that will not go must not keep the next one, or the parent, alive.
 */
export class Teardown {
  private readonly failures: LanplugError[] = [];

  /** Runs `fn`; a failure is kept, with `what` as its context, and answered `{ ok: false }`. */
  step<T>(what: string, fn: () => T): { ok: true; value: T } | { ok: false; error: LanplugError } {
    try {
      return { ok: true, value: fn() };
    } catch (err) {
      const error = withContext(what, err);
      this.failures.push(error);
      return { ok: false, error };
    }
  }

  get failed(): readonly LanplugError[] {
    return this.failures;
  }

  /** Throws the single failure as it is, or all of them joined on one line. */
  throwIfFailed(): void {
    const [first, ...rest] = this.failures;
    if (first === undefined) return;
    if (rest.length === 0) throw first;
    throw new LanplugError(
      first.code,
      `${this.failures.length} steps failed: ${this.failures.map((f) => f.message).join('; ')}`,
      {
        errno: first.errno,
        cause: first,
      },
    );
  }
}
