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
 * Where this host cannot probe (no lanplug network here on that pool, or
 * lanplug.conflict=off) nothing is reclaimed. A host that comes back finds
 * its claims where it left them, unless they were reclaimed: each reclaim
 * leaves it a record, which it reads (ipam/reclaimed.ts).
 */
import type { Logger } from '../log';
import type { IpAddress } from '../net/address';
import type { SharedBook } from '../state/address-book';

/** What the LAN says about an address now: 'unknown' when this host cannot ask. */
export type LanHearing = 'answers' | 'silent' | 'unknown';

export interface ReclaimReport {
  reclaimed: string[];
  /** Addresses of absent hosts that still answer (a host cut off from etcd, not from the LAN). */
  kept: string[];
  /** Absent hosts whose grace period has not passed, with the seconds left. */
  waiting: { host: string; secondsLeft: number }[];
  /** Absent hosts another host is reclaiming from now (it holds `reclaiming/<host>`). */
  busy?: { host: string; by: string }[];
}

export async function reclaimAbsentHosts(
  book: SharedBook,
  hear: (poolId: string, address: IpAddress) => Promise<LanHearing>,
  log: Logger,
  options: { reclaimAfterMs: number; now?: number },
): Promise<ReclaimReport> {
  const report: ReclaimReport = { reclaimed: [], kept: [], waiting: [], busy: [] };
  const now = options.now ?? Date.now();
  for (const [host, since] of await book.absentHolders()) {
    const left = since + options.reclaimAfterMs - now;
    if (left > 0) {
      report.waiting.push({ host, secondsLeft: Math.ceil(left / 1000) });
      continue;
    }
    // Two hosts probing one address at once end each other's probes: one at a time.
    const lock = await book.lockReclaim(host);
    if (!lock.held) {
      report.busy?.push({ host, by: lock.by });
      continue;
    }
    try {
      await reclaimFrom(book, host, since, hear, log, report);
    } finally {
      await lock.release().catch(() => undefined); // else it goes with this host's lease
    }
  }
  return report;
}

async function reclaimFrom(
  book: SharedBook,
  host: string,
  since: number,
  hear: (poolId: string, address: IpAddress) => Promise<LanHearing>,
  log: Logger,
  report: ReclaimReport,
): Promise<void> {
  const kept: string[] = [];
  for (const claim of await book.endpointClaimsOf(host)) {
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
    }
  }
  report.kept.push(...kept);
  if (kept.length > 0)
    log.info("an absent host's addresses still answer on the LAN: kept (cut off from etcd, not from the LAN?)", {
      host,
      addresses: kept,
    });
}
