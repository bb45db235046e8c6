/**
 * Addresses this host's IPAM driver claimed that no endpoint holds: the
 * daemon was killed between the claim and Docker's CreateEndpoint (or dockerd
 * gave up on the container), and Docker, which never got the address, will
 * never release it. Nothing else frees them — on a shared pool they would be
 * lost to every host of the fleet.
 *
 * Order and gates, so that a live address is never freed (whereabouts #207
 * freed live ones by reading its two sources the other way round): the
 * claims are read first, then the endpoints; a claim must be older than the
 * grace period, belong to a pool a lanplug network here uses (with another
 * network driver lanplug cannot see the endpoints), have no endpoint on two
 * passes in a row (Docker removes the endpoint a moment before it releases
 * the address), and be unchanged since it was first seen.
 *
 * And it must be younger than the network: Docker claims the gateway and the
 * --aux-address entries before it creates the network (on a single host an
 * aux address is asked for by value, as a container's --ip is, and the book
 * cannot tell them apart), while no endpoint's address is claimed before its
 * network exists. A network's own reservations are never orphans.
 */
import type { Logger } from '../log';
import type { AddressBook } from '../state/address-book';

export interface OrphanReport {
  released: string[];
  /** Claims without an endpoint, waiting for the next pass to confirm. */
  suspected: string[];
}

export class OrphanClaims {
  /** Claims seen without an endpoint on the last pass: key -> identity. */
  private suspects = new Map<string, string>();

  constructor(
    private readonly book: AddressBook,
    private readonly log: Logger,
  ) {}

  /**
   * One pass. `localAddresses` are the addresses endpoints here hold; `networkOfPool`
   * gives when the lanplug network here that uses the pool was recorded (its endpoints
   * are all known), or null when none does.
   */
  async pass(
    localAddresses: () => ReadonlySet<string>,
    networkOfPool: (poolId: string) => Promise<{ createdAt: number } | null>,
    options: { graceMs: number; dryRun: boolean; now?: number },
  ): Promise<OrphanReport> {
    const claims = await this.book.ownEndpointClaims();
    const held = localAddresses();
    const now = options.now ?? Date.now();
    const report: OrphanReport = { released: [], suspected: [] };
    const suspects = new Map<string, string>();
    for (const claim of claims) {
      if (held.has(claim.address.text) || now - claim.at < options.graceMs) continue;
      const network = await networkOfPool(claim.poolId);
      if (network === null || claim.at <= network.createdAt) continue;
      const key = `${claim.poolId} ${claim.address.text}`;
      const confirmed = this.suspects.get(key) === claim.identity;
      if (!confirmed || options.dryRun) {
        suspects.set(key, claim.identity);
        (confirmed ? report.released : report.suspected).push(claim.address.text);
        continue;
      }
      if (await claim.release()) {
        report.released.push(claim.address.text);
        this.log.warn('freed an address no endpoint holds (claimed, then never used)', {
          pool: claim.poolId,
          address: claim.address.text,
          claimedAt: new Date(claim.at).toISOString(),
        });
      }
    }
    // A dry run (`lanplug gc --dry-run`) says what the next pass would free, and changes nothing.
    if (!options.dryRun) this.suspects = suspects;
    return report;
  }
}
