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
 *     IPv6) from this host's probing link get no answer;
 *   - the claim is unchanged since it was read (compare on its revision).
 *
 * Where this host cannot probe (no lanplug network here on that pool, or
 * lanplug.conflict=off) nothing is reclaimed. A host that comes back finds
 * its claims where it left them, unless they were reclaimed: then its orphan
 * check sees no claim, and its next start on that address asks again.
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
}

export async function reclaimAbsentHosts(
  book: SharedBook,
  hear: (poolId: string, address: IpAddress) => Promise<LanHearing>,
  log: Logger,
  options: { reclaimAfterMs: number; now?: number },
): Promise<ReclaimReport> {
  const report: ReclaimReport = { reclaimed: [], kept: [], waiting: [] };
  const now = options.now ?? Date.now();
  for (const [host, since] of await book.absentHolders()) {
    const left = since + options.reclaimAfterMs - now;
    if (left > 0) {
      report.waiting.push({ host, secondsLeft: Math.ceil(left / 1000) });
      continue;
    }
    for (const claim of await book.endpointClaimsOf(host)) {
      const heard = await hear(claim.poolId, claim.address);
      if (heard === 'unknown') continue;
      if (heard === 'answers') {
        report.kept.push(claim.address.text);
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
    if (report.kept.length > 0)
      log.info("an absent host's addresses still answer on the LAN: kept (cut off from etcd, not from the LAN?)", {
        host,
        addresses: report.kept,
      });
  }
  return report;
}
