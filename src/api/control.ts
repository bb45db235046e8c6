/**
 * The daemon's control socket, `<stateDir>/control.sock` (root-only, like the
 * directory): how `lanplug gc` asks a running daemon to reconcile now, since
 * only one process may hold the state directory; and how `lanplug status` and
 * `doctor` read shared pools, whose etcd connection only the daemon has; and
 * the daemon's own figures (memory, descriptors, sockets, timers, the
 * database), which the soak samples to see that nothing grows with use; and
 * what `lanplug ls` lists (Lanplug.List: observe/listing.ts); and, to GET,
 * the Prometheus metrics (/metrics, metrics/registry.ts) and the daemon's
 * health (/healthz, observe/health.ts).
 */
import { join } from 'node:path';
import { events, type DaemonEvent } from '../metrics/events';
import { exposition } from '../metrics/registry';
import type { Health } from '../observe/health';
import type { Listing } from '../observe/listing';
import type { StoreFigures, SyncFailure } from '../state/sqlite';
import type { ProcessFigures } from '../sys/process-stats';
import { requiredString, type JsonObject } from './docker/decode';
import type { Handler } from './docker/routes';
import type { PageHandler, PluginEndpoint } from './docker/server';

const CONTROL_SOCKET_NAME = 'control';

/** Where the daemon serves its control socket: `<stateDir>/control.sock` (PluginServer.listen binds `<dir>/<name>.sock`). */
export function controlSocketPath(stateDir: string): string {
  return join(stateDir, `${CONTROL_SOCKET_NAME}.sock`);
}

/** What the control socket asks of the daemon (the daemon's housekeeping answers: housekeeping.ts). */
export interface ControlActions {
  /**
   * Reconcile now; `graceMs`: how old a row must be before Docker's not knowing it counts (null: the
   * daemon's); `acceptEngine`: the daemon's dockerd speaks for every network (Docker reinstalled).
   */
  gc(asked: { dryRun: boolean; graceMs: number | null; acceptEngine: boolean }): Promise<object>;
  /** The shared pools' report (ipam/shared-report.ts); `{ Shared: false }` on a single host. */
  sharedPools(): Promise<object>;
  /** `lanplug forget NETWORK NAME`: an identity's reservation dropped (ipam/reservations.ts). */
  forget(network: string, name: string): Promise<object>;
}

/** What the control socket shows of the daemon without acting (observe/). */
export interface ControlViews {
  /** Every endpoint and the LAN devices heard (`lanplug ls`). */
  listing(): Promise<Listing>;
  /** Whether the store, the sockets and etcd (when configured) answer now. */
  health(): Promise<Health>;
  /**
   * The store's fsyncs that failed since the daemon started: since when, how many, and the last
   * (doctor's state directory check). Its own route, since Lanplug.Stats walks /proc and the heap,
   * which doctor must not make the daemon do.
   */
  syncFailure(): SyncFailure | null;
}

/** What Lanplug.Stats answers: the daemon's figures now. */
export interface DaemonStats {
  process: ProcessFigures;
  store: StoreFigures;
}

/** The control socket's name and routes, its errors in `Err` as the driver API's are. */
export function controlEndpoint(
  actions: ControlActions,
  stats: () => DaemonStats,
  views: ControlViews,
): PluginEndpoint {
  return {
    name: CONTROL_SOCKET_NAME,
    routes: controlRoutes(actions, stats, views),
    errorField: 'Err',
    // The events name containers' addresses and MACs: on the root-only socket only, never on TCP.
    pages: new Map([...controlPages(views), ['/events', eventsPage]]),
  };
}

/**
 * `GET /events?since=MS[&follow=1]`: the kept events from `since` (ms since the epoch) as NDJSON,
 * then, with follow, each new one as it comes, until the client goes or the daemon stops.
 */
const eventsPage: PageHandler = (query) => {
  const since = Number(query.get('since') ?? '0');
  const line = (e: DaemonEvent): string => `${JSON.stringify(e)}\n`;
  const body = events
    .since(Number.isFinite(since) ? since : 0)
    .map(line)
    .join('');
  return Promise.resolve({
    status: 200,
    contentType: 'application/x-ndjson',
    body,
    ...(query.get('follow') === '1'
      ? { follow: (write: (text: string) => void, end: () => void) => events.follow((e) => write(line(e)), end) }
      : {}),
  });
};

/** The pages a GET reads, on the control socket and on `--metrics-listen`'s address. */
export function controlPages(views: Pick<ControlViews, 'health'>): ReadonlyMap<string, PageHandler> {
  return new Map<string, PageHandler>([
    ['/metrics', async () => ({ status: 200, ...(await exposition()) })],
    [
      '/healthz',
      async () => {
        const health = await views.health();
        return { status: health.ok ? 200 : 503, contentType: 'application/json', body: `${JSON.stringify(health)}\n` };
      },
    ],
  ]);
}

export function controlRoutes(
  actions: ControlActions,
  stats: () => DaemonStats,
  views: ControlViews,
): ReadonlyMap<string, Handler> {
  return new Map<string, Handler>([
    [
      '/Lanplug.Gc',
      async (body) => {
        const grace = body['GraceMs'];
        return asJson(
          await actions.gc({
            dryRun: body['DryRun'] === true,
            graceMs: typeof grace === 'number' && Number.isInteger(grace) && grace >= 0 ? grace : null,
            acceptEngine: body['AcceptEngine'] === true,
          }),
        );
      },
    ],
    ['/Lanplug.SharedPools', async () => asJson(await actions.sharedPools())],
    [
      '/Lanplug.Forget',
      async (body) => asJson(await actions.forget(requiredString(body, 'Network'), requiredString(body, 'Name'))),
    ],
    ['/Lanplug.Stats', () => asJson(stats())],
    ['/Lanplug.List', async () => asJson(await views.listing())],
    ['/Lanplug.SyncFailure', () => asJson({ SyncFailure: views.syncFailure() })],
  ]);
}

/** Reports are plain data (strings, numbers, arrays): their JSON form is exact. */
function asJson(value: object): JsonObject {
  return JSON.parse(JSON.stringify(value)) as JsonObject;
}
