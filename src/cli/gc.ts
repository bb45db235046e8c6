/**
 * `lanplug gc`: reconcile now. A running daemon holds the state directory, so
 * it is asked over its control socket; with no daemon, gc takes the lock and
 * does the same work itself.
 */
import { controlSocketPath } from '../api/control';
import { DockerEngine } from '../api/docker/engine';
import { unixHttp } from '../api/unix-http';
import { cniServices } from '../driver/cni-services';
import { NetworkDriver } from '../driver/network-driver';
import { LanplugError } from '../errors';
import { holdLinkGroup, linkGroupsOf, openOwnRtnl } from '../driver/link-ownership';
import { createLogger } from '../log';
import { isLocked, StateLock } from '../state/lock';
import { SqliteStore } from '../state/sqlite';
import { checkStateDir } from '../state/state-dir';
import { Housekeeping, type GcResult, type PassOptions } from '../housekeeping';
import { shortId } from '../model/network';

export async function runGc(stateDir: string, dockerSocket: string, options: PassOptions): Promise<GcResult> {
  checkStateDir(stateDir);
  if (isLocked(stateDir)) {
    const answer = await unixHttp(
      controlSocketPath(stateDir),
      'POST',
      '/Lanplug.Gc',
      JSON.stringify({ DryRun: options.dryRun, GraceMs: options.graceMs, AcceptEngine: options.acceptEngine }),
      120_000,
    );
    const parsed = JSON.parse(answer.body) as GcResult & { Err?: string };
    if (answer.status !== 200)
      throw new LanplugError('Internal', `the running daemon could not reconcile: ${parsed.Err ?? answer.body}`);
    return parsed;
  }
  const lock = StateLock.acquire(stateDir, { kind: 'gc' });
  try {
    const log = createLogger('error');
    const store = SqliteStore.open(stateDir, log);
    let held: { release(): Promise<void> } | null = null;
    try {
      // A dry run changes nothing, also not the link groups; a run acts for them as the daemon would.
      const groups = options.dryRun ? null : linkGroupsOf(store, log);
      if (groups !== null) held = await holdLinkGroup(groups, stateDir);
      const { rtnl } = openOwnRtnl(store, log, groups === null ? { dryRun: true } : { groups });
      try {
        const driver = new NetworkDriver(rtnl, store, log);
        // What the daemon's pass does but the IPAM driver's part: that needs the daemon (and its etcd session).
        const housekeeping = new Housekeeping({
          driver,
          rtnl,
          store,
          engine: new DockerEngine(dockerSocket),
          attachments: cniServices(driver, rtnl, store, log).attachments,
          log,
          graceMs: options.graceMs,
        });
        return await housekeeping.pass(options);
      } finally {
        rtnl.close();
      }
    } finally {
      await held?.release();
      store.close();
    }
  } finally {
    lock.release();
  }
}

/** One line per action, then a summary line. */
export function formatGc(result: GcResult, dryRun: boolean): string {
  const lines = result.Reconcile.actions.map(
    (a) => `${a.action} ${a.target}: ${a.why} — ${a.outcome}${a.error === undefined ? '' : ` (${a.error})`}`,
  );
  const f = result.Forgotten;
  if (!f.asked) lines.push(`dockerd was not asked which rows it has forgotten: ${f.error ?? 'no answer'}`);
  if (f.kept !== undefined)
    lines.push(
      `kept ${f.kept.networks.length} network(s) dockerd ${f.kept.engine} does not know: they came from ${f.kept.theirs === null ? 'an engine not yet seen' : `engine ${f.kept.theirs}`}; is --docker-host lanplug's dockerd? (if Docker was reinstalled and these networks are gone with it: lanplug gc --accept-engine)`,
    );
  for (const id of f.networks)
    lines.push(`${dryRun ? 'would drop' : 'dropped'} network ${shortId(id)}: Docker no longer knows it`);
  for (const id of f.endpoints)
    lines.push(`${dryRun ? 'would drop' : 'dropped'} endpoint ${shortId(id)}: Docker no longer knows it`);
  for (const what of result.Vanished ?? []) lines.push(`${dryRun ? 'would remove' : 'removed'} ${what}`);
  const identities = result.Identities;
  if (identities !== undefined && 'error' in identities)
    lines.push(`identity reservations were not checked: ${identities.error}`);
  else
    for (const what of identities?.expired ?? [])
      lines.push(
        `${dryRun ? 'would drop' : 'dropped'} reservation ${what}: no container held it for --identity-expire`,
      );
  const claims = result.Claims;
  if (claims !== undefined && 'error' in claims) lines.push(`IPAM claims were not checked: ${claims.error}`);
  else if (claims !== undefined) {
    for (const address of claims.released)
      lines.push(`${dryRun ? 'would free' : 'freed'} address ${address}: claimed, and no endpoint holds it`);
    for (const address of claims.suspected)
      lines.push(`address ${address} has no endpoint: freed on the next pass if it still has none`);
  }
  const absent = result.AbsentHosts;
  if (absent !== undefined && 'error' in absent) lines.push(`absent hosts were not checked: ${absent.error}`);
  else if (absent !== undefined) {
    for (const address of absent.reclaimed)
      lines.push(`reclaimed address ${address}: its host went away and it is silent`);
    for (const address of absent.kept)
      lines.push(`kept address ${address}: its host is unregistered but it answers on the LAN`);
    for (const w of absent.waiting)
      lines.push(`host ${w.host} is unregistered: its addresses may be reclaimed in ${w.secondsLeft} s`);
    for (const b of absent.busy)
      lines.push(`host ${b.host} is unregistered: host ${b.by} is reclaiming its addresses now`);
    if (absent.left > 0)
      lines.push(`${absent.left} address(es) of unregistered hosts not probed on this pass: the next pass goes on`);
  }
  const releases = result.PoolReleases;
  if (releases !== undefined && 'error' in releases)
    lines.push(`pool releases etcd had not taken were not retried: ${releases.error}`);
  else if (releases !== undefined) {
    for (const poolId of releases.released)
      lines.push(`released shared pool ${poolId}: etcd had not taken this host leaving it`);
    for (const p of releases.pending)
      lines.push(
        `shared pool ${p.poolId}: etcd still lists this host as a user (release failing since ${p.since}: ${p.error})`,
      );
  }
  const here = result.ReclaimedHere;
  if (here !== undefined && 'error' in here) lines.push(`reclaimed addresses were not looked for: ${here.error}`);
  else if (here !== undefined) {
    for (const address of here.claimedBack)
      lines.push(`claimed address ${address} again: reclaimed while this host was away, nobody had taken it`);
    for (const address of here.lost)
      lines.push(`address ${address} is lost: another host holds it now (lanplug doctor says which container)`);
  }
  const r = result.Reconcile;
  const failed = r.actions.filter((a) => a.outcome === 'failed').length;
  lines.push(
    `${dryRun ? 'dry run: ' : ''}${r.networks} networks, ${r.endpoints} endpoints, ${r.leftovers} leftovers, ${r.links} links looked at; ${r.actions.length} actions, ${failed} failed`,
  );
  return lines.join('\n') + '\n';
}
