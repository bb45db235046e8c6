/**
 * What the daemon plugs into CNI attachments from the rooms above the driver:
 * the LAN's view of addresses in use (KnownTaken), the shared pools on etcd
 * (SharedClaims, endpoint/shared-attachments.ts) and the DHCP lease keeper
 * (AttachmentLeases). Interfaces only, kept apart so that those rooms can
 * implement them without importing the attachments, and an offline `lanplug gc`
 * can leave each of them out.
 */
import type { IpAddress } from '../net/address';

/** What this host holds and the LAN is known to use (the daemon's LAN side); none for an offline `lanplug gc`. */
export interface KnownTaken {
  /** `link` null: on any LAN (a CNI allocation does not probe from a link of its own). */
  knownHolder(link: null, address: IpAddress): { mac: string; how: string } | null;
  hostHolder(address: IpAddress): string | null;
}

/**
 * Where a shared network's addresses and pools go back (endpoint/shared-attachments.ts): called
 * synchronously where the rows go, it gives them back to etcd in the background.
 */
export interface SharedClaims {
  /** A removed attachment of `networkName` held these: their shared-pool claims go (none: nothing). */
  freed(networkName: string, addresses: readonly IpAddress[]): void;
  /** The network went: this host's use of its shared pools ends. */
  networkDropped(networkName: string): void;
  /** Resolves once what was given back so far has gone (failures are logged). */
  settled(): Promise<void>;
}

/** What gives a removed attachment's DHCP lease back to its server: the daemon's lease keeper. Idempotent. */
export interface AttachmentLeases {
  release(networkId: string, endpointId: string, why: string): void;
}
