/**
 * The running daemon's control socket (api/control.ts) as one CLI command asks it. A daemon
 * that took an ask and did not answer it in time is not asked again by the same command: each
 * further ask would wait its own timeout on a daemon that is hung (`lanplug doctor` asks it
 * several things), so it fails at once with NotAskedError, whose message says why. Nor is a
 * socket asked in a state directory another user can write (checkedControlSocket).
 */
import { lstatSync } from 'node:fs';
import { controlSocketPath } from '../api/control';
import { NoAnswerError, unixHttp, type HttpAnswer } from '../api/unix-http';
import { stateDirProblem } from '../state/state-dir';

/** An ask skipped because the daemon did not answer an earlier one of the same command. */
export class NotAskedError extends Error {}

/** How long an ask waits for its answer unless it says otherwise. */
const DEFAULT_TIMEOUT_MS = 5_000;

export class ControlClient {
  /** The route the daemon did not answer in time; null while it answers. */
  private unanswered: string | null = null;

  constructor(
    readonly stateDir: string,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  /**
   * One request; throws what unixHttp throws, and NotAskedError when the daemon did not answer an
   * earlier one. `timeoutMs`: the client's unless the route needs longer.
   */
  async ask(method: 'GET' | 'POST', path: string, body?: string, timeoutMs = this.timeoutMs): Promise<HttpAnswer> {
    if (this.unanswered !== null) throw new NotAskedError(`not asked: the daemon did not answer ${this.unanswered}`);
    const socket = checkedControlSocket(this.stateDir);
    try {
      return await unixHttp(socket, method, path, body, timeoutMs);
    } catch (err) {
      if (err instanceof NoAnswerError) this.unanswered = path;
      throw err;
    }
  }
}

/**
 * The control socket of `stateDir`, for a command to ask; NotAskedError when another user can write
 * the directory (the daemon refuses such a one, so a socket there, and its answers, could be theirs).
 */
export function checkedControlSocket(stateDir: string): string {
  const problem = dirProblem(stateDir);
  if (problem !== null) throw new NotAskedError(`not asked: the state directory ${stateDir} ${problem}`);
  return controlSocketPath(stateDir);
}

function dirProblem(dir: string): string | null {
  try {
    return stateDirProblem(lstatSync(dir));
  } catch (err) {
    return `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
  }
}
