/**
 * The LAN watch under load, for the kernel test and the bench: a throw-away
 * namespace with `parents` veth pairs (w<i> watched, v<i> the LAN side, v0
 * holding 10.99.0.2 so that it answers probes), and receive-load-child.js
 * run inside it, as the daemon runs inside its own namespace.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { addNetns, delNetns, nsExecArgv } from '../lab/ns';
import { runOk } from '../lab/proc';
import type { ReceiveLoadFigures } from './receive-load-child';
import { repoRoot } from './repo';

export type { ReceiveLoadFigures };

export function measureReceiveLoad(parents: number, samples: number, burst = 200): ReceiveLoadFigures {
  const ns = `lp-rl-${randomBytes(4).toString('hex')}`;
  addNetns(ns);
  try {
    const ip = (...args: string[]): void => void runOk(['ip', '-n', ns, ...args]);
    for (let i = 0; i < Math.max(parents, 2); i++) {
      ip('link', 'add', `w${i}`, 'type', 'veth', 'peer', 'name', `v${i}`);
      ip('link', 'set', `w${i}`, 'up');
      ip('link', 'set', `v${i}`, 'up');
    }
    ip('addr', 'add', '10.99.0.2/24', 'dev', 'v0');
    const child = join(repoRoot(), 'dist', 'test', 'support', 'receive-load-child.js');
    const out = runOk(nsExecArgv(ns, [process.execPath, child, String(parents), String(samples), String(burst)]));
    return JSON.parse(out) as ReceiveLoadFigures;
  } finally {
    delNetns(ns);
  }
}
