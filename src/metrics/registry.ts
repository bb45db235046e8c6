/**
 * The daemon's Prometheus metrics (prom-client writes the exposition format):
 * one registry per process, and the counters and histograms the floors move
 * as they act: requests by method and outcome, probes, conflicts,
 * announcements, renewal failures, reconcile actions, the LAN sync's link
 * reads, etcd round trips. The figures read from the store at each scrape
 * (pools, endpoints, leases) are observe/store-metrics.ts's; Node's own
 * (memory, CPU, event loop) are prom-client's default metrics. Names follow
 * Prometheus's conventions: `lanplug_` first, `_total` for counters,
 * `_seconds` for durations.
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });
// Three of prom-client's defaults are gauges named like counters (`_total`), which Prometheus's own
// check (`promtool check metrics`) refuses; lanplug's page keeps to the conventions and leaves them out.
for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'])
  registry.removeSingleMetric(name);

/** From a fast attach (a few ms) to a DHCP exchange's budget and dockerd's patience with a plugin (tens of seconds). */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const requests = new Counter({
  name: 'lanplug_requests_total',
  help: 'Requests answered, by method (NetworkDriver.Join, IpamDriver.RequestAddress, CNI.ADD, ...) and outcome (ok, error)',
  labelNames: ['method', 'outcome'] as const,
  registers: [registry],
});

const requestSeconds = new Histogram({
  name: 'lanplug_request_duration_seconds',
  help: 'How long a request took to answer, by method',
  labelNames: ['method'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export type RequestOutcome = 'ok' | 'error';

/** One request answered: `method` is the API's own name for it (a path without its slash, `CNI.ADD`). */
export function countRequest(method: string, outcome: RequestOutcome, seconds: number): void {
  requests.inc({ method, outcome });
  requestSeconds.observe({ method }, seconds);
}

const probes = new Counter({
  name: 'lanplug_probes_total',
  help: 'Conflict probes sent to the LAN (ARP probe, IPv6 DAD), by family and result (free, in_use, error)',
  labelNames: ['family', 'result'] as const,
  registers: [registry],
});

export function countProbe(family: 4 | 6, result: 'free' | 'in_use' | 'error'): void {
  probes.inc({ family: String(family), result });
}

const conflicts = new Counter({
  name: 'lanplug_conflicts_total',
  help: "LAN devices found using an address: answering a probe (probe), or claiming a container's address (claim)",
  labelNames: ['kind'] as const,
  registers: [registry],
});

export function countConflict(kind: 'probe' | 'claim'): void {
  conflicts.inc({ kind });
}

const announcements = new Counter({
  name: 'lanplug_announcements_total',
  help: 'Gratuitous ARP and unsolicited neighbour advertisements sent, by family',
  labelNames: ['family'] as const,
  registers: [registry],
});

export function countAnnouncement(family: 4 | 6): void {
  announcements.inc({ family: String(family) });
}

const renewalFailures = new Counter({
  name: 'lanplug_lease_renewal_failures_total',
  help: 'DHCP lease renewal steps that got no lease (no answer, a NAK, a declined move), by family',
  labelNames: ['family'] as const,
  registers: [registry],
});

export function countRenewalFailure(family: 4 | 6): void {
  renewalFailures.inc({ family: String(family) });
}

const reconcileActions = new Counter({
  name: 'lanplug_reconcile_actions_total',
  help: 'What reconciling the kernel with the store did, by action (delete-link, create-shim, ...) and outcome',
  labelNames: ['action', 'outcome'] as const,
  registers: [registry],
});

export function countReconcileAction(action: string, outcome: 'done' | 'failed'): void {
  reconcileActions.inc({ action, outcome });
}

const lanSyncDumps = new Counter({
  name: 'lanplug_lan_sync_dumps_total',
  help: "Reads of this daemon's links by the LAN sync (every 2 s) looking for LAN eyes no network needs: made when a link changed, and every 30 s",
  registers: [registry],
});

export function countLanSyncDump(): void {
  lanSyncDumps.inc();
}

const etcdRequests = new Counter({
  name: 'lanplug_etcd_requests_total',
  help: 'Round trips to etcd (shared pools), by outcome (ok, error: no member answered in time, or etcd refused)',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

const etcdSeconds = new Histogram({
  name: 'lanplug_etcd_request_duration_seconds',
  help: 'How long a round trip to etcd took, retries on other members included',
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export function countEtcdRequest(outcome: RequestOutcome, seconds: number): void {
  etcdRequests.inc({ outcome });
  etcdSeconds.observe(seconds);
}

/** The exposition (text format 0.0.4) and its content type, for `GET /metrics`. */
export async function exposition(): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
