/**
 * The managed plugin's config.json (Docker's "plugin config version 1 of
 * plugin V2"). One plugin per link kind: Docker registers a managed plugin's
 * drivers under the plugin's own name, so `lanplug/macvlan:TAG` and
 * `lanplug/ipvlan:TAG` are two plugins, each also an IPAM driver of its name.
 */
import { DAEMON_NODE_FLAGS } from '../daemon';
import type { DriverKind } from '../model/network';
import { APP_DIR, NODE_PATH } from './rootfs';
import { PLUGIN_ENV, PLUGIN_PATHS } from './serve';

/** The settable mounts, by the names `docker plugin set NAME.source=…` uses. */
export const MOUNT_STATE = 'state';
export const MOUNT_DOCKER = 'docker';
export const DEFAULT_STATE_SOURCE = '/var/lib/lanplug';
export const DEFAULT_DOCKER_SOURCE = '/var/run/docker.sock';

export function pluginName(kind: DriverKind, tag: string): string {
  return `lanplug/${kind}:${tag}`;
}

export function pluginConfig(kind: DriverKind, tag: string, version: string): Record<string, unknown> {
  return {
    description: `lanplug ${version}: ${kind} networks on the LAN, and the lanplug IPAM driver`,
    documentation: 'lanplug docs/managed-plugin.md',
    // bin/lanplug, as on the host: it sizes libuv's thread pool before the daemon starts.
    entrypoint: [NODE_PATH, ...DAEMON_NODE_FLAGS, `${APP_DIR}/bin/lanplug`, 'plugin', 'serve'],
    workdir: APP_DIR,
    interface: {
      types: ['docker.networkdriver/1.0', 'docker.ipamdriver/1.0'],
      socket: `${PLUGIN_PATHS.socketName}.sock`,
    },
    // The host's namespace: the parent links are there, and so are the links lanplug makes.
    network: { type: 'host' },
    // Docker's default set already has CAP_NET_RAW (the LAN probes' packet sockets); links, addresses
    // and routes need CAP_NET_ADMIN. Nothing enters another namespace (DHCP and CNI stay with the host install).
    linux: { capabilities: ['CAP_NET_ADMIN'] },
    mounts: [
      {
        name: MOUNT_STATE,
        description: 'the state directory (networks, endpoints, addresses); must exist on the host',
        source: DEFAULT_STATE_SOURCE,
        destination: PLUGIN_PATHS.stateDir,
        type: 'bind',
        options: ['rbind', 'rw'],
        settable: ['source'],
      },
      {
        name: MOUNT_DOCKER,
        description: "dockerd's API socket: asked in the background which endpoints Docker forgot",
        source: DEFAULT_DOCKER_SOURCE,
        destination: PLUGIN_PATHS.dockerSocket,
        type: 'bind',
        options: ['rbind', 'rw'],
        settable: ['source'],
      },
    ],
    env: [
      {
        name: PLUGIN_ENV.log,
        description: 'log level: debug, info, warn or error',
        settable: ['value'],
        value: 'info',
      },
      { name: PLUGIN_ENV.name, description: "the plugin's own name (for messages)", value: pluginName(kind, tag) },
      { name: PLUGIN_ENV.kind, description: 'the link kind this plugin serves', value: kind },
    ],
  };
}
