/**
 * `lanplug doctor`'s netavark checks (Podman 5 and 6): netavark's version,
 * whether it can run plugins at all (1.6 and later), and whether the
 * directories containers.conf gives it hold lanplug's plugins, answering.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  containersConfAdvice,
  DEFAULT_NETAVARK_PLUGIN_DIRS,
  NETAVARK_EXECUTABLES,
  netavarkPluginDirs,
} from '../../install/netavark';
import type { Add, DoctorOptions } from './check';
import { askCniSocket } from './cni';

/** containers.conf's default helper_binaries_dir, where Podman finds netavark. */
const HELPER_DIRS = ['/usr/local/libexec/podman', '/usr/local/lib/podman', '/usr/libexec/podman', '/usr/lib/podman'];
/** The first netavark with the plugin API. */
const PLUGINS_SINCE: readonly [number, number] = [1, 6];

export async function netavarkChecks(options: DoctorOptions, add: Add, root = '/'): Promise<void> {
  const binary = HELPER_DIRS.map((dir) => join(root, dir, 'netavark')).find((path) => existsSync(path)) ?? null;
  const version = binary === null ? null : netavarkVersion(binary);
  let dirs: string[];
  let advice: string | null;
  try {
    const found = netavarkPluginDirs(root);
    dirs = found.dirs;
    advice = containersConfAdvice(found);
  } catch (err) {
    add('netavark', 'fail', err instanceof Error ? err.message : String(err));
    return;
  }
  const listed = NETAVARK_EXECUTABLES.map(
    (name) => dirs.map((dir) => join(root, dir, name)).find((path) => existsSync(path)) ?? null,
  );
  const elsewhere = DEFAULT_NETAVARK_PLUGIN_DIRS.flatMap((dir) =>
    NETAVARK_EXECUTABLES.map((name) => join(root, dir, name)),
  ).filter((path) => existsSync(path) && !listed.includes(path));
  const what = binary === null ? 'netavark not found' : `netavark ${version ?? '(version unknown)'} at ${binary}`;
  if (listed.every((p) => p === null)) {
    if (elsewhere.length > 0 && advice !== null)
      add('netavark', 'fail', `${what}; lanplug's plugins are in ${elsewhere.join(', ')} but ${advice}`);
    else
      add(
        'netavark',
        'ok',
        `${what}; lanplug's plugins not installed (\`lanplug install --netavark\` adds them for Podman 5 and 6)`,
      );
    return;
  }
  if (version !== null && older(version, PLUGINS_SINCE))
    add('netavark', 'warn', `${what} runs no plugins (netavark ${PLUGINS_SINCE.join('.')} and later do): use CNI`);
  for (const [i, path] of listed.entries()) {
    if (path === null) {
      add(
        'netavark',
        'fail',
        `${NETAVARK_EXECUTABLES[i] ?? ''} is in none of ${dirs.join(', ')}`,
        'lanplug install --netavark',
      );
      continue;
    }
    const info = spawnSync(path, ['info'], { encoding: 'utf8', timeout: 5_000, input: '' });
    if (info.status !== 0 || !info.stdout.includes('"api_version"'))
      add('netavark', 'fail', `${path} does not answer info`, 'lanplug install --netavark');
  }
  const socket = options.cniSocket;
  if (socket === null) {
    add(
      'netavark',
      'fail',
      `${what} finds lanplug's plugins, but the daemon runs with --cni-socket off: every podman run on their networks fails`,
      'lanplug install --netavark (without --cni-socket off)',
    );
    return;
  }
  const answer = await askCniSocket(socket).catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
  const plugins = listed.filter((p) => p !== null).join(', ');
  if (answer === true) add('netavark', 'ok', `${what} finds ${plugins}; the daemon answers on ${socket}`);
  else
    add(
      'netavark',
      'fail',
      `${what} finds ${plugins}, but ${socket} does not answer (${answer}): every podman run on their networks fails`,
      'systemctl restart lanplug (or: lanplug daemon)',
    );
}

/** `netavark --version` prints `netavark 1.17.1`. */
function netavarkVersion(binary: string): string | null {
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 5_000 });
  return /(\d+\.\d+(?:\.\d+)?)/.exec(out.stdout ?? '')?.[1] ?? null;
}

function older(version: string, than: readonly [number, number]): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major < than[0] || (major === than[0] && minor < than[1]);
}
