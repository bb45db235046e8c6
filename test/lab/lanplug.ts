// The lanplug daemon as the tests run it: `node <repo>/bin/lanplug daemon --state-dir X
// --plugin-dir Y` (or a stand-in program) in a Docker host's network namespace and dockerd's
// mount namespace, so that dockerd finds its sockets in /run/docker/plugins. Its stdout and
// stderr go to files under the Docker host's directory; startLanplug resolves once the sockets
// accept connections. The Docker host stops every daemon started here on teardown.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { DAEMON_NODE_FLAGS } from '../../src/daemon';
import { repoRoot } from '../support/repo';
import type { DockerHost, HostDaemon } from './docker-host';
import { nsExecArgv } from './ns';
import { cleanEnv, isAlive, readOr, signal, sleep, tail, terminateSync } from './proc';

/** Default for LanplugOptions.readyTimeoutMs: node's cold start over 9p under TCG takes seconds. */
const READY_TIMEOUT_MS = 60_000;
/** How long a stopping daemon gets after SIGTERM before SIGKILL (it returns as soon as it exits). */
const STOP_GRACE_MS = 15_000;
/**
 * A killed process exits once the kernel has let go of it: closing packet and netlink sockets
 * waits for RCU grace periods, which a loaded 2-core machine can stretch far past 5 s. The next
 * start must never meet the old daemon, so after SIGKILL the lab waits this long for it.
 */
const KILLED_EXIT_MS = 120_000;

export interface LanplugOptions {
  /** --state-dir (default: a fresh dir under the Docker host's temp dir). */
  stateDir?: string;
  /** --plugin-dir (default: dockerHost.pluginDir, which dockerd sees as /run/docker/plugins). */
  pluginDir?: string;
  /** Program to run instead of [node, <repo>/bin/lanplug]; 'daemon' and the options are appended. */
  command?: string[];
  /** Extra arguments after the standard ones. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Sockets (in pluginDir) that must accept connections before start resolves; default ['lanplug-macvlan.sock']. */
  sockets?: string[];
  /** How long to wait for the sockets (default 60 s). */
  readyTimeoutMs?: number;
}

export class Lanplug implements HostDaemon {
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  private readonly exited: Promise<void>;
  constructor(
    readonly dockerHost: DockerHost,
    private readonly child: ChildProcess,
    readonly pid: number,
    readonly argv: string[],
    readonly stateDir: string,
    readonly pluginDir: string,
    readonly stdoutPath: string,
    readonly stderrPath: string,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, sig) => {
        this.exitCode = code;
        this.exitSignal = sig;
        resolve();
      });
    });
  }
  /** Everything the daemon wrote to stderr so far. */
  stderr(): string {
    return readOr(this.stderrPath, '');
  }
  stdout(): string {
    return readOr(this.stdoutPath, '');
  }
  get running(): boolean {
    return isAlive(this.pid);
  }
  /** SIGTERM, wait up to timeoutMs, then SIGKILL. Resolves with the exit code (null if killed by a signal). */
  async stop(timeoutMs = STOP_GRACE_MS): Promise<number | null> {
    if (isAlive(this.pid)) {
      signal(this.pid, 'SIGTERM');
      if (!(await this.waitExit(timeoutMs))) {
        signal(this.pid, 'SIGKILL');
        await this.waitExit(KILLED_EXIT_MS);
      }
    } else if (this.exitCode === null && this.exitSignal === null) {
      // Gone already, but its exit event (which carries the code a caller reports) may be on its way:
      // once, CI read "exited (code null, signal null)" for a stand-in that exited 3.
      await this.waitExit(2_000);
    }
    // The process the lab spawned is not always the daemon itself (nsenter may fork): the daemon
    // wrote its own pid into its lock file. Wait for that one too, so that the next start finds
    // neither its lock nor its sockets.
    const daemonPid = this.daemonPid;
    if (daemonPid !== null && daemonPid !== this.pid && isAlive(daemonPid)) {
      signal(daemonPid, 'SIGTERM');
      const end = Date.now() + timeoutMs;
      while (isAlive(daemonPid) && Date.now() < end) await sleep(20);
      if (isAlive(daemonPid)) signal(daemonPid, 'SIGKILL');
      while (isAlive(daemonPid) && Date.now() < end + KILLED_EXIT_MS) await sleep(20);
    }
    // And its driver socket no longer answers (the next start refuses a live one): an exit the
    // lab saw is not always the last holder of the listening socket gone, so ask the socket itself.
    // Only for a daemon that served (a start refused because another one serves must not wait on it).
    if (daemonPid !== null) {
      const socket = path.join(this.pluginDir, 'lanplug-macvlan.sock');
      for (const end = Date.now() + KILLED_EXIT_MS; Date.now() < end && (await connectable(socket));) await sleep(100);
    }
    this.dockerHost.lanplugs.delete(this);
    return this.exitCode;
  }

  /** The daemon's own pid, as it wrote it into its lock file once it had started (null before, or for stand-ins). */
  daemonPid: number | null = null;

  /** The pid in the state directory's lock file when it is a lanplug process, else null. */
  lockHolder(): number | null {
    const pid = Number(readOr(path.join(this.stateDir, 'lanplug.lock'), '').trim());
    if (!Number.isInteger(pid) || pid <= 0) return null;
    return readOr(`/proc/${pid}/cmdline`, '').includes('lanplug') ? pid : null;
  }
  private async waitExit(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.exited.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
  /** Synchronous stop, for teardown. */
  stopSync(timeoutMs = STOP_GRACE_MS): void {
    terminateSync(this.pid, timeoutMs);
    this.dockerHost.lanplugs.delete(this);
  }
}

function connectable(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.createConnection({ path: sock });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * Starts `node <repo>/bin/lanplug daemon --state-dir X --plugin-dir Y` in the Docker host's network
 * namespace and dockerd's mount namespace (nsenter), stdout/stderr to files; resolves when its
 * sockets accept connections, rejects (with its stderr) if it exits or times out first.
 */
/** The capabilities every lanplug daemon this process starts may hold; null: all of root's. */
let capabilities: readonly string[] | null = null;

/**
 * From now on, every daemon this test file starts holds only `caps` (e.g. the service's
 * CapabilityBoundingSet), with no way to gain more: run under setpriv, as systemd runs the service.
 */
export function restrictLanplugTo(caps: readonly string[]): void {
  capabilities = caps;
}

function withCapabilities(program: readonly string[]): string[] {
  if (capabilities === null) return [...program];
  const allowed = capabilities.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
  return ['setpriv', '--bounding-set', `-all,${allowed}`, '--inh-caps', '-all', '--no-new-privs', '--', ...program];
}

/** The capability sets a running process holds (/proc/PID/status, CapEff and CapBnd), as bit masks. */
export function capabilitiesOf(pid: number): { effective: bigint; bounding: bigint } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const mask = (name: string): bigint =>
    BigInt(`0x${new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1] ?? '0'}`);
  return { effective: mask('CapEff'), bounding: mask('CapBnd') };
}

export async function startLanplug(dh: DockerHost, opts: LanplugOptions = {}): Promise<Lanplug> {
  const n = dh.nextLanplugIndex();
  const stateDir = opts.stateDir ?? path.join(dh.dir, `lanplug-state-${n}`);
  const pluginDir = opts.pluginDir ?? dh.pluginDir;
  fs.mkdirSync(stateDir, { recursive: true });
  fs.mkdirSync(pluginDir, { recursive: true });
  const root = repoRoot();
  // As the product runs it (the service, npm start): with the daemon's node flags.
  const program = withCapabilities(
    opts.command ?? [process.execPath, ...DAEMON_NODE_FLAGS, path.join(root, 'bin', 'lanplug')],
  );
  // lanplug asks this host's dockerd (in the background) which rows it has forgotten.
  const dockerHost = opts.command === undefined ? ['--docker-host', `unix://${dh.sock}`] : [];
  const argv = [
    ...program,
    'daemon',
    '--state-dir',
    stateDir,
    '--plugin-dir',
    pluginDir,
    ...dockerHost,
    ...(opts.args ?? []),
  ];
  const mnt = dh.mount;
  if (mnt === undefined) throw new Error('lab: dockerd is not running on this Docker host');
  const full = nsExecArgv(dh.ns, argv, mnt, root);
  const stdoutPath = path.join(dh.dir, `lanplug-${n}.stdout.log`);
  const stderrPath = path.join(dh.dir, `lanplug-${n}.stderr.log`);
  const out = fs.openSync(stdoutPath, 'a');
  const err = fs.openSync(stderrPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(full[0] as string, full.slice(1), {
      stdio: ['ignore', out, err],
      env: cleanEnv(opts.env ?? {}),
    });
  } finally {
    fs.closeSync(out);
    fs.closeSync(err);
  }
  child.on('error', () => undefined);
  // a forgotten daemon must not keep the test process alive: the exit hook tears the lab down
  child.unref();
  if (child.pid === undefined) throw new Error(`lab: could not start ${full.join(' ')}`);
  const lp = new Lanplug(dh, child, child.pid, argv, stateDir, pluginDir, stdoutPath, stderrPath);
  dh.lanplugs.add(lp);

  const sockets = (opts.sockets ?? ['lanplug-macvlan.sock']).map((s) => path.join(pluginDir, s));
  const readyMs = opts.readyTimeoutMs ?? READY_TIMEOUT_MS;
  const deadline = Date.now() + readyMs;
  for (;;) {
    if (!lp.running) {
      await lp.stop();
      throw new Error(
        `lab: lanplug exited (code ${String(lp.exitCode)}, signal ${String(lp.exitSignal)}) before its sockets were ready: ${argv.join(' ')}\nstderr:\n${tail(lp.stderr(), 40)}`,
      );
    }
    const ready = await Promise.all(sockets.map(connectable));
    // The sockets alone could still be a previous daemon's, on its way out: the real daemon also says it started.
    if (ready.every(Boolean) && (opts.command !== undefined || lp.stderr().includes('"lanplug daemon started"'))) {
      if (opts.command === undefined) lp.daemonPid = lp.lockHolder();
      return lp;
    }
    if (Date.now() > deadline) {
      await lp.stop();
      throw new Error(
        `lab: lanplug sockets not ready within ${readyMs} ms (${sockets.filter((_s, i) => !ready[i]).join(', ')})\nstderr:\n${tail(lp.stderr(), 40)}`,
      );
    }
    await sleep(50);
  }
}
