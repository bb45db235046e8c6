/**
 * Reservations by identity: what a (network, `lanplug.identity` name) had
 * last — its MAC, addresses and DHCP client ids — kept after its container
 * goes, so that the name finds them again (docs/identity.md). The decisions
 * on them are ipam/reservations.ts's; this is only what is kept.
 */

/** An IPAM claim kept for a reservation after its container gave the address back. */
export interface KeptClaim {
  poolId: string;
  address: string;
}

export interface IdentityReservation {
  networkId: string;
  name: string;
  mac: string | null;
  /** Addresses without their prefix length (the pool's is the network's). */
  ipv4: string | null;
  ipv6: string | null;
  /** DHCPv4 client id (option 61) and DHCPv6 DUID, as hex: the name's. */
  clientId: string;
  duid: string;
  /** The endpoint holding it now; null while no container does (then it ages towards expiry). */
  endpointId: string | null;
  /** The `lanplug` IPAM's claims on its addresses, kept while no container holds them. */
  kept: KeptClaim[];
  createdAt: number;
  /** When a container last held it (ms since the epoch). */
  lastSeen: number;
}

export interface IdentityStore {
  getReservation(networkId: string, name: string): IdentityReservation | null;
  listReservations(): IdentityReservation[];
  /** The reservations naming `address` (its text, no prefix) as their IPv4 or IPv6 address. */
  reservationsOfAddress(address: string): IdentityReservation[];
  /** Inserts or replaces (by network and name). */
  putReservation(reservation: IdentityReservation): void;
  /** False when there was none. */
  deleteReservation(networkId: string, name: string): boolean;
}
