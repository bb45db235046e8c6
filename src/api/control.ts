/**
 * The daemon's control socket, `<stateDir>/control.sock` (root-only, like the
 * directory): how `lanplug gc` asks a running daemon to reconcile now, since
 * only one process may hold the state directory; and how `lanplug status` and
 * `doctor` read shared pools, whose etcd connection only the daemon has; and
 * the daemon's own figures (memory, descriptors, sockets, timers, the
 * database), which the soak samples to see that nothing grows with use.
 */
import type { StoreFigures } from '../state/sqlite';
import type { ProcessFigures } from '../sys/process-stats';
import type { JsonObject } from './docker/decode';
import type { Handler } from './docker/routes';

export const CONTROL_SOCKET_NAME = 'control';

export interface ControlActions {
  /**
   * Reconcile now; `graceMs`: how old a row must be before Docker's not knowing it counts (null: the
   * daemon's); `acceptEngine`: the daemon's dockerd speaks for every network (Docker reinstalled).
   */
  gc(asked: { dryRun: boolean; graceMs: number | null; acceptEngine: boolean }): Promise<JsonObject>;
  /** The shared pools' report (ipam/shared-report.ts); `{ Shared: false }` on a single host. */
  sharedPools(): Promise<JsonObject>;
  /** The daemon's figures now (Lanplug.Stats). */
  stats(): DaemonStats;
}

/** What Lanplug.Stats answers. */
export interface DaemonStats {
  process: ProcessFigures;
  store: StoreFigures;
}

export function controlRoutes(actions: ControlActions): ReadonlyMap<string, Handler> {
  return new Map<string, Handler>([
    [
      '/Lanplug.Gc',
      (body) => {
        const grace = body['GraceMs'];
        return actions.gc({
          dryRun: body['DryRun'] === true,
          graceMs: typeof grace === 'number' && Number.isInteger(grace) && grace >= 0 ? grace : null,
          acceptEngine: body['AcceptEngine'] === true,
        });
      },
    ],
    ['/Lanplug.SharedPools', () => actions.sharedPools()],
    // Plain numbers and records of numbers: their JSON form is exact.
    ['/Lanplug.Stats', () => JSON.parse(JSON.stringify(actions.stats())) as JsonObject],
  ]);
}
