/**
 * The daemon's control socket, `<stateDir>/control.sock` (root-only, like the
 * directory): how `lanplug gc` asks a running daemon to reconcile now, since
 * only one process may hold the state directory.
 */
import type { JsonObject } from './docker/decode';
import type { Handler } from './docker/routes';

export const CONTROL_SOCKET_NAME = 'control';

export interface ControlActions {
  gc(dryRun: boolean): Promise<JsonObject>;
}

export function controlRoutes(actions: ControlActions): ReadonlyMap<string, Handler> {
  return new Map<string, Handler>([['/Lanplug.Gc', (body) => actions.gc(body['DryRun'] === true)]]);
}
