/**
 * `lanplug doctor`'s state checks: the state directory (and the room and inodes left on its file system),
 * the daemon holding it, the database (every row readable), what `lanplug gc` would change in the
 * kernel, and what the records say of the host and the LAN: host-access shims, addresses seen on
 * the LAN, addresses lost to another host, DHCP leases.
 */
import { lstatSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { NoAnswerError } from '../../api/unix-http';
import { routesThrough, wantedRoutes } from '../../driver/host-access';
import { leasedIn, slaacRoutesOf } from '../../driver/slaac-host-access';
import { recordedLinkGroups } from '../../driver/link-ownership';
import { shortId } from '../../model/network';
import { shimLinkName } from '../../driver/names';
import { reconcile } from '../../driver/reconcile';
import { openRtnl, type Rtnl } from '../../link/rtnl';
import { silentLogger } from '../../log';
import { leaseExpiresAt } from '../../model/lease';
import { formatPrefix } from '../../net/address';
import { describeHolder, isLocked, lockHolder } from '../../state/lock';
import { DATABASE_FILE, SqliteStore, type SyncFailure } from '../../state/sqlite';
import { stateDirProblem } from '../../state/state-dir';
import { NotAskedError, type ControlClient } from '../control-client';
import { describeLease } from '../status';
import type { Add, DoctorOptions } from './check';

/**
 * The daemon's failed fsyncs as doctor takes them: `since` and `count` null from a daemon older
 * than them (it told only its last failure).
 */
export type ToldSyncFailure = Omit<SyncFailure, 'since' | 'count'> & { since: number | null; count: number | null };

/**
 * What doctor learned of the running daemon's failed fsyncs: the failures, none (or nothing to
 * learn: no daemon, an older one), or why it does not know (`unasked`: the daemon did not answer).
 */
export type SyncFailureAnswer = ToldSyncFailure | null | { unasked: string };

/** `syncFailure`: what the running daemon's store says of its failed fsyncs (askSyncFailure). */
export function stateChecks(options: DoctorOptions, add: Add, syncFailure: SyncFailureAnswer = null): void {
  const dir = options.stateDir;
  if (!stateDirChecks(dir, add, syncFailure)) return;
  const store = openStore(dir, add);
  if (store === null) return;
  try {
    recordChecks(store, add);
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

/** Below this much room in the state directory's file system the daemon's next writes may fail (each adds WAL pages). */
const STATE_ROOM_BYTES = 1 << 20;

/**
 * Below this many free inodes the daemon's next start may fail: SQLite makes the database's -wal
 * and -shm files when it opens it, and the daemon its sockets in the directory.
 */
const STATE_INODES = 16;

/**
 * What root may still make in the file system holding `dir`: bytes (its reserved blocks included)
 * and inodes (null: the file system does not count them, as btrfs); null: unknown.
 */
function freeRoom(dir: string): { bytes: number; inodes: number | null } | null {
  try {
    const fs = statfsSync(dir);
    return { bytes: fs.bfree * fs.bsize, inodes: fs.files > 0 ? fs.ffree : null };
  } catch {
    return null;
  }
}

/**
 * The running daemon's fsyncs after a commit that failed since it started (Lanplug.SyncFailure):
 * only the daemon knows, doctor's read-only store never fsyncs. Null when no daemon runs, when it is
 * older than the route, or when it cannot be asked (the daemon health check says why); `unasked`
 * when it took the ask and did not answer, or did not answer an earlier one (then it is not asked).
 */
export async function askSyncFailure(control: ControlClient): Promise<SyncFailureAnswer> {
  if (!isLocked(control.stateDir)) return null;
  try {
    const answer = await control.ask('POST', '/Lanplug.SyncFailure', '{}');
    if (answer.status !== 200) return null; // a daemon older than the route
    const told = (JSON.parse(answer.body) as { SyncFailure?: unknown } | null)?.SyncFailure;
    if (told === null) return null;
    // An answer doctor cannot take whole is said, not taken for "no failure".
    return parseSyncFailure(told) ?? { unasked: "the daemon's answer was not understood" };
  } catch (err) {
    if (err instanceof NotAskedError) return { unasked: err.message };
    if (err instanceof NoAnswerError) return { unasked: `the daemon did not answer (${err.message})` };
    if (err instanceof SyntaxError) return { unasked: "the daemon's answer was not understood" };
    return null;
  }
}

/** A time a Date can print (toISOString throws outside ±8.64e15 ms). */
function printableTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(new Date(value).getTime());
}

/** Text doctor may print: no control characters (a terminal's escapes), and not longer than `max`. */
function printableText(value: unknown, max: number): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) return false;
  return [...value].every((c) => {
    const code = c.codePointAt(0) ?? 0;
    return code >= 0x20 && (code < 0x7f || code > 0x9f);
  });
}

/**
 * The daemon's answer, taken only whole: doctor prints its fields. `since` and `count` both, or
 * neither (a daemon older than them: the last failure alone).
 */
export function parseSyncFailure(value: unknown): ToldSyncFailure | null {
  if (typeof value !== 'object' || value === null) return null;
  const { since, count, at, code, path } = value as Record<string, unknown>;
  if (!printableTime(at) || !printableText(code, 200) || !printableText(path, 4_096)) return null;
  if (since === undefined && count === undefined) return { since: null, count: null, at, code, path };
  if (!printableTime(since) || typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1) return null;
  return { since, count, at, code, path };
}

/** The state directory line's words for the daemon's failed fsyncs. */
function describeSyncFailure(dir: string, f: ToldSyncFailure): string {
  const last = new Date(f.at).toISOString();
  if (f.since === null || f.count === null)
    return `${dir}: its disk failed to confirm a write of the daemon (fsync of ${f.path} failed with ${f.code} at ${last}, the last such failure since the daemon started); the database has the write, but a power loss may take it, and no later fsync can confirm it`;
  if (f.count === 1)
    return `${dir}: its disk failed to confirm a write of the daemon (fsync of ${f.path} failed with ${f.code} at ${last}); the database has it, but a power loss may take it, and no later fsync can confirm it`;
  return `${dir}: its disk failed to confirm writes of the daemon: fsync failed ${f.count} times since the daemon started, first at ${new Date(f.since).toISOString()}, last at ${last} (${f.code} on ${f.path}); the database has them, but a power loss may take them, and no later fsync can confirm them`;
}

/** The state directory (root's, closed to others, with room to write) and the daemon holding it; false when there is none to read. */
function stateDirChecks(dir: string, add: Add, syncFailure: SyncFailureAnswer): boolean {
  try {
    const problem = stateDirProblem(lstatSync(dir));
    if (problem !== null) {
      add(
        'state directory',
        'fail',
        `${dir} ${problem}`,
        `use a root-owned directory of mode 700, e.g. --state-dir /var/lib/lanplug`,
      );
      return false;
    }
  } catch {
    add(
      'state directory',
      'warn',
      `${dir} does not exist yet: the daemon creates it at its first start`,
      'lanplug install (or: lanplug daemon)',
    );
    return false;
  }
  const free = freeRoom(dir);
  const noSpace = free !== null && free.bytes < STATE_ROOM_BYTES;
  const inodes = free?.inodes ?? null;
  const noInodes = inodes !== null && inodes < STATE_INODES;
  if (noSpace)
    add(
      'state directory',
      'fail',
      `${dir}: its file system has ${free.bytes} bytes free; every request that records something fails until there is room`,
      `free space on it (df ${dir})`,
    );
  if (noInodes)
    add(
      'state directory',
      'fail',
      `${dir}: its file system has ${inodes} free inodes; the daemon cannot open its database at its next start (SQLite makes its -wal and -shm files there) until there are more`,
      `remove files on it (df -i ${dir})`,
    );
  // A failed fsync is no fault doctor can see in the directory: it is what the disk told the daemon,
  // said beside a full file system too (a dying disk and a full one are two things to look at).
  const unasked = syncFailure !== null && 'unasked' in syncFailure ? syncFailure.unasked : null;
  if (syncFailure !== null && !('unasked' in syncFailure))
    add(
      'state directory',
      'warn',
      describeSyncFailure(dir, syncFailure),
      'check the disk (dmesg, smartctl; df for a thin-provisioned one); the warning stays until the daemon restarts',
    );
  else if (!noSpace && !noInodes)
    add(
      'state directory',
      unasked === null ? 'ok' : 'warn',
      `${dir} (owner root, no group or world write)${unasked === null ? '' : `; the daemon's failed fsyncs: ${unasked}`}`,
    );
  else if (unasked !== null) add('state directory', 'warn', `${dir}: the daemon's failed fsyncs: ${unasked}`);
  if (isLocked(dir)) {
    const holder = lockHolder(dir);
    // A plugin's pid is in its own pid namespace: it is named instead.
    const who =
      holder === null ? '' : holder.owner.kind === 'plugin' ? `: ${describeHolder(holder)}` : ` (pid ${holder.pid})`;
    add('daemon', 'ok', `running${who}`);
  } else add('daemon', 'fail', `no lanplug daemon holds ${dir}`, 'systemctl start lanplug (or: lanplug daemon)');
  return true;
}

/** The database, read-only; null (and why, as a check) when it cannot be opened. */
function openStore(dir: string, add: Add): SqliteStore | null {
  try {
    return SqliteStore.openReadOnly(dir);
  } catch (err) {
    const missing = err instanceof Error && /does not exist/.test(err.message);
    add(
      'state database',
      missing ? 'warn' : 'fail',
      err instanceof Error ? err.message : String(err),
      missing ? undefined : `see the line above; the file is ${join(dir, DATABASE_FILE)}`,
    );
    return null;
  }
}

/** Every row readable, what `lanplug gc` would change in the kernel, and what the records say of the host and LAN. */
function recordChecks(store: SqliteStore, add: Add): void {
  // As the daemon sees the links: its own carry the state directory's link group.
  const rtnl = openRtnl({ group: recordedLinkGroups(store)?.live ?? 0 });
  try {
    const report = reconcile(rtnl, store, silentLogger, { dryRun: true, leases: store });
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
    const endpoints = store.listEndpoints(spec.networkId);
    // `-o ipv6=slaac`: also the addresses the containers formed (read in their namespaces).
    const wanted =
      wantedRoutes(spec, endpoints).length +
      slaacRoutesOf(rtnl, spec, endpoints, shim, () => undefined, leasedIn(store)).length;
    add(
      what,
      shim.up && routes.length === wanted ? 'ok' : 'fail',
      `shim ${name} on ${spec.parent.name}${shim.up ? '' : ' (down)'} holds ${addresses.join(', ') || 'no address'}; ` +
        `routes to ${routes.length} of ${wanted} container addresses${routes.length === 0 ? '' : ` (${routes.join(', ')})`}`,
      shim.up && routes.length === wanted ? undefined : 'lanplug gc',
    );
  }
}
