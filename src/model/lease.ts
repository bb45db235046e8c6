/**
 * DHCP leases lanplug holds on behalf of containers: who asks (the identity
 * every message carries), what the server granted, and where the container is.
 */
import type { IpAddress, IpPrefix } from '../net/address';

/** What every DHCP message for one container carries, the same at every start so the server answers the same. */
export interface DhcpIdentity {
  mac: string;
  /** Option 61 as hex: 01+MAC by default, 00+the user's id with `lanplug.dhcp.id`. */
  clientId: string;
  /** Option 12, or null to send none. */
  hostname: string | null;
  /**
   * Ask for broadcast answers: always while no address is configured (the
   * link may sit in a namespace that would route a unicast answer away, and
   * ipvlan links share one MAC).
   */
  broadcast: boolean;
}

/** What a server granted (DHCPACK). Times are seconds, `boundAt` ms since the epoch. */
export interface Lease {
  address: IpPrefix;
  router: IpAddress | null;
  dns: IpAddress[];
  serverId: IpAddress;
  /** Where the ACK came from at layer 2: the server, or the relay that forwarded it. */
  serverMac: string;
  leaseSeconds: number;
  /** T1 and T2 as the server set them, or RFC 2131's 50 % and 87.5 %. */
  renewSeconds: number;
  rebindSeconds: number;
  boundAt: number;
}

export interface LeaseRecord {
  networkId: string;
  endpointId: string;
  identity: DhcpIdentity;
  lease: Lease;
  /** The container's namespace (Join's SandboxKey); null until Join. */
  sandboxKey: string | null;
  /** When a renewal last succeeded (ms), null before the first. */
  renewedAt: number | null;
  /** Renewal attempts that failed since the last success, and the last reason. */
  failures: number;
  lastError: string | null;
}

export function leaseExpiresAt(lease: Lease): number {
  return lease.boundAt + lease.leaseSeconds * 1000;
}
