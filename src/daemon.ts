/**
 * The long-running daemon: one process serving both network drivers.
 * It wires the layers together and owns the process lifecycle (signals).
 */
import { networkDriverRoutes } from './api/docker/routes';
import { PluginServer } from './api/docker/server';
import { NetworkDriver } from './driver/network-driver';
import { openRtnl } from './link/rtnl';
import type { Logger } from './log';
import type { DriverKind } from './model/network';
import { SqliteStore } from './state/sqlite';

export interface DaemonOptions {
  stateDir: string;
  pluginDir: string;
  log: Logger;
}

const DRIVER_KINDS: readonly DriverKind[] = ['macvlan', 'ipvlan'];

export interface RunningDaemon {
  stop(): Promise<void>;
}

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const { log } = options;
  const store = SqliteStore.open(options.stateDir);
  const rtnl = openRtnl();
  const driver = new NetworkDriver(rtnl, store, log);
  const servers: PluginServer[] = [];
  try {
    for (const kind of DRIVER_KINDS) {
      servers.push(
        await PluginServer.listen(options.pluginDir, { name: `lanplug-${kind}`, routes: networkDriverRoutes(driver, kind), errorField: 'Err' }, log),
      );
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.close()));
    rtnl.close();
    store.close();
    throw err;
  }
  log.info('lanplug daemon started', { stateDir: options.stateDir, pluginDir: options.pluginDir, networks: store.listNetworks().length });
  let stopping: Promise<void> | null = null;
  return {
    stop(): Promise<void> {
      stopping ??= (async () => {
        await Promise.all(servers.map((s) => s.close()));
        rtnl.close();
        store.close();
        log.info('lanplug daemon stopped');
      })();
      return stopping;
    },
  };
}
