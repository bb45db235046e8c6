/**
 * The managed plugin's entrypoint (`lanplug plugin serve`, run by dockerd
 * inside the plugin's container). Docker gives each managed plugin one driver
 * name and one socket, so lanplug ships two plugins, one per link kind; both
 * mount the same state directory, and exactly one daemon may serve it:
 *
 * - the plugin that takes the state lock runs the whole daemon: its own kind
 *   and the IPAM driver on its socket, and every kind on a socket in the state
 *   directory;
 * - the other relays its socket to that state-directory socket, and takes
 *   the lock over when the first plugin is disabled;
 * - when a daemon outside Docker (lanplug.service) holds the directory, the
 *   plugin serves no driver: every call is answered with one line saying who
 *   holds the directory and what to do, until that daemon stops.
 */
import { join } from 'node:path';
import { ipamDescription } from '../api/docker/ipam-routes';
import { networkDriverDescription } from '../api/docker/routes';
import { PluginServer, type PluginEndpoint } from '../api/docker/server';
import { managedPeerSocket, type ManagedRole } from '../api/docker/sockets';
import { startDaemon, type RunningDaemon } from '../daemon';
import { LanplugError } from '../errors';
import { createLogger, parseLevel, type Logger } from '../log';
import { DRIVER_KINDS } from '../model/network';
import { heldMessage, isLocked, LOCK_FILE, lockHolder } from '../state/lock';
import { UnixRelay } from './relay';

/** Paths inside the plugin's container, fixed by the plugin's config.json (see manifest.ts). */
export const PLUGIN_PATHS = {
  /** dockerd mounts `<exec-root>/plugins/<id>` here and finds the socket there. */
  pluginDir: '/run/docker/plugins',
  socketName: 'lanplug',
  /** The `state` mount: the host's /var/lib/lanplug unless set otherwise. */
  stateDir: '/var/lib/lanplug',
  /** The `docker` mount: dockerd's API socket, asked in the background which rows Docker forgot. */
  dockerSocket: '/run/lanplug/docker.sock',
} as const;

/** The environment config.json gives the plugin: fixed at build (name, kind) and settable (log level). */
export const PLUGIN_ENV = { name: 'LANPLUG_PLUGIN_NAME', kind: 'LANPLUG_DRIVER', log: 'LANPLUG_LOG' } as const;

const FOLLOW_CHECK_MS = 1_000;
const RECHECK_MS = 300_000;
const FORGOTTEN_GRACE_MS = 60_000;
const CNI_IDLE_MS = 60_000;

type Mode =
  | { kind: 'daemon'; daemon: RunningDaemon }
  | { kind: 'relay'; relay: UnixRelay }
  | { kind: 'refuse'; server: PluginServer };

/** Reads the role from the environment dockerd gives the plugin; a wrong value is a broken build. */
export function managedRoleFromEnv(env: NodeJS.ProcessEnv): { role: ManagedRole; log: Logger } {
  const pluginName = env[PLUGIN_ENV.name] ?? '';
  const kindText = env[PLUGIN_ENV.kind] ?? '';
  const levelText = env[PLUGIN_ENV.log] ?? 'info';
  if (!/^[a-z0-9][a-z0-9._/-]*:[\w.-]+$/.test(pluginName))
    throw new LanplugError(
      'InvalidArgument',
      `${PLUGIN_ENV.name} must be the plugin's name, e.g. lanplug/macvlan:latest; got '${pluginName}'`,
    );
  const kind = DRIVER_KINDS.find((k) => k === kindText);
  if (kind === undefined)
    throw new LanplugError(
      'InvalidArgument',
      `${PLUGIN_ENV.kind} must be one of ${DRIVER_KINDS.join(', ')}; got '${kindText}'`,
    );
  const level = parseLevel(levelText);
  if (level === null)
    throw new LanplugError(
      'InvalidArgument',
      `${PLUGIN_ENV.log} must be one of debug, info, warn, error; got '${levelText}' (docker plugin set ${pluginName} ${PLUGIN_ENV.log}=info)`,
    );
  return { role: { pluginName, kind, socketName: PLUGIN_PATHS.socketName }, log: createLogger(level) };
}

/**
 * Runs until SIGTERM (dockerd's `plugin disable`): the daemon, or a relay to the plugin that runs it,
 * or a refusal. A refusal is kept until the plugin is restarted: a daemon outside Docker must not
 * lose its directory to the plugin during its own restart, and a start that failed would fail again.
 */
export async function serveManagedPlugin(role: ManagedRole, log: Logger): Promise<void> {
  const socket = join(PLUGIN_PATHS.pluginDir, `${role.socketName}.sock`);
  const lockPath = join(PLUGIN_PATHS.stateDir, LOCK_FILE);
  let mode: Mode | null = null;
  let starting: Promise<RunningDaemon> | null = null;
  let stopping = false;
  const leave = async (): Promise<void> => {
    const current = mode;
    mode = null;
    if (current?.kind === 'daemon') await current.daemon.stop();
    if (current?.kind === 'relay') await current.relay.close();
    if (current?.kind === 'refuse') await current.server.close();
  };
  const stop = (signal: string): void => {
    stopping = true;
    log.info('shutting down', { signal });
    const pending = starting;
    (async () => {
      // A daemon half-way through its start is stopped once started, so that it removes its sockets.
      const started = pending === null ? null : await pending.catch(() => null);
      await started?.stop();
      await leave();
    })().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('shutdown failed', { error: String(err) });
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));

  // Why this plugin serves no driver: answered to every call until the plugin is restarted.
  let refusal: string | null = null;
  for (;;) {
    if (stopping) return;
    if (refusal === null && !isLocked(PLUGIN_PATHS.stateDir)) {
      await leave();
      try {
        starting = startDaemon(daemonOptions(role, log));
        const daemon = await starting;
        starting = null;
        if (stopping) return; // stop() has it
        mode = { kind: 'daemon', daemon };
        return; // the daemon runs until SIGTERM
      } catch (err) {
        starting = null;
        // Held now: another plugin took the lock first, follow it below. Otherwise the start itself failed.
        if (!isLocked(PLUGIN_PATHS.stateDir))
          refusal = `lanplug could not start: ${err instanceof Error ? err.message : String(err)}`;
      }
    }
    const holder = refusal === null ? lockHolder(PLUGIN_PATHS.stateDir) : null;
    if (holder?.owner.kind === 'daemon')
      refusal = heldMessage(lockPath, holder, { kind: 'plugin', name: role.pluginName });
    if (refusal !== null && mode?.kind !== 'refuse') {
      await leave();
      log.error(refusal);
      mode = {
        kind: 'refuse',
        server: await PluginServer.listen(PLUGIN_PATHS.pluginDir, refusingEndpoint(role, refusal), log),
      };
    } else if (holder?.owner.kind === 'plugin' && mode?.kind !== 'relay') {
      await leave();
      log.info('relaying to the plugin that holds the state directory', { holder: holder.owner.name });
      const peer = managedPeerSocket(PLUGIN_PATHS.stateDir, role.kind);
      mode = { kind: 'relay', relay: await UnixRelay.listen(socket, peer, log) };
    }
    // (a holder not readable yet, between its lock and its write, or `lanplug gc` run by hand for a
    // moment: looked at again next time)
    await new Promise((resolve) => setTimeout(resolve, FOLLOW_CHECK_MS));
  }
}

function daemonOptions(role: ManagedRole, log: Logger): Parameters<typeof startDaemon>[0] {
  return {
    stateDir: PLUGIN_PATHS.stateDir,
    pluginDir: PLUGIN_PATHS.pluginDir,
    dockerSocket: PLUGIN_PATHS.dockerSocket,
    recheckMs: RECHECK_MS,
    forgottenGraceMs: FORGOTTEN_GRACE_MS,
    // A pod's namespace file is a host path the plugin's container does not see: CNI runs with the host install.
    cniSocket: null,
    cniIdleMs: CNI_IDLE_MS,
    managed: role,
    log,
  };
}

/**
 * Describes the drivers as usual (so dockerd registers them and the user's command reaches the
 * plugin) and answers every other call with the message: Docker shows it to whoever ran the command.
 */
function refusingEndpoint(role: ManagedRole, message: string): PluginEndpoint {
  return {
    name: role.socketName,
    routes: new Map([...ipamDescription(), ...networkDriverDescription()]).set('/Plugin.Activate', () => ({
      Implements: ['NetworkDriver', 'IpamDriver'],
    })),
    errorField: 'Err',
    fallback: () => {
      throw new LanplugError('Conflict', message);
    },
  };
}
