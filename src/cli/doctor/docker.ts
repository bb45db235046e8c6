/**
 * `lanplug doctor`'s Docker checks: dockerd answers (and what its version gives lanplug's
 * networks), its plugin directory is lanplug's, and each driver's socket is there, root's, and
 * answers Plugin.Activate.
 */
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { engineFeatures } from '../../api/docker/engine-version';
import { managedPeerSocket } from '../../api/docker/sockets';
import { unixHttp } from '../../api/unix-http';
import { DRIVER_KINDS } from '../../model/network';
import { isLocked, lockHolder } from '../../state/lock';
import type { Add, CheckStatus, DoctorOptions } from './check';

/** Where dockerd 20.10 looks for legacy plugin sockets: a constant in moby's pkg/plugins. */
const DOCKER_PLUGIN_DIR = '/run/docker/plugins';

export async function dockerChecks(options: DoctorOptions, add: Add): Promise<void> {
  try {
    const answer = await unixHttp(options.dockerSocket, 'GET', '/version', undefined, 3_000);
    const version = (JSON.parse(answer.body) as { Version?: unknown }).Version;
    add('dockerd', 'ok', `dockerd ${typeof version === 'string' ? version : '?'} answers at ${options.dockerSocket}`);
    if (typeof version === 'string') {
      const features = engineFeatures(version);
      add(
        'docker engine',
        'ok',
        features.length === 0
          ? `Docker ${version}: the remote driver API of 20.10 (no endpoint sysctls, no announcements of its own)`
          : `Docker ${version} gives lanplug's networks: ${features.join(', ')}`,
      );
    }
  } catch (err) {
    add(
      'dockerd',
      'fail',
      `dockerd does not answer at ${options.dockerSocket} (${err instanceof Error ? err.message : String(err)})`,
      'systemctl start docker (or give --docker-host)',
    );
  }
  if (options.pluginDir !== DOCKER_PLUGIN_DIR) {
    add(
      'plugin directory',
      'warn',
      `--plugin-dir is ${options.pluginDir}; dockerd looks for plugin sockets in ${DOCKER_PLUGIN_DIR}`,
      `lanplug daemon --plugin-dir ${DOCKER_PLUGIN_DIR}`,
    );
  }
}

/**
 * The service's sockets in the plugin directory; or, where a managed plugin holds the state
 * directory, the sockets its daemon serves there (the plugins' own are inside dockerd's exec root).
 */
function socketsToCheck(options: DoctorOptions): { name: string; path: string; kind: string; restart: string }[] {
  const holder = isLocked(options.stateDir) ? lockHolder(options.stateDir) : null;
  if (holder?.owner.kind === 'plugin') {
    const restart = `docker plugin disable -f ${holder.owner.name} && docker plugin enable ${holder.owner.name}`;
    return DRIVER_KINDS.map((kind) => ({
      name: `lanplug/${kind} (managed)`,
      path: managedPeerSocket(options.stateDir, kind),
      kind: 'NetworkDriver',
      restart,
    }));
  }
  const restart = 'systemctl restart lanplug';
  return [
    { name: 'lanplug-macvlan', kind: 'NetworkDriver' },
    { name: 'lanplug-ipvlan', kind: 'NetworkDriver' },
    { name: 'lanplug', kind: 'IpamDriver' },
    { name: 'lanplug-dhcp', kind: 'IpamDriver' },
  ].map((s) => ({ ...s, path: join(options.pluginDir, `${s.name}.sock`), restart }));
}

/** The plugin sockets, asked at once (a hung daemon costs one timeout, not one per socket), told in order. */
export async function socketChecks(options: DoctorOptions, add: Add): Promise<void> {
  const told = await Promise.all(socketsToCheck(options).map(checkSocket));
  for (const [check, status, detail, fix] of told) add(check, status, detail, fix);
}

type Told = [check: string, status: CheckStatus, detail: string, fix?: string];

async function checkSocket({ name, path, kind, restart }: ReturnType<typeof socketsToCheck>[number]): Promise<Told> {
  const check = `socket ${name}`;
  try {
    const st = lstatSync(path);
    if (!st.isSocket()) return [check, 'fail', `${path} is not a socket`, `rm ${path} && systemctl restart lanplug`];
    const mode = st.mode & 0o777;
    if (st.uid !== 0 || mode !== 0o600)
      return [
        check,
        'fail',
        `${path} is mode ${mode.toString(8)} owned by uid ${st.uid}; it must be 600 and root's`,
        restart,
      ];
  } catch {
    return [
      check,
      'fail',
      `${path} does not exist: Docker cannot find the ${name} driver`,
      'lanplug install (or: lanplug daemon)',
    ];
  }
  try {
    const answer = await unixHttp(path, 'POST', '/Plugin.Activate', '{}', 3_000);
    const implemented = (JSON.parse(answer.body) as { Implements?: unknown }).Implements;
    if (answer.status === 200 && Array.isArray(implemented) && implemented.includes(kind))
      return [check, 'ok', `${path} answers`];
    return [check, 'fail', `${path} answered ${answer.status} ${answer.body.slice(0, 100)}`, restart];
  } catch (err) {
    return [check, 'fail', `${path} does not answer (${err instanceof Error ? err.message : String(err)})`, restart];
  }
}
