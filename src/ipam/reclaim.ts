/**
 * Addresses of a host that went away, given back to the fleet — carefully,
 * because a host that is only cut off from etcd still has containers on the
 * LAN using them (whereabouts and Calico freed live addresses; research/
 * multihost.md §5). An absent host's endpoint addresses are reclaimed only
 * when all of these hold:
 *
 *   - it has had no registration for `reclaimAfterMs` (counted in the book
 *     from the first time any host saw it absent);
 *   - the address is silent on the LAN now: two fresh ARP probes (or DAD for
 *     IPv6) from this host's probing link get no answer (a probe another
 *     device's probe for the address ended counts for nothing: hearAddress);
 *   - the claim is unchanged since it was read (compare on its revision),
 *     and the host still unregistered (in the same transaction: a host back
 *     while its addresses were probed may be starting a container on one);
 *   - no other host is reclaiming from that host at the same time (a lock on
 *     the reclaiming host's lease).
 *
 * A pass probes at most MAX_PROBES_PER_PASS claims (each hearing takes
 * ~0.4 s, more when contended): a host cut off from etcd but not from the LAN
 * answers for every address, and 750 of them would outlast the periodic
 * interval and keep `lanplug gc` waiting behind. The report says how many
 * were left; the next pass goes on after the last claim probed (kept per book
 * and absent host in this module, so that every claim has its turn).
 *
 * Where this host cannot probe (no lanplug network here on that pool, or
 * lanplug.conflict=off) nothing is reclaimed. A host that comes back finds
 * its claims where it left them, unless they were reclaimed: each reclaim
 * leaves it a record, which it reads (ipam/reclaimed.ts).
 */
import type { Logger } from '../log';
import { recordEvent } from '../metrics/events';
import type { IpAddress } from '../net/address';
import type { OwnClaim, SharedBook } from '../state/address-book';

/** At ~0.4 s a hearing, a pass probes for well under a minute: far within the default 300 s interval. */
export const MAX_PROBES_PER_PASS = 100;

/** Per book, per absent host: the last claim a pass probed (its sort key); the next pass goes on after it. */
const probedUpTo = new WeakMap<SharedBook, Map<string, string>>();

/** What the LAN says about an address now: 'unknown' when this host cannot ask. */
export type LanHearing = 'answers' | 'silent' | 'unknown';

export interface ReclaimReport {
  reclaimed: string[];
  /** Addresses of absent hosts that still answer (a host cut off from etcd, not from the LAN). */
  kept: string[];
  /** Absent hosts whose grace period has not passed, with the seconds left. */
  waiting: { host: string; secondsLeft: number }[];
  /** Absent hosts another host is reclaiming from now (it holds `reclaiming/<host>`). */
  busy: { host: string; by: string }[];
  /** Claims of absent hosts past their delay that this pass did not probe (MAX_PROBES_PER_PASS): the next one will. */
  left: number;
}

export async function reclaimAbsentHosts(
  book: SharedBook,
  hear: (poolId: string, address: IpAddress) => Promise<LanHearing>,
  log: Logger,
  options: { reclaimAfterMs: number; now?: number; maxProbes?: number },
): Promise<ReclaimReport> {
  const report: ReclaimReport = { reclaimed: [], kept: [], waiting: [], busy: [], left: 0 };
  const now = options.now ?? Date.now();
  let probes = options.maxProbes ?? MAX_PROBES_PER_PASS;
  for (const [host, since] of await book.absentHolders()) {
    const wait = since + options.reclaimAfterMs - now;
    if (wait > 0) {
      report.waiting.push({ host, secondsLeft: Math.ceil(wait / 1000) });
      continue;
    }
    if (probes <= 0) {
      report.left += (await book.endpointClaimsOf(host)).length;
      continue;
    }
    // Two hosts probing one address at once end each other's probes: one at a time.
    const lock = await book.lockReclaim(host);
    if (!lock.held) {
      report.busy.push({ host, by: lock.by });
      continue;
    }
    try {
      const turn = inTurn(book, host, await book.endpointClaimsOf(host));
      const probing = turn.slice(0, probes);
      report.left += turn.length - probing.length;
      probes -= probing.length;
      rememberProbed(book, host, probing.at(-1));
      await reclaimFrom(book, host, since, probing, hear, log, report);
    } finally {
      await lock.release().catch(() => undefined); // else it goes with this host's lease
    }
  }
  if (report.left > 0)
    log.info("absent hosts' addresses left for the next pass (a pass probes so many at most)", {
      left: report.left,
      perPass: options.maxProbes ?? MAX_PROBES_PER_PASS,
    });
  return report;
}

const claimOrder = (c: OwnClaim): string => `${c.poolId} ${c.address.text}`;
const byCodeUnits = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);

/** A host's claims from the one after the last a pass probed, round to the first. */
function inTurn(book: SharedBook, host: string, claims: OwnClaim[]): OwnClaim[] {
  const sorted = [...claims].sort((x, y) => byCodeUnits(claimOrder(x), claimOrder(y)));
  const last = probedUpTo.get(book)?.get(host);
  // After the last one probed; none after it (or none probed yet): from the first.
  const start = Math.max(0, last === undefined ? 0 : sorted.findIndex((c) => claimOrder(c) > last));
  return [...sorted.slice(start), ...sorted.slice(0, start)];
}

function rememberProbed(book: SharedBook, host: string, last: OwnClaim | undefined): void {
  if (last === undefined) return;
  const hosts = probedUpTo.get(book) ?? new Map<string, string>();
  probedUpTo.set(book, hosts.set(host, claimOrder(last)));
}

async function reclaimFrom(
  book: SharedBook,
  host: string,
  since: number,
  claims: OwnClaim[],
  hear: (poolId: string, address: IpAddress) => Promise<LanHearing>,
  log: Logger,
  report: ReclaimReport,
): Promise<void> {
  const kept: string[] = [];
  for (const claim of claims) {
    const heard = await hear(claim.poolId, claim.address);
    if (heard === 'unknown') continue;
    if (heard === 'answers') {
      kept.push(claim.address.text);
      continue;
    }
    if (await claim.release()) {
      report.reclaimed.push(claim.address.text);
      log.warn('reclaimed an address of a host that went away (no registration, silent on the LAN)', {
        host,
        pool: claim.poolId,
        address: claim.address.text,
        absentSince: new Date(since).toISOString(),
      });
      recordEvent('pool.reclaimed', { host, pool: claim.poolId, address: claim.address.text });
    }
  }
  report.kept.push(...kept);
  if (kept.length > 0)
    log.info("an absent host's addresses still answer on the LAN: kept (cut off from etcd, not from the LAN?)", {
      host,
      addresses: kept,
    });
}
