/**
 * Shared pools (`--store etcd://...`) in `lanplug status` and `lanplug
 * doctor`: the running daemon holds the etcd connection and its settings, so
 * both ask it over the control socket (api/control.ts) and show its report.
 */
import type { SharedPoolsReport } from '../ipam/shared-report';
import { isLocked } from '../state/lock';
import type { ControlClient } from './control-client';

/** The running daemon's report; null when no daemon runs here or its pools are not shared. */
export async function askSharedPools(control: ControlClient): Promise<SharedPoolsReport | null> {
  if (!isLocked(control.stateDir)) return null;
  const answer = await control.ask('POST', '/Lanplug.SharedPools', '{}', 15_000);
  if (answer.status === 404) return null; // a daemon from before shared pools
  const parsed = JSON.parse(answer.body) as { Shared?: unknown; Report?: unknown; Err?: unknown };
  if (answer.status !== 200)
    throw new Error(
      `the daemon could not report its shared pools: ${typeof parsed.Err === 'string' ? parsed.Err : answer.body}`,
    );
  if (parsed.Shared !== true) return null;
  const report = parsed.Report as SharedPoolsReport;
  if (typeof report.hostId !== 'string' || !Array.isArray(report.members) || !Array.isArray(report.holdings))
    throw new Error('the daemon sent a shared-pools report lanplug does not understand');
  return report;
}

/** `lanplug status`: per shared pool, its users, then who holds what (host, kind, MAC). */
export function formatSharedPools(report: SharedPoolsReport): string {
  const lines = [
    `shared pools on etcd (${report.members.map((m) => m.endpoint).join(', ')}) as host ${report.hostId}; registered: ${report.registered.join(', ') || 'none'}`,
  ];
  if (report.refusal !== undefined) lines.push(`  this host is not registered: ${report.refusal}`);
  if (report.error !== undefined) lines.push(`  could not read the pools: ${report.error}`);
  for (const pool of report.pools) {
    lines.push(
      `pool ${pool.poolId}  defined by ${pool.definedBy}  used by ${pool.users.join(', ') || '-'}  gateway=${pool.gateway ?? '-'}`,
    );
    for (const h of report.holdings.filter((x) => x.poolId === pool.poolId))
      lines.push(`  ${h.address}  ${h.kind}  host=${h.host}${h.mac === null ? '' : `  mac=${h.mac}`}`);
  }
  return lines.join('\n') + '\n';
}

type Add = (check: string, status: 'ok' | 'warn' | 'fail', detail: string, fix?: string) => void;

/** Most a member's clock may differ from this host's before the 15 s host lease means something else. */
const SKEW_WARN_MS = 2_000;

/** `lanplug doctor`: reachability and quorum, clocks against the lease, and this host against etcd. */
export function sharedPoolChecks(report: SharedPoolsReport, add: Add): void {
  const answered = report.members.filter((m) => m.error === undefined);
  for (const m of report.members.filter((x) => x.error !== undefined))
    add(`etcd ${m.endpoint}`, 'warn', `no answer: ${m.error ?? ''}`, 'check the member (etcdctl endpoint health)');
  const leaders = new Set(answered.map((m) => m.leader).filter((l) => l !== undefined && l !== '0'));
  const quorum = answered.length * 2 > report.members.length && leaders.size === 1;
  add(
    'etcd quorum',
    quorum ? 'ok' : 'fail',
    quorum
      ? `${answered.length} of ${report.members.length} members answer, one leader (etcd ${answered[0]?.version ?? '?'})`
      : `${answered.length} of ${report.members.length} members answer, ${leaders.size} leader(s) seen: new containers on shared pools fail until etcd has a quorum`,
    quorum ? undefined : 'bring etcd members back (etcdctl endpoint status --cluster)',
  );
  const skews = answered.flatMap((m) => (m.skewMs === undefined ? [] : [Math.abs(m.skewMs)]));
  const worst = Math.max(0, ...skews);
  add(
    'etcd clock',
    worst > SKEW_WARN_MS ? 'warn' : 'ok',
    `largest difference to a member's clock: ${(worst / 1000).toFixed(1)} s (the host lease is ${report.leaseSeconds} s)`,
    worst > SKEW_WARN_MS ? 'synchronise clocks (chrony or systemd-timesyncd)' : undefined,
  );
  // Known here, whether or not etcd answers.
  for (const owed of report.owedReleases ?? [])
    add(
      `shared pool ${owed.poolId}`,
      'warn',
      `etcd still lists this host as a user, though Docker removed its network here (release failing since ${owed.since}: ${owed.error}); the periodic check retries it`,
      'lanplug gc (once etcd answers)',
    );
  if (report.error !== undefined) {
    add('shared pools', 'fail', `could not be read: ${report.error}`);
    return;
  }
  if (report.refusal !== undefined)
    add(
      'shared pools: registration',
      'fail',
      `not registered, so nothing is allocated here: ${report.refusal}`,
      'start this daemon with --host-id NAME, a name no other host of the fleet uses',
    );
  else
    add(
      'shared pools: registration',
      report.registered.includes(report.hostId) ? 'ok' : 'fail',
      report.registered.includes(report.hostId)
        ? `host ${report.hostId} is registered; ${report.pools.length} pool(s), ${report.holdings.length} address(es) held fleet-wide`
        : `host ${report.hostId} is not registered: it cannot allocate on shared pools`,
    );
  add(
    'shared pools: this host',
    report.unrecorded.length > 0 ? 'fail' : report.unheld.length > 0 ? 'warn' : 'ok',
    report.unrecorded.length > 0
      ? `containers here hold ${report.unrecorded.join(', ')}, which etcd does not record as this host's: another host may hand them out`
      : report.unheld.length > 0
        ? `etcd records ${report.unheld.join(', ')} as this host's, and no container here holds them (freed by the next checks)`
        : 'every address containers here hold is recorded in etcd as this host’s, and no other',
    report.unrecorded.length > 0 ? 'restart those containers: they claim their address again' : undefined,
  );
}
