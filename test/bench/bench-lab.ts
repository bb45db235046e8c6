/**
 * A bench's own lab, for a run that needs no LAN (the scale bench): a
 * directory /tmp/lp-lab-<id> and namespaces lp-bn-<id>-<name>, named as the
 * lab names its things (test/lab/names.ts) so that the stale-lab sweep of a
 * later run removes what a killed run left, and registered with the lab
 * registry so that an exception, exit, SIGINT or SIGTERM removes them and
 * every process in them or naming the directory (the daemons, the idle probe).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { benchNs, labDir, newLabId } from '../lab/names';
import { addNetns, delNetns } from '../lab/ns';
import { nsIdentity } from '../lab/proc';
import { registerLab, unregisterLab, type LiveLab } from '../lab/registry';
import { labNamespaces, markOwner, sweepNetns, sweepProcesses } from '../lab/sweep';

export class BenchLab implements LiveLab {
  readonly id = newLabId();
  readonly dir = labDir(this.id);
  private destroyed = false;

  private constructor() {}

  static create(): BenchLab {
    const lab = new BenchLab();
    registerLab(lab);
    try {
      mkdirSync(lab.dir, { recursive: true, mode: 0o755 });
      markOwner(lab.dir);
    } catch (e) {
      lab.destroy();
      throw e;
    }
    return lab;
  }

  /** A fresh namespace lp-bn-<id>-<name> (lo up). */
  addNamespace(name: string): string {
    const ns = benchNs(this.id, name);
    addNetns(ns);
    return ns;
  }

  /** The namespace, and every process still in it, gone. */
  removeNamespace(ns: string): void {
    sweepNetns(ns);
    delNetns(ns);
  }

  /** Everything of the lab gone: its processes, its namespaces, its directory. Idempotent, synchronous. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      const namespaces = labNamespaces(this.id);
      sweepProcesses({
        netIds: new Set(namespaces.map((ns) => nsIdentity('net', `/run/netns/${ns}`) ?? '-')),
        mntIds: new Set(),
        cgroup: () => false,
        dirs: [this.dir],
      });
      for (const ns of namespaces) delNetns(ns);
      rmSync(this.dir, { recursive: true, force: true });
    } finally {
      unregisterLab(this);
    }
  }
}
