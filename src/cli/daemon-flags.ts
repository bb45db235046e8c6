/**
 * Every flag `lanplug daemon` takes and what it means once checked, in one
 * place for the two commands that read them: the daemon at its start, and
 * `lanplug install`, which checks them the same way before it writes them
 * into the service's command line (so that a bad value is one line at
 * install, not a service that fails at boot).
 */
import { join } from 'node:path';
import { CNI_SOCKET_NAME } from '../api/cni/server';
import { dockerSocketPath } from '../api/docker/engine';
import { parseListenAddress, type ListenAddress } from '../api/metrics-listener';
import { parseLevel, type Level } from '../log';
import { parseStoreChoice, type StoreChoice } from '../state/etcd/store-option';
import { UsageError, type ParsedFlags } from './flags';

export const DEFAULT_STATE_DIR = '/var/lib/lanplug';
export const DEFAULT_PLUGIN_DIR = '/run/docker/plugins';
export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';
export const DEFAULT_GRACE_SECONDS = '60';
/** How long an identity's reservation outlives its last container (docs/identity.md says why a month). */
export const DEFAULT_IDENTITY_EXPIRE = '30d';

/** The daemon's flags and their defaults, in the order the service's command line lists them. */
export const DAEMON_FLAGS: Readonly<Record<string, string>> = {
  '--state-dir': DEFAULT_STATE_DIR,
  '--plugin-dir': DEFAULT_PLUGIN_DIR,
  '--log-level': 'info',
  '--docker-host': DEFAULT_DOCKER_HOST,
  '--recheck-interval': '300',
  '--grace-seconds': DEFAULT_GRACE_SECONDS,
  // Empty: the state directory's cni.sock.
  '--cni-socket': '',
  '--cni-network-idle': '60',
  '--store': 'sqlite',
  // Empty: the host's name.
  '--host-id': '',
  '--cacert': '',
  '--cert': '',
  '--key': '',
  '--user': '',
  '--user-file': '',
  '--reclaim-after': '600',
  '--identity-expire': DEFAULT_IDENTITY_EXPIRE,
  // Empty: metrics on the control socket only.
  '--metrics-listen': '',
};

/** The flags a service always names, given or not: what the unit's reader looks for first. */
const ALWAYS_WRITTEN = ['--state-dir', '--plugin-dir', '--log-level'];

export interface DaemonFlags {
  stateDir: string;
  pluginDir: string;
  level: Level;
  dockerSocket: string;
  recheckMs: number;
  forgottenGraceMs: number;
  /** null: no CNI front end (`--cni-socket off`). */
  cniSocket: string | null;
  cniIdleMs: number;
  addressStore: StoreChoice;
  /** Where /metrics is served over TCP besides the control socket; null: nowhere. */
  metricsListen: ListenAddress | null;
  /** How long an identity's reservation lasts with no container holding it. */
  identityExpireMs: number;
}

/**
 * The daemon's settings from its flags, each checked: a wrong one throws one
 * line that names it. `fileRoot` is where the files the flags name are read
 * from (`lanplug install --root`: the system being installed).
 */
export function readDaemonFlags(flags: ParsedFlags, fileRoot = '/'): DaemonFlags {
  const underRoot = (path: string): string => (path === '' || fileRoot === '/' ? path : join(fileRoot, path));
  const addressStore = parseStoreChoice({
    store: flags.value('--store'),
    hostId: flags.value('--host-id'),
    cacert: underRoot(flags.value('--cacert')),
    cert: underRoot(flags.value('--cert')),
    key: underRoot(flags.value('--key')),
    user: flags.value('--user'),
    userFile: underRoot(flags.value('--user-file')),
    reclaimAfter: seconds(flags.value('--reclaim-after'), '--reclaim-after'),
  });
  const level = parseLevel(flags.value('--log-level'));
  if (level === null)
    throw new UsageError(`--log-level must be one of debug, info, warn, error; got '${flags.value('--log-level')}'`);
  const stateDir = flags.value('--state-dir');
  return {
    stateDir,
    pluginDir: flags.value('--plugin-dir'),
    level,
    dockerSocket: dockerSocketPath(flags.value('--docker-host')),
    recheckMs: seconds(flags.value('--recheck-interval'), '--recheck-interval') * 1000,
    forgottenGraceMs: seconds(flags.value('--grace-seconds'), '--grace-seconds') * 1000,
    cniSocket: cniSocketPath(flags.value('--cni-socket'), stateDir),
    cniIdleMs: seconds(flags.value('--cni-network-idle'), '--cni-network-idle') * 1000,
    addressStore,
    metricsListen: metricsListen(flags.value('--metrics-listen')),
    identityExpireMs: duration(flags.value('--identity-expire'), '--identity-expire'),
  };
}

function metricsListen(flag: string): ListenAddress | null {
  if (flag === '') return null;
  try {
    return parseListenAddress(flag);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/** The daemon's arguments as given (and those a service always names), in DAEMON_FLAGS order. */
export function daemonArguments(flags: ParsedFlags): string[] {
  return Object.keys(DAEMON_FLAGS)
    .filter((name) => ALWAYS_WRITTEN.includes(name) || flags.given(name))
    .flatMap((name) => [name, flags.value(name)]);
}

export function seconds(text: string, flag: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value))
    throw new UsageError(`${flag} must be a whole number of seconds; got '${text}'`);
  return value;
}

/** `90`, `90s`, `15m`, `2h`, `30d` -> milliseconds. */
export function duration(text: string, flag: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text);
  if (m === null) throw new UsageError(`${flag} must be a duration such as 90s, 15m, 2h or 30d; got '${text}'`);
  const unit = { '': 1, s: 1, m: 60, h: 3_600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  const ms = Number(m[1]) * unit * 1000;
  if (!Number.isSafeInteger(ms)) throw new UsageError(`${flag} is too long; got '${text}'`);
  return ms;
}

/** `off` turns the CNI front end off; empty (not given) is the state directory's `cni.sock`. */
export function cniSocketPath(flag: string, stateDir: string): string | null {
  if (flag === 'off') return null;
  if (flag === '') return join(stateDir, CNI_SOCKET_NAME);
  if (!flag.startsWith('/')) throw new UsageError(`--cni-socket must be an absolute path or off; got '${flag}'`);
  return flag;
}
