/**
 * Cold start: from spawning `lanplug daemon` to all three plugin sockets
 * accepting connections, in a namespace of its own with a fresh state
 * directory (so that it reconciles nothing but an empty host), polled every
 * 2 ms. Includes Node's own start-up.
 */
import { spawn } from 'node:child_process';
import { DAEMON_NODE_FLAGS } from '../../src/daemon';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, delNetns, nsExecArgv } from '../lab/ns';
import { repoRoot } from '../support/repo';
import { sinceMs, sleep } from './stats';

const SOCKETS = ['lanplug-macvlan.sock', 'lanplug-ipvlan.sock', 'lanplug.sock'];

function connectable(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ path });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

async function once(ns: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-cold-'));
  const pluginDir = join(dir, 'plugins');
  const argv = nsExecArgv(ns, [
    process.execPath,
    ...DAEMON_NODE_FLAGS,
    join(repoRoot(), 'bin', 'lanplug'),
    'daemon',
    '--state-dir',
    join(dir, 'state'),
    '--plugin-dir',
    pluginDir,
  ]);
  const start = process.hrtime.bigint();
  const child = spawn(argv[0] ?? 'nsenter', argv.slice(1), { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`bench: the daemon exited (${child.exitCode}) before it was ready`);
      const ready = await Promise.all(SOCKETS.map((s) => connectable(join(pluginDir, s))));
      if (ready.every(Boolean)) return sinceMs(start);
      if (sinceMs(start) > 30_000) throw new Error('bench: the daemon was not ready within 30 s');
      await sleep(2);
    }
  } finally {
    child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function coldStarts(times: number): Promise<number[]> {
  const ns = `lpb-cold-${process.pid}`;
  addNetns(ns);
  try {
    const samples: number[] = [];
    for (let i = 0; i < times; i++) samples.push(await once(ns));
    return samples;
  } finally {
    delNetns(ns);
  }
}
