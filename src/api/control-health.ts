/**
 * The daemon's health probes (observe/health.ts runs them): its state
 * database opened afresh, read-only, as `lanplug status` opens it; each socket
 * it serves (the control socket, the plugin sockets, the CNI socket)
 * accepting a connection; and, with shared pools, etcd answering a read.
 */
import { checkHealth, type Health, type HealthProbe } from '../observe/health';
import type { EtcdClient } from '../state/etcd/client';
import { KEY_PREFIX } from '../state/etcd/keys';
import { SqliteStore } from '../state/sqlite';
import { answers } from './docker/server';

export interface HealthParts {
  stateDir: string;
  /** The sockets served now (the list grows as the daemon starts). */
  sockets: () => readonly string[];
  /** The shared pools' etcd; null on a single host. */
  etcd: EtcdClient | null;
}

/**
 * Answers asked while a check runs, or within a second of its end, share it (a health checker
 * hammering /healthz would otherwise open the database and every socket, and read etcd, each time).
 */
const SHARED_FOR_MS = 1_000;

/**
 * `monotonic`: what the second is measured on. On the wall clock, one set back an hour had /healthz
 * answer the same check for the hour (a daemon broken since said healthy).
 */
export function daemonHealth(
  parts: HealthParts,
  monotonic: () => number = () => performance.now(),
): () => Promise<Health> {
  let last: { health: Promise<Health>; settledAt: number | null } | null = null;
  return () => {
    const settledAt = last?.settledAt;
    if (last !== null && (settledAt === null || monotonic() - (settledAt ?? 0) < SHARED_FOR_MS)) return last.health;
    const check = { health: checkHealth(probes(parts)), settledAt: null as number | null };
    void check.health.finally(() => (check.settledAt = monotonic())).catch(() => undefined);
    last = check;
    return check.health;
  };
}

function probes(parts: HealthParts): HealthProbe[] {
  const store: HealthProbe = {
    name: 'store',
    run() {
      const opened = SqliteStore.openReadOnly(parts.stateDir);
      try {
        return `${opened.path} opens and reads (${opened.listNetworks().length} network(s))`;
      } finally {
        opened.close();
      }
    },
  };
  const sockets = parts.sockets().map((path): HealthProbe => ({
    name: `socket ${path}`,
    async run() {
      if (!(await answers(path))) throw new Error(`${path} does not accept connections`);
      return 'accepts connections';
    },
  }));
  const { etcd } = parts;
  const shared: HealthProbe[] =
    etcd === null
      ? []
      : [
          {
            name: 'etcd',
            async run() {
              // One key nothing writes: a round trip through the cluster's quorum read, nothing fetched.
              await etcd.range(`${KEY_PREFIX}health`, { deadlineMs: 2_500 });
              return 'answers a read';
            },
          },
        ];
  return [store, ...sockets, ...shared];
}
