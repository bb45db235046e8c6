/**
 * What a host keeps in its own state database about its part in shared
 * pools (`--store etcd://...`), because etcd cannot keep it for it: who this
 * host is (an instance id that a restart keeps and another machine does not
 * have), what it still owes etcd (a pool release etcd did not take), and what
 * etcd took from it while it was away (addresses another host reclaimed).
 */

/** A pool this host left (Docker removed the network) that etcd still lists it as using. */
export interface PendingPoolRelease {
  poolId: string;
  /** Why the last try failed. */
  error: string;
  /** When it first failed (ms since the epoch). */
  failedAt: number;
}

/**
 * An address an endpoint here still holds that another host reclaimed while this host was away
 * (unregistered and silent on the LAN longer than `--reclaim-after`), and that is now another
 * endpoint's: this host no longer defends it on the LAN, and says so until the endpoint goes.
 */
export interface LostAddress {
  address: string;
  poolId: string;
  networkId: string;
  endpointId: string;
  /** The host that reclaimed it, and when (ISO 8601), as its record in etcd says. */
  reclaimedBy: string;
  reclaimedAt: string;
  /** The host whose endpoint holds it in etcd now. */
  heldBy: string;
  /** When this host noticed (ms since the epoch). */
  noticedAt: number;
}

export interface SharedPoolState {
  /** This state directory's id: made once, at the first call; the same after every restart. */
  instanceId(): string;

  listPoolReleases(): PendingPoolRelease[];
  /** Records a failed release; the first failure's time is kept. */
  putPoolRelease(poolId: string, error: string, at: number): void;
  deletePoolRelease(poolId: string): void;

  listLostAddresses(): LostAddress[];
  putLostAddress(lost: LostAddress): void;
  deleteLostAddress(address: string): void;
  /**
   * Whether the endpoint of `networkId` here that holds `address` (text form) lost it to another
   * host: two VLANs may carry one subnet, and the other network's container keeps its own.
   */
  isAddressLost(networkId: string, address: string): boolean;
}
