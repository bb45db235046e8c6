/**
 * The real lanplug daemon as a child process in a throw-away network
 * namespace, for the kernel lane: started with `nsenter --net`, talked to
 * over its plugin sockets, stopped (or killed) and restarted on the same
 * state directory. No dockerd: requests are sent as dockerd sends them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { post } from './plugin-http';
import { repoRoot } from './repo';

export interface DaemonProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

export class DaemonLab {
  readonly dir = mkdtempSync(join(tmpdir(), 'lanplug-daemon-'));
  readonly stateDir = join(this.dir, 'state');
  readonly pluginDir = join(this.dir, 'plugins');
  private runs = 0;
  private readonly started: DaemonProcess[] = [];
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });

  constructor(readonly netns: string) {}

  socket(driver: 'macvlan' | 'ipvlan' = 'macvlan'): string {
    return join(this.pluginDir, `lanplug-${driver}.sock`);
  }

  /** Starts `lanplug daemon` in the namespace; resolves once both plugin sockets accept connections. */
  async start(env: NodeJS.ProcessEnv = {}, extraArgs: string[] = []): Promise<DaemonProcess> {
    const log = join(this.dir, `daemon-${++this.runs}.log`);
    const proc = spawnDaemon(
      this.netns,
      [
        'daemon',
        '--state-dir',
        this.stateDir,
        '--plugin-dir',
        this.pluginDir,
        '--docker-host',
        join(this.dir, 'no-dockerd.sock'),
        '--recheck-interval',
        '0',
        ...extraArgs,
      ],
      log,
      env,
    );
    this.started.push(proc);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null)
        throw new Error(`lanplug daemon exited during start:\n${proc.stderr()}`);
      if (existsSync(this.socket('macvlan')) && existsSync(this.socket('ipvlan'))) {
        try {
          await this.call('/Plugin.Activate', {});
          return proc;
        } catch {
          // not accepting yet
        }
      }
      if (Date.now() > deadline) throw new Error(`lanplug daemon not ready in 60 s:\n${proc.stderr()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Runs `lanplug <args>` in the namespace and returns its status and output. */
  async cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(
      'nsenter',
      [`--net=/run/netns/${this.netns}`, '--', process.execPath, join(repoRoot(), 'bin', 'lanplug'), ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    return { code, stdout, stderr };
  }

  /** POSTs a body to a driver socket as dockerd does; rejects when the connection dies. */
  call(
    path: string,
    body: unknown,
    driver: 'macvlan' | 'ipvlan' = 'macvlan',
  ): Promise<{ status: number; json: Record<string, unknown> }> {
    return post(this.socket(driver), path, typeof body === 'string' ? body : JSON.stringify(body), {
      agent: this.agent,
    });
  }

  /** Kills whatever daemon a failed test left running, then removes the directory. */
  close(): void {
    for (const proc of this.started)
      if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
    this.agent.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function spawnDaemon(
  netns: string,
  args: string[],
  logPath: string,
  env: NodeJS.ProcessEnv = {},
): DaemonProcess {
  const fd = openSync(logPath, 'a');
  const child = spawn(
    'nsenter',
    [`--net=/run/netns/${netns}`, '--', process.execPath, join(repoRoot(), 'bin', 'lanplug'), ...args],
    {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...env },
    },
  );
  closeSync(fd);
  if (child.pid === undefined) throw new Error('could not start lanplug');
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, pid: child.pid, exited, stderr: () => readFileSync(logPath, 'utf8') };
}
