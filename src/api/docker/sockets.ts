/**
 * What the daemon serves on which socket. Docker finds a legacy plugin by
 * its socket's file name, one per driver name, in its plugin directory; a
 * managed plugin has exactly one socket (config.json's interface.socket) for
 * one driver kind and the IPAM driver, and the plugin holding the state
 * directory also serves every kind on a socket there, where the other kind's
 * plugin relays its calls (two daemons never share one store).
 */
import { basename, dirname, join } from 'node:path';
import { DHCP_ADDRESS_SPACE, DHCP_IPAM_NAME, OPT_DHCP, parseBoolean } from '../../driver/options';
import { invalidArgument } from '../../errors';
import type { Logger } from '../../log';
import { DRIVER_KINDS, type DriverKind } from '../../model/network';
import { systemdSockets } from '../../systemd-sockets';
import type { Handler } from './routes';
import { combinedEndpoint, PluginServer, removeDeadSocket, type PluginEndpoint } from './server';
import { decodeCreateNetwork } from './wire';

/** The IPAM driver's name: `docker network create --ipam-driver lanplug`. */
export const IPAM_PLUGIN_NAME = 'lanplug';
/** Every socket the daemon serves, by plugin name (`<name>.sock`, and systemd's FileDescriptorName=). */
export const PLUGIN_NAMES = [...DRIVER_KINDS.map((kind) => `lanplug-${kind}`), IPAM_PLUGIN_NAME, DHCP_IPAM_NAME];

/** Which managed plugin this daemon runs as (see src/plugin/serve.ts). */
export interface ManagedRole {
  /** The plugin's name as Docker knows it, e.g. lanplug/macvlan:latest (for messages and the lock). */
  pluginName: string;
  kind: DriverKind;
  /** The socket's file name in the plugin directory, without `.sock`. */
  socketName: string;
}

/** Where the managed plugin holding the state directory serves each kind for the other plugin's relay. */
export function managedPeerSocket(stateDir: string, kind: DriverKind): string {
  return join(stateDir, 'managed', `lanplug-${kind}.sock`);
}

/** Each API's routes, as the daemon built them. */
export interface ServedRoutes {
  driver(kind: DriverKind): ReadonlyMap<string, Handler>;
  ipam: ReadonlyMap<string, Handler>;
  dhcpIpam: ReadonlyMap<string, Handler>;
}

/** The sockets to serve: a directory and what answers there. */
export function pluginSockets(
  where: { pluginDir: string; stateDir: string },
  managed: ManagedRole | null,
  routes: ServedRoutes,
): { dir: string; endpoint: PluginEndpoint }[] {
  const ipam: PluginEndpoint = { name: IPAM_PLUGIN_NAME, routes: routes.ipam, errorField: 'Error' };
  if (managed === null) {
    const endpoints: PluginEndpoint[] = [
      ...DRIVER_KINDS.map((kind): PluginEndpoint => ({
        name: `lanplug-${kind}`,
        routes: routes.driver(kind),
        errorField: 'Err',
      })),
      ipam,
      { name: DHCP_IPAM_NAME, routes: routes.dhcpIpam, errorField: 'Error' },
    ];
    return endpoints.map((endpoint) => ({ dir: where.pluginDir, endpoint }));
  }
  // No lanplug-dhcp in a managed plugin: its DHCP leases could not be renewed in the containers (withoutDhcp).
  const driver = (kind: DriverKind): PluginEndpoint => ({
    name: `lanplug-${kind}`,
    routes: withoutDhcp(routes.driver(kind), kind, pluginOfKind(managed, kind)),
    errorField: 'Err',
  });
  return [
    { dir: where.pluginDir, endpoint: combinedEndpoint(managed.socketName, [driver(managed.kind), ipam]) },
    ...DRIVER_KINDS.map((kind) => {
      const peer = managedPeerSocket(where.stateDir, kind);
      return { dir: dirname(peer), endpoint: combinedEndpoint(basename(peer, '.sock'), [driver(kind), ipam]) };
    }),
  ];
}

/**
 * Before the daemon touches anything: the sockets systemd passed in (a daemon on the host; by
 * name), and for each other socket the daemon will serve, a refusal if another process serves it
 * (a dead process's file is removed).
 */
export async function claimPluginSockets(
  pluginDir: string,
  managed: ManagedRole | null,
  log: Logger,
): Promise<ReadonlyMap<string, number>> {
  const passed = managed === null ? systemdSockets(log) : new Map<string, number>();
  for (const name of managed === null ? PLUGIN_NAMES : [managed.socketName])
    if (!passed.has(name)) await removeDeadSocket(join(pluginDir, `${name}.sock`));
  return passed;
}

/** Each socket served, on the descriptor systemd passed for it, else bound here; all, or none (the rest closed). */
export async function servePluginSockets(
  sockets: readonly { dir: string; endpoint: PluginEndpoint }[],
  passed: ReadonlyMap<string, number>,
  log: Logger,
): Promise<PluginServer[]> {
  const servers: PluginServer[] = [];
  try {
    for (const { dir, endpoint } of sockets) {
      const fd = passed.get(endpoint.name);
      servers.push(
        fd === undefined
          ? await PluginServer.listen(dir, endpoint, log)
          : await PluginServer.adopt(fd, join(dir, `${endpoint.name}.sock`), endpoint, log),
      );
    }
  } catch (err) {
    for (const server of servers.reverse()) await server.close();
    throw err;
  }
  return servers;
}

/** The name of the managed plugin that serves `kind` (the pair shares everything but the kind). */
function pluginOfKind(managed: ManagedRole, kind: DriverKind): string {
  return managed.pluginName.replace(`/${managed.kind}:`, `/${kind}:`);
}

const CREATE_NETWORK = '/NetworkDriver.CreateNetwork';

/**
 * A managed plugin does not see the containers' namespace files (Docker's SandboxKey is a host path;
 * mounting dockerd's exec root would pin every container's namespace where mounts do not
 * propagate), and a DHCP lease is renewed inside the container: such a network is refused at once.
 */
function withoutDhcp(
  routes: ReadonlyMap<string, Handler>,
  kind: DriverKind,
  pluginName: string,
): ReadonlyMap<string, Handler> {
  const create = routes.get(CREATE_NETWORK);
  if (create === undefined) return routes;
  return new Map(routes).set(CREATE_NETWORK, (body) => {
    const { options, addressSpace } = decodeCreateNetwork(kind, body);
    if (parseBoolean(OPT_DHCP, options[OPT_DHCP]) || addressSpace === DHCP_ADDRESS_SPACE)
      throw invalidArgument(
        `DHCP networks (-o ${OPT_DHCP}=true, --ipam-driver ${DHCP_IPAM_NAME}) need lanplug installed on the host (lanplug install), not the managed plugin ${pluginName}: a DHCP lease is renewed inside the container's namespace, which a managed plugin cannot reach`,
      );
    return create(body);
  });
}
