/**
 * The `lanplug` IPAM plugin on its own, for CNI main plugins that are not
 * lanplug's (the reference `bridge`, `macvlan`, …): host-local's keys and
 * behaviour, with the addresses in lanplug's store, where they count as
 * taken for Docker's networks and lanplug's own plugins too. Each claim
 * carries its owner (network, container, interface), which is what DEL and
 * GC release by: ADD, DEL and CHECK match one owner whole (a container's
 * `eth1` is not its `eth10`), GC a network's prefix up to its closing `/`
 * (network names and container ids never hold one).
 */
import { conflict, notFound } from '../errors';
import type { Logger } from '../log';
import type { AddressRange } from '../model/ipam';
import type { IpAddress } from '../net/address';
import type { IpamStore } from '../state/ipam-store';
import { checkRequestedUsed, type RangeAllocation, type RangeAllocator } from './ranges';

function ownerPrefix(networkName: string): string {
  return `cni-ipam/${networkName}/`;
}

function ownerOf(networkName: string, containerId: string, ifname: string): string {
  return `${ownerPrefix(networkName)}${containerId}/${ifname}`;
}

export class CniIpam {
  constructor(
    private readonly store: IpamStore,
    private readonly allocator: RangeAllocator,
    private readonly log: Logger,
  ) {}

  /** One address from each range set; all or none. */
  add(
    networkName: string,
    containerId: string,
    ifname: string,
    rangeSets: readonly (readonly AddressRange[])[],
    requested: readonly IpAddress[],
  ): RangeAllocation[] {
    const owner = ownerOf(networkName, containerId, ifname);
    if (this.store.claimsOf(owner).length > 0)
      throw conflict(
        `container ${containerId} already has addresses for ${ifname} on network ${networkName}; DEL it first`,
      );
    const done: RangeAllocation[] = [];
    try {
      for (const set of rangeSets) done.push(this.allocator.allocate(networkName, set, requested, { owner }));
      checkRequestedUsed(requested, done);
    } catch (err) {
      for (const claim of done) this.allocator.release(claim.poolId, claim.address.address);
      throw err;
    }
    this.log.info('IPAM addresses handed out', {
      network: networkName,
      owner,
      addresses: done.map((c) => c.address.address.text).join(' '),
    });
    return done;
  }

  /** Idempotent: nothing held is success. */
  del(networkName: string, containerId: string, ifname: string): void {
    this.release(this.store.claimsOf(ownerOf(networkName, containerId, ifname)));
    this.allocator.dropEmptyPools(networkName);
  }

  check(networkName: string, containerId: string, ifname: string): void {
    if (this.store.claimsOf(ownerOf(networkName, containerId, ifname)).length === 0)
      throw notFound(`container ${containerId} holds no address for ${ifname} on network ${networkName}`);
  }

  /** GC: every claim of the network whose owner is not in `keep` goes. */
  collect(networkName: string, keep: readonly { containerId: string; ifname: string }[]): number {
    const kept = new Set(keep.map((a) => ownerOf(networkName, a.containerId, a.ifname)));
    const stale = this.store.ownedClaims(ownerPrefix(networkName)).filter((c) => !kept.has(c.owner));
    this.release(stale);
    this.allocator.dropEmptyPools(networkName);
    return stale.length;
  }

  private release(claims: readonly { poolId: string; address: IpAddress }[]): void {
    for (const claim of claims) this.allocator.release(claim.poolId, claim.address);
  }
}
