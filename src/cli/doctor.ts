/**
 * `lanplug doctor`: what this host can do and what is wrong with lanplug on
 * it, one line per check (✔ fine, ⚠ a limit worth knowing, ✘ broken) with
 * the command that fixes it. Exit status 1 when anything is broken.
 *
 * Read-only: the kernel is probed in a throw-away namespace, the store is
 * opened read-only, and what `lanplug gc` would do is computed, not done.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { decodeAnswer, encodeInvocation } from '../api/cni/protocol';
import { CNI_SOCKET_NAME } from '../api/cni/server';
import { CNI_BIN_DIRS, CNI_EXECUTABLES } from '../install/cni';
import { unixHttp } from '../api/unix-http';
import { routesThrough, wantedRoutes } from '../driver/host-access';
import { shimLinkName, shortId } from '../driver/names';
import { reconcile } from '../driver/reconcile';
import { probeKernel } from '../link/probe';
import { openRtnl, type Rtnl } from '../link/rtnl';
import { leaseExpiresAt } from '../model/lease';
import { formatPrefix } from '../net/address';
import { describeLease } from './status';
import { silentLogger } from '../log';
import { describeHolder, isLocked, lockHolder } from '../state/lock';
import { engineFeatures } from '../api/docker/engine-version';
import { managedPeerSocket } from '../api/docker/sockets';
import { recordedLinkGroups } from '../driver/link-ownership';
import { DRIVER_KINDS } from '../model/network';
import { DATABASE_FILE, SqliteStore } from '../state/sqlite';
import { stateDirProblem } from '../state/state-dir';
import { askSharedPools, sharedPoolChecks } from './shared-pools';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  check: string;
  status: CheckStatus;
  detail: string;
  /** The command (or step) that fixes it, when it is not fine. */
  fix?: string;
}

export interface DoctorOptions {
  stateDir: string;
  pluginDir: string;
  dockerSocket: string;
}

/** Where dockerd 20.10 looks for legacy plugin sockets: a constant in moby's pkg/plugins. */
const DOCKER_PLUGIN_DIR = '/run/docker/plugins';

export async function runDoctor(options: DoctorOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (check: string, status: CheckStatus, detail: string, fix?: string): void => {
    checks.push({ check, status, detail, ...(fix === undefined ? {} : { fix }) });
  };
  if (process.getuid?.() !== 0)
    add(
      'root',
      'fail',
      'not running as root: links, namespaces and the plugin directory need it',
      'sudo lanplug doctor',
    );
  kernelChecks(add);
  await dockerChecks(options, add);
  await socketChecks(options, add);
  await cniChecks(options, add);
  stateChecks(options, add);
  await sharedChecks(options, add);
  return checks;
}

type Add = (check: string, status: CheckStatus, detail: string, fix?: string) => void;

/** Only where the daemon runs with --store etcd://...: etcd and this host's part of the shared pools. */
async function sharedChecks(options: DoctorOptions, add: Add): Promise<void> {
  try {
    const report = await askSharedPools(options.stateDir);
    if (report !== null) sharedPoolChecks(report, add);
  } catch (err) {
    add('shared pools', 'fail', err instanceof Error ? err.message : String(err));
  }
}

function kernelChecks(add: Add): void {
  let support;
  try {
    support = probeKernel();
  } catch (err) {
    add(
      'kernel',
      'fail',
      `could not probe the kernel in a throw-away namespace: ${err instanceof Error ? err.message : String(err)}`,
      'run as root',
    );
    return;
  }
  const modes = (table: Record<string, string | null>): { ok: string[]; missing: string[] } => ({
    ok: Object.keys(table).filter((m) => table[m] === null),
    missing: Object.keys(table).filter((m) => table[m] !== null),
  });
  const macvlan = modes(support.macvlan);
  if (macvlan.ok.length === 0)
    add('kernel: macvlan', 'fail', `no macvlan support: ${support.macvlan['bridge'] ?? ''}`, 'modprobe macvlan');
  else
    add(
      'kernel: macvlan',
      macvlan.missing.length === 0 ? 'ok' : 'warn',
      `modes ${macvlan.ok.join(', ')}${macvlan.missing.length === 0 ? '' : `; not ${macvlan.missing.join(', ')}`}`,
    );
  const ipvlan = modes(support.ipvlan);
  if (ipvlan.ok.length === 0)
    add('kernel: ipvlan', 'warn', 'no ipvlan support: lanplug-ipvlan networks cannot be created', 'modprobe ipvlan');
  else
    add(
      'kernel: ipvlan',
      ipvlan.missing.length === 0 ? 'ok' : 'warn',
      `modes ${ipvlan.ok.join(', ')}${ipvlan.missing.length === 0 ? '' : `; not ${ipvlan.missing.join(', ')}`}`,
    );
  if (support.vlan === null) add('kernel: 802.1Q', 'ok', 'VLAN sub-interfaces (-o parent=eth0.50)');
  else
    add(
      'kernel: 802.1Q',
      'warn',
      `no 802.1Q support: -o parent=eth0.50 cannot make a sub-interface (${support.vlan})`,
      'modprobe 8021q',
    );
  if (support.dummy === null) add('kernel: dummy', 'ok', 'private parents are dummy links, as with Docker');
  else
    add(
      'kernel: dummy',
      'warn',
      'no dummy driver: networks without a parent get an empty bridge as their private parent instead',
      'modprobe dummy',
    );
}

async function dockerChecks(options: DoctorOptions, add: Add): Promise<void> {
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

/** The CNI plugins, when installed: lanplug's, runnable, and the daemon's CNI socket answering. */
async function cniChecks(options: DoctorOptions, add: Add): Promise<void> {
  const installed = CNI_BIN_DIRS.flatMap((dir) => CNI_EXECUTABLES.map((name) => join(dir, name))).filter((path) =>
    existsSync(path),
  );
  if (installed.length === 0) {
    add(
      'cni',
      'ok',
      'CNI plugins not installed (`lanplug install --cni` adds them for Podman, containerd, Kubernetes)',
    );
    return;
  }
  for (const path of installed) {
    const version = spawnSync(path, [], { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8', timeout: 5_000 });
    if (version.status !== 0 || !version.stdout.includes('supportedVersions'))
      add(`cni ${path}`, 'fail', `${path} does not answer VERSION`, 'lanplug install --cni');
  }
  const socket = join(options.stateDir, CNI_SOCKET_NAME);
  const answer = await askCniSocket(socket).catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
  if (answer === true) add('cni', 'ok', `${installed.join(', ')} installed; the daemon answers on ${socket}`);
  else
    add(
      'cni',
      'fail',
      `${installed.join(', ')} installed, but ${socket} does not answer (${answer}): every CNI ADD fails with code 11`,
      'systemctl restart lanplug (or: lanplug daemon)',
    );
}

/** A VERSION call over the CNI socket, as the executable makes it. */
function askCniSocket(path: string): Promise<true | string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer in 3 s'));
    }, 3_000);
    socket.on('connect', () =>
      socket.end(encodeInvocation({ env: new Map([['CNI_COMMAND', 'VERSION']]), stdin: '{}' })),
    );
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      const answer = decodeAnswer(Buffer.concat(chunks));
      resolve(answer?.exitCode === 0 ? true : `answered ${answer === null ? 'garbage' : `exit ${answer.exitCode}`}`);
    });
  });
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

async function socketChecks(options: DoctorOptions, add: Add): Promise<void> {
  for (const { name, path, kind, restart } of socketsToCheck(options)) {
    let mode: number;
    try {
      const st = lstatSync(path);
      if (!st.isSocket()) {
        add(`socket ${name}`, 'fail', `${path} is not a socket`, `rm ${path} && systemctl restart lanplug`);
        continue;
      }
      mode = st.mode & 0o777;
      if (st.uid !== 0 || mode !== 0o600) {
        add(
          `socket ${name}`,
          'fail',
          `${path} is mode ${mode.toString(8)} owned by uid ${st.uid}; it must be 600 and root's`,
          restart,
        );
        continue;
      }
    } catch {
      add(
        `socket ${name}`,
        'fail',
        `${path} does not exist: Docker cannot find the ${name} driver`,
        'lanplug install (or: lanplug daemon)',
      );
      continue;
    }
    try {
      const answer = await unixHttp(path, 'POST', '/Plugin.Activate', '{}', 3_000);
      const implemented = (JSON.parse(answer.body) as { Implements?: unknown }).Implements;
      if (answer.status === 200 && Array.isArray(implemented) && implemented.includes(kind))
        add(`socket ${name}`, 'ok', `${path} answers`);
      else add(`socket ${name}`, 'fail', `${path} answered ${answer.status} ${answer.body.slice(0, 100)}`, restart);
    } catch (err) {
      add(
        `socket ${name}`,
        'fail',
        `${path} does not answer (${err instanceof Error ? err.message : String(err)})`,
        restart,
      );
    }
  }
}

function stateChecks(options: DoctorOptions, add: Add): void {
  const dir = options.stateDir;
  try {
    const problem = stateDirProblem(lstatSync(dir));
    if (problem !== null) {
      add(
        'state directory',
        'fail',
        `${dir} ${problem}`,
        `use a root-owned directory of mode 700, e.g. --state-dir /var/lib/lanplug`,
      );
      return;
    }
  } catch {
    add(
      'state directory',
      'warn',
      `${dir} does not exist yet: the daemon creates it at its first start`,
      'lanplug install (or: lanplug daemon)',
    );
    return;
  }
  add('state directory', 'ok', `${dir} (owner root, no group or world write)`);
  if (isLocked(dir)) {
    const holder = lockHolder(dir);
    // A plugin's pid is in its own pid namespace: it is named instead.
    const who =
      holder === null ? '' : holder.owner.kind === 'plugin' ? `: ${describeHolder(holder)}` : ` (pid ${holder.pid})`;
    add('daemon', 'ok', `running${who}`);
  } else add('daemon', 'fail', `no lanplug daemon holds ${dir}`, 'systemctl start lanplug (or: lanplug daemon)');
  let store: SqliteStore;
  try {
    store = SqliteStore.openReadOnly(dir);
  } catch (err) {
    const missing = err instanceof Error && /does not exist/.test(err.message);
    add(
      'state database',
      missing ? 'warn' : 'fail',
      err instanceof Error ? err.message : String(err),
      missing ? undefined : `see the line above; the file is ${join(dir, DATABASE_FILE)}`,
    );
    return;
  }
  try {
    // As the daemon sees the links: its own carry the state directory's link group.
    const rtnl = openRtnl({ group: recordedLinkGroups(store)?.live ?? 0 });
    try {
      const report = reconcile(rtnl, store, silentLogger, { dryRun: true });
      add(
        'state database',
        'ok',
        `schema version ${store.foundVersion}, ${report.networks} networks, ${report.endpoints} endpoints, every row readable`,
      );
      const leftovers = store.listLeftovers();
      if (report.actions.length === 0 && leftovers.length === 0)
        add('kernel vs store', 'ok', `${report.links} links agree with the store`);
      for (const a of report.actions) add('kernel vs store', 'fail', `${a.action} ${a.target}: ${a.why}`, 'lanplug gc');
      hostAccessChecks(rtnl, store, add);
      lanChecks(store, add);
      lostChecks(store, add);
      leaseChecks(store, add);
    } finally {
      rtnl.close();
    }
  } catch (err) {
    add(
      'state database',
      'fail',
      err instanceof Error ? err.message : String(err),
      'lanplug gc after fixing the row it names',
    );
  } finally {
    store.close();
  }
}

/**
 * What the LAN was seen doing: a device claiming a container's address (✘ while
 * it is recent: someone must decide who keeps it) and addresses lanplug keeps
 * away from containers because a device answered for them (⚠, for the record).
 */
function lanChecks(store: SqliteStore, add: Add): void {
  const recent = Date.now() - 3_600_000;
  for (const s of store.listSightings()) {
    const when = new Date(s.lastSeen).toISOString();
    if (s.networkId !== null) {
      add(
        `address conflict ${s.address}`,
        s.lastSeen >= recent ? 'fail' : 'warn',
        `a device with MAC ${s.mac} claims the address of a container of network ${shortId(s.networkId)} (${s.how}), last seen ${when}; lanplug defends it but never stops the container`,
        'find that device on the LAN and give it another address',
      );
    } else {
      add(
        `LAN address ${s.address}`,
        'warn',
        `in use by ${s.mac} (${s.how}), last seen ${when}: lanplug gives it to no container`,
      );
    }
  }
}

/**
 * Addresses of endpoints here that another host reclaimed while this host was away (shared pools,
 * ipam/reclaimed.ts) and holds now: ✘ until the container is restarted or removed.
 */
function lostChecks(store: SqliteStore, add: Add): void {
  for (const lost of store.listLostAddresses())
    add(
      `lost address ${lost.address}`,
      'fail',
      `endpoint ${shortId(lost.endpointId)} of network ${shortId(lost.networkId)} still uses it, but host ${lost.reclaimedBy} reclaimed it at ${lost.reclaimedAt} while this host was away (unregistered in etcd and silent on the LAN longer than --reclaim-after), and a container of host ${lost.heldBy} holds it now; lanplug no longer defends it here`,
      `restart that container (docker network inspect ${shortId(lost.networkId)} names it): it gets a new address`,
    );
}

/**
 * Each DHCP lease (✔ renewing as it should; ⚠ renewals failing; ✘ expired
 * without a renewal: the server may give the address to someone else).
 */
function leaseChecks(store: SqliteStore, add: Add): void {
  const now = Date.now();
  for (const record of store.listLeases()) {
    for (const lease of record.leases) {
      const expired = leaseExpiresAt(lease) < now;
      add(
        `dhcp lease ${lease.address.address.text}`,
        expired ? 'fail' : record.failures > 0 ? 'warn' : 'ok',
        `endpoint ${shortId(record.endpointId)}: ${describeLease(record, lease)}`,
        expired || record.failures > 0
          ? `check that the DHCP server ${lease.serverId.text} is up and reachable through the network's parent`
          : undefined,
      );
    }
  }
}

/** Each host-access network: its shim, the host's addresses on it, and its routes. */
function hostAccessChecks(rtnl: Rtnl, store: SqliteStore, add: Add): void {
  for (const network of store.listNetworks()) {
    const spec = network.spec;
    if (spec.hostAccess === null) continue;
    const name = shimLinkName(spec.networkId);
    const what = `host access ${shortId(spec.networkId)}`;
    const shim = rtnl.getLink(name);
    if (shim === null) {
      add(what, 'fail', `shim ${name} is missing (is parent ${spec.parent.name} there?)`, 'lanplug gc');
      continue;
    }
    const addresses = ([4, 6] as const)
      .flatMap((family) => rtnl.listAddresses(family))
      .filter((a) => a.index === shim.index && !a.prefix.address.text.startsWith('fe80'))
      .map((a) => formatPrefix(a.prefix));
    const routes = routesThrough(rtnl, shim).map(formatPrefix);
    const wanted = wantedRoutes(spec, store.listEndpoints(spec.networkId)).length;
    add(
      what,
      shim.up && routes.length === wanted ? 'ok' : 'fail',
      `shim ${name} on ${spec.parent.name}${shim.up ? '' : ' (down)'} holds ${addresses.join(', ') || 'no address'}; ` +
        `routes to ${routes.length} of ${wanted} container addresses${routes.length === 0 ? '' : ` (${routes.join(', ')})`}`,
      shim.up && routes.length === wanted ? undefined : 'lanplug gc',
    );
  }
}

const MARK: Record<CheckStatus, string> = { ok: '✔', warn: '⚠', fail: '✘' };

export function formatChecks(checks: readonly Check[]): string {
  return (
    checks
      .map((c) => `${MARK[c.status]} ${c.check}: ${c.detail}${c.fix === undefined ? '' : ` — fix: ${c.fix}`}`)
      .join('\n') + '\n'
  );
}
