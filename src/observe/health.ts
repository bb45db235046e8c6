/**
 * `GET /healthz`: whether the daemon can do its work now. Each probe reads
 * something real (the store opened afresh, a connection to each socket it
 * serves, a read from etcd when pools are shared) within a deadline, and
 * the answer lists them all: 200 when every one passed, 503 otherwise, for a
 * service manager, a container health check or `lanplug doctor`.
 */
export interface HealthProbe {
  name: string;
  /** Resolves with what it saw; throws (or rejects) with why it failed. */
  run(): Promise<string> | string;
}

export interface HealthCheck {
  check: string;
  ok: boolean;
  detail: string;
}

export interface Health {
  ok: boolean;
  checks: HealthCheck[];
}

/** A probe that has not answered after this long has failed (a hung etcd must not hang the health check). */
const PROBE_DEADLINE_MS = 3_000;

export async function checkHealth(probes: readonly HealthProbe[], deadlineMs = PROBE_DEADLINE_MS): Promise<Health> {
  const checks = await Promise.all(
    probes.map(async (probe): Promise<HealthCheck> => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${deadlineMs} ms`)), deadlineMs);
      });
      try {
        const detail = await Promise.race([Promise.resolve().then(() => probe.run()), late]);
        return { check: probe.name, ok: true, detail };
      } catch (err) {
        return { check: probe.name, ok: false, detail: err instanceof Error ? err.message : String(err) };
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return { ok: checks.every((c) => c.ok), checks };
}
