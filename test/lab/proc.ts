// Small synchronous process helpers for the test lab.
// Every command is an argument vector (never a shell string built by interpolation).

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when killed by a signal or when the program could not be started. */
  status: number | null;
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs argv[0] with the rest as arguments, waits, and returns its output. Never throws. */
export function run(argv: readonly string[], opts: RunOptions = {}): RunResult {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('run: empty command');
  const r = spawnSync(file, args, {
    input: opts.input,
    timeout: opts.timeoutMs ?? 120_000,
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = r.stderr ?? '';
  if (r.error) stderr += `${stderr === '' ? '' : '\n'}${r.error.message}`;
  return { stdout: r.stdout ?? '', stderr, status: r.error ? null : r.status };
}

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: RunResult,
  ) {
    super(
      `command failed (status ${String(result.status)}): ${argv.join(' ')}` +
        (result.stderr.trim() !== '' ? `\n${result.stderr.trim()}` : '') +
        (result.stdout.trim() !== '' ? `\nstdout: ${result.stdout.trim()}` : ''),
    );
    this.name = 'CommandError';
  }
}

/** Like run(), but throws CommandError (with stderr) unless the status is 0. Returns stdout. */
export function runOk(argv: readonly string[], opts: RunOptions = {}): string {
  const r = run(argv, opts);
  if (r.status !== 0) throw new CommandError(argv, r);
  return r.stdout;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Blocks the thread; used where teardown must be synchronous (exit and signal handlers). */
export function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** True if the pid exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** The process start time (clock ticks since boot), to tell a pid from a reused one. */
export function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Waits (blocking) until every pid is gone; returns those still alive after timeoutMs. */
export function waitGoneSync(pids: readonly number[], timeoutMs: number): number[] {
  const deadline = Date.now() + timeoutMs;
  let alive = pids.filter(isAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    sleepSync(25);
    alive = alive.filter(isAlive);
  }
  return alive;
}

/** SIGTERM, wait up to graceMs, then SIGKILL and wait again. */
export function terminateSync(pid: number, graceMs: number): void {
  if (!isAlive(pid)) return;
  signal(pid, 'SIGTERM');
  if (waitGoneSync([pid], graceMs).length === 0) return;
  signal(pid, 'SIGKILL');
  waitGoneSync([pid], 5_000);
}

export function allPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((p) => p !== process.pid);
}

/** "net:[4026532xxx]"-style identity of a namespace file (e.g. /run/netns/x), as readlink shows it. */
export function nsIdentity(kind: 'net' | 'mnt', path: string): string | undefined {
  try {
    if (path.startsWith('/proc/')) return fs.readlinkSync(path);
    return `${kind}:[${fs.statSync(path).ino}]`;
  } catch {
    return undefined;
  }
}

export function readOr(path: string, fallback: string): string {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** The last `lines` lines of text (for error messages quoting a log). */
export function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}

/** This process's environment plus `extra`, without what would point Docker or systemd elsewhere. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of ['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'NOTIFY_SOCKET']) {
    delete env[k];
  }
  return env;
}
