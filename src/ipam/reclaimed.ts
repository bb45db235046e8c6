/**
 * A host back after being away — unregistered in etcd and silent on the LAN
 * for longer than `--reclaim-after` (cut off from both, or suspended) — whose
 * addresses another host reclaimed meanwhile (ipam/reclaim.ts). Its
 * containers never stopped using them. Each reclaim left a record for it in
 * etcd; at every check it reads them:
 *
 *   - an address no endpoint here holds any more: nothing was lost;
 *   - one nobody has claimed since: claimed again (logged), and kept;
 *   - one another host's endpoint holds now: that endpoint's, not this
 *     one's. It is recorded as lost in this host's state database, logged
 *     once, shown by `lanplug status` and `doctor`, and no longer defended on
 *     the LAN: two hosts sending gratuitous ARP for one address at each other
 *     forever would help nobody. Restarting the container gives it a new
 *     address; lanplug never stops a container.
 *
 * A lost address whose new holder lets it go is claimed again the same way;
 * a lost record goes with its endpoint.
 */
import { LanplugError } from '../errors';
import type { Logger } from '../log';
import { recordEvent } from '../metrics/events';
import { addressesOf, shortId, type EndpointRecord } from '../model/network';
import type { SharedBook } from '../state/address-book';
import type { SharedPoolState } from '../state/shared-state';

export interface ReclaimedReport {
  /** Reclaimed while this host was away, unclaimed since: this host's again. */
  claimedBack: string[];
  /** Reclaimed, and another host's endpoint holds them now. */
  lost: string[];
}

type LocalRecords = Pick<SharedPoolState, 'listLostAddresses' | 'putLostAddress' | 'deleteLostAddress'>;

export async function settleReclaimed(
  book: SharedBook,
  local: LocalRecords,
  endpoints: readonly EndpointRecord[],
  log: Logger,
): Promise<ReclaimedReport> {
  const report: ReclaimedReport = { claimedBack: [], lost: [] };
  const holding = (address: string): EndpointRecord | undefined =>
    endpoints.find((e) => addressesOf(e).some((a) => a.text === address));
  const known = new Map(local.listLostAddresses().map((l) => [l.address, l]));

  for (const record of await book.reclaimedFromHere()) {
    const address = record.address.text;
    const endpoint = holding(address);
    if (endpoint !== undefined) {
      const holder = await book.holderOf(record.poolId, record.address);
      if (holder === null && (await claimAgain(book, record.poolId, record.address, record.kind, record.mac))) {
        report.claimedBack.push(address);
        log.warn(
          'an address of a container here was reclaimed while this host was away; nobody had taken it: claimed again',
          { address, reclaimedBy: record.by, reclaimedAt: record.at },
        );
        recordEvent('pool.claimed-back', { address, reclaimedBy: record.by });
      } else if (holder !== book.hostId) {
        report.lost.push(address);
        local.putLostAddress({
          address,
          poolId: record.poolId,
          networkId: endpoint.networkId,
          endpointId: endpoint.endpointId,
          reclaimedBy: record.by,
          reclaimedAt: record.at,
          heldBy: holder ?? '?',
          noticedAt: Date.now(),
        });
        known.delete(address);
        log.error(
          "an address of a container here was reclaimed while this host was away, and another host's container holds it now: no longer defended here; restart the container for a new address",
          { address, endpoint: shortId(endpoint.endpointId), reclaimedBy: record.by, heldBy: holder ?? '?' },
        );
        recordEvent('pool.address-lost', {
          address,
          endpoint: shortId(endpoint.endpointId),
          reclaimedBy: record.by,
          heldBy: holder ?? '?',
        });
      }
    }
    await record.forget();
  }

  for (const lost of known.values()) {
    const endpoint = holding(lost.address);
    if (endpoint?.endpointId !== lost.endpointId) {
      local.deleteLostAddress(lost.address); // the container went (or took another address)
      continue;
    }
    const { address, poolId } = lost;
    const parsed = addressesOf(endpoint).find((a) => a.text === address);
    if (parsed === undefined || (await book.holderOf(poolId, parsed)) !== null) {
      report.lost.push(address);
      continue;
    }
    if (await claimAgain(book, poolId, parsed, 'allocated', endpoint.mac)) {
      local.deleteLostAddress(address);
      report.claimedBack.push(address);
      log.warn('a lost address of a container here was let go by its other holder: claimed again', { address });
      recordEvent('pool.claimed-back', { address, reclaimedBy: lost.reclaimedBy });
    } else report.lost.push(address);
  }
  return report;
}

/** Claims the address for the endpoint here again; false when someone was quicker (or has its MAC). */
async function claimAgain(book: SharedBook, ...args: Parameters<SharedBook['claim']>): Promise<boolean> {
  try {
    return await book.claim(...args);
  } catch (err) {
    if (err instanceof LanplugError && err.code === 'Conflict') return false;
    throw err;
  }
}
