/**
 * lanplug's netavark plugins (Podman 5 and 6): the CNI executable
 * (native/cni-shim.c), which is also a netavark plugin, under the driver
 * names in a directory netavark searches, and what containers.conf says
 * about those directories. Podman passes netavark the directories of
 * containers.conf's `[network] netavark_plugin_dirs`, whose default lists
 * /usr/local/libexec/netavark first; a containers.conf that sets its own
 * list replaces the default, and then the directory must be added to it.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LanplugError } from '../errors';
import { buildCniExecutable, isLanplugExecutable } from './cni';

/** One executable per driver name: `podman network create -d lanplug-macvlan`. */
export const NETAVARK_EXECUTABLES = ['lanplug-macvlan', 'lanplug-ipvlan'] as const;
/** containers.conf's default `netavark_plugin_dirs` (containers/common), in its order. */
export const DEFAULT_NETAVARK_PLUGIN_DIRS = [
  '/usr/local/libexec/netavark',
  '/usr/libexec/netavark',
  '/usr/local/lib/netavark',
  '/usr/lib/netavark',
] as const;
/** Where install puts the plugins: the default list's first, the local administrator's own. */
export const NETAVARK_PLUGIN_DIR = DEFAULT_NETAVARK_PLUGIN_DIRS[0];
/** containers.conf as Podman reads it as root: the vendor's, the host's, then the drop-ins in name order. */
const CONTAINERS_CONF = ['/usr/share/containers/containers.conf', '/etc/containers/containers.conf'];
const CONTAINERS_CONF_D = '/etc/containers/containers.conf.d';

/** Where netavark will look for plugins, and which file said so (null: the built-in default). */
export interface PluginDirs {
  dirs: string[];
  from: string | null;
}

/** The `[network] netavark_plugin_dirs` in effect under `root`: the last file that sets it wins. */
export function netavarkPluginDirs(root: string): PluginDirs {
  let found: PluginDirs = { dirs: [...DEFAULT_NETAVARK_PLUGIN_DIRS], from: null };
  const dropIns = (() => {
    try {
      return readdirSync(join(root, CONTAINERS_CONF_D))
        .filter((f) => f.endsWith('.conf'))
        .sort()
        .map((f) => join(CONTAINERS_CONF_D, f));
    } catch {
      return [];
    }
  })();
  for (const file of [...CONTAINERS_CONF, ...dropIns]) {
    let text: string;
    try {
      text = readFileSync(join(root, file), 'utf8');
    } catch {
      continue;
    }
    const dirs = pluginDirsIn(text);
    if (dirs !== null) found = { dirs, from: file };
  }
  return found;
}

/**
 * The list a containers.conf sets in its `[network]` table, or null. Reads only what this key can
 * hold (a TOML array of strings, over one line or several); a value it cannot read is refused,
 * so that install never guesses where netavark looks.
 */
export function pluginDirsIn(text: string): string[] | null {
  let table = '';
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = stripComment(lines[i] ?? '').trim();
    const header = /^\[\s*([A-Za-z0-9_.-]+)\s*\]$/.exec(line);
    if (header !== null) {
      table = header[1] ?? '';
      continue;
    }
    if (table !== 'network' || !/^netavark_plugin_dirs\s*=/.test(line)) continue;
    let value = line.slice(line.indexOf('=') + 1).trim();
    while (value.startsWith('[') && !value.includes(']') && i + 1 < lines.length)
      value += ` ${stripComment(lines[++i] ?? '').trim()}`;
    const array = /^\[(.*)\]$/.exec(value);
    if (array === null)
      throw new LanplugError('Environment', `containers.conf netavark_plugin_dirs is not an array: ${value}`);
    const items = (array[1] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    return items.map((item) => {
      const m = /^"([^"]*)"$|^'([^']*)'$/.exec(item);
      if (m === null)
        throw new LanplugError('Environment', `containers.conf netavark_plugin_dirs entry ${item} is not a string`);
      return m[1] ?? m[2] ?? '';
    });
  }
  return null;
}

function stripComment(line: string): string {
  // Paths here hold no '#': the first one outside quotes starts a comment.
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote !== null) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#') return line.slice(0, i);
  }
  return line;
}

/** The line to put under `[network]` when the host's containers.conf lists directories without lanplug's. */
export function containersConfAdvice(dirs: PluginDirs): string | null {
  if (dirs.dirs.includes(NETAVARK_PLUGIN_DIR)) return null;
  const list = [NETAVARK_PLUGIN_DIR, ...dirs.dirs].map((d) => `"${d}"`).join(', ');
  return `${dirs.from ?? 'containers.conf'} sets netavark_plugin_dirs without ${NETAVARK_PLUGIN_DIR}: add it there, under [network]: netavark_plugin_dirs = [${list}]`;
}

export interface NetavarkInstallOptions {
  root: string;
  dryRun: boolean;
  packageRoot: string;
  /** The daemon's CNI socket (the netavark plugins use the same), compiled into the executable. */
  socket: string;
}

/**
 * Builds the executable and puts it under each driver name in NETAVARK_PLUGIN_DIR (made if missing);
 * a file of that name that is not lanplug's is never replaced. The last line says what to add to
 * containers.conf when netavark would not look there.
 */
export function installNetavarkPlugins(options: NetavarkInstallOptions): string[] {
  const dir = join(options.root, NETAVARK_PLUGIN_DIR);
  const paths = NETAVARK_EXECUTABLES.map((name) => join(dir, name));
  for (const path of paths)
    if (existsSync(path) && !isLanplugExecutable(path))
      throw new LanplugError('Conflict', `${path} exists and is not lanplug's plugin; remove or rename it first`);
  const advice = containersConfAdvice(netavarkPluginDirs(options.root));
  const done: string[] = [];
  if (options.dryRun) done.push(...paths.map((p) => `would build ${p} (socket ${options.socket})`));
  else {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    // Each file appears whole, by rename: netavark may exec it at any moment.
    const staged = `${paths[0] ?? join(dir, NETAVARK_EXECUTABLES[0])}.new-${process.pid}`;
    buildCniExecutable(options.packageRoot, staged, options.socket);
    chmodSync(staged, 0o755);
    for (const path of paths.slice(1)) {
      const copy = `${path}.new-${process.pid}`;
      copyFileSync(staged, copy);
      chmodSync(copy, 0o755);
      renameSync(copy, path);
      done.push(`wrote ${path}`);
    }
    renameSync(staged, paths[0] ?? '');
    done.unshift(`built ${paths[0] ?? ''} (netavark plugin; reaches the daemon at ${options.socket})`);
  }
  if (advice !== null) done.push(`netavark will not find them yet: ${advice}`);
  return done;
}

/** Removes lanplug's plugins from every directory netavark looks in by default; anything else is left alone. */
export function uninstallNetavarkPlugins(root: string, dryRun: boolean): string[] {
  const done: string[] = [];
  for (const dir of DEFAULT_NETAVARK_PLUGIN_DIRS)
    for (const name of NETAVARK_EXECUTABLES) {
      const path = join(root, dir, name);
      if (!existsSync(path)) continue;
      if (!isLanplugExecutable(path)) {
        done.push(`kept ${path}: not lanplug's plugin`);
        continue;
      }
      if (!dryRun) rmSync(path);
      done.push(`${dryRun ? 'would remove' : 'removed'} ${path}`);
    }
  return done;
}
