/**
 * DHCP leases lanplug holds on behalf of containers: who asks (the identity
 * every message carries), what the servers granted (DHCPv4, DHCPv6), and
 * where the container is.
 */
import type { Family, IpAddress, IpPrefix } from '../net/address';

/** What every DHCP message for one container carries, the same at every start so the server answers the same. */
export interface DhcpIdentity {
  mac: string;
  /** DHCPv4 option 61 as hex: 01+MAC by default, 00+the user's id with `lanplug.dhcp.id`. */
  clientId: string;
  /** DHCPv6 client DUID as hex: DUID-LL of the MAC, or a DUID-UUID of the user's id. */
  duid: string;
  /** DHCPv6 IA_NA identifier. */
  iaid: number;
  /** The same at the container's next start (`--mac-address`, `lanplug.dhcp.id`): its last address is worth remembering. */
  stable: boolean;
  /** Option 12 / the DHCPv6 client FQDN, or null to send none. */
  hostname: string | null;
  /**
   * DHCPv4: ask for broadcast answers. Acquisition always does (the link may
   * sit in a namespace that would route a unicast answer away); ipvlan links
   * share one MAC, so this records that the network needs it.
   */
  broadcast: boolean;
}

/**
 * Where a lease is in its life (RFC 2131 §4.4's client states; dhcp/lease-state.ts moves it on):
 * - bound: as granted, until T1;
 * - renewing: past T1, asking its server (unicast) until T2;
 * - rebinding: past T2, asking any server (broadcast) until the lease ends;
 * - expired: past its end with no answer: asking anew (DISCOVER) for the same address;
 * - refused: a server said no (a NAK, or a move onto an address the LAN check refused): asking anew
 *   for any address.
 * A released lease has no state: its record is gone.
 */
export type LeaseState = 'bound' | 'renewing' | 'rebinding' | 'expired' | 'refused';

/** What a server granted (DHCPACK, or a DHCPv6 Reply). Times are seconds, `boundAt` ms since the epoch. */
export interface Lease {
  family: Family;
  address: IpPrefix;
  /** DHCPv4's router option; DHCPv6 has none (routers announce themselves). */
  router: IpAddress | null;
  dns: IpAddress[];
  /** DHCPv4: the server identifier; DHCPv6: the address the server answered from. */
  serverId: IpAddress;
  /** Where the answer came from at layer 2: the server, or the relay that forwarded it. */
  serverMac: string;
  /** DHCPv6: the server's DUID as hex, sent back in Renew and Release; null for DHCPv4. */
  serverDuid: string | null;
  /** The lease time (DHCPv6: the valid lifetime). */
  leaseSeconds: number;
  /** T1 and T2 as the server set them, or RFC 2131's 50 % and 87.5 %. */
  renewSeconds: number;
  rebindSeconds: number;
  boundAt: number;
  /** 'bound' as granted; the keeper records where renewing it got to. */
  state: LeaseState;
}

export interface LeaseRecord {
  networkId: string;
  endpointId: string;
  identity: DhcpIdentity;
  /** One per family the network takes from DHCP. */
  leases: Lease[];
  /**
   * The addresses Docker was given for this endpoint (CreateEndpoint's answer, or lanplug-dhcp's to
   * RequestAddress): what Docker's ReleaseAddress names. A lease the server moved keeps them, for
   * Docker never learns the new address (libnetwork#843).
   */
  dockerAddresses: IpAddress[];
  /** The container's namespace (Join's SandboxKey); null until Join. */
  sandboxKey: string | null;
  /** When a renewal last succeeded (ms), null before the first. */
  renewedAt: number | null;
  /** Renewal attempts that failed since the last success, and the last reason. */
  failures: number;
  lastError: string | null;
}

/** RFC 2131 §3.3 and RFC 8415 §7.7: an all-ones lease time never ends. */
export const INFINITE_SECONDS = 0xffffffff;
/** Below this a T1 would make the client renew in a tight loop (a broken server, a T1 of 0). */
const MINIMUM_T1_SECONDS = 2;
/**
 * The shortest DHCPv4 lease lanplug counts with. A lease of 0 has ended when it begins: counted as
 * given, the keeper would start over with DISCOVER at once and again; a minute means a renewal at
 * most every 30 s per container (dnsmasq itself never grants less than 2 minutes).
 */
export const MIN_LEASE_SECONDS = 60;
/**
 * The longest finite DHCPv4 lease lanplug counts with: a week (Windows Server grants 8 days by
 * default, most routers a day). Counted as given, 136 years (0xfffffffe s) would never be renewed,
 * so a server that forgot the lease (restarted without its database, or a rogue one) could give
 * the address away without lanplug ever hearing its NAK. An infinite lease (RFC 2131 §3.3) stays
 * infinite.
 */
export const MAX_LEASE_SECONDS = 7 * 86_400;

/** A DHCPv4 lease time as lanplug counts it: within [MIN_LEASE_SECONDS, MAX_LEASE_SECONDS], or infinite. */
export function boundedLeaseSeconds(given: number): number {
  if (given === INFINITE_SECONDS) return given;
  return Math.min(MAX_LEASE_SECONDS, Math.max(MIN_LEASE_SECONDS, given));
}

/**
 * T1 and T2 a client can act on: what the server sent when 0 < T1 < T2 <=
 * lease, else RFC 2131's 50 % and 87.5 % of the lease (RFC 8415: of the
 * preferred lifetime); an infinite lease is never renewed.
 */
export function leaseTimes(
  leaseSeconds: number,
  t1: number | null,
  t2: number | null,
): { renewSeconds: number; rebindSeconds: number } {
  if (leaseSeconds === INFINITE_SECONDS) return { renewSeconds: INFINITE_SECONDS, rebindSeconds: INFINITE_SECONDS };
  if (t1 !== null && t2 !== null && t1 >= MINIMUM_T1_SECONDS && t1 < t2 && t2 <= leaseSeconds)
    return { renewSeconds: t1, rebindSeconds: t2 };
  const renewSeconds = Math.max(
    MINIMUM_T1_SECONDS,
    t1 !== null && t1 >= MINIMUM_T1_SECONDS && t1 < leaseSeconds ? t1 : Math.floor(leaseSeconds / 2),
  );
  const rebindSeconds = Math.max(
    renewSeconds + 1,
    t2 !== null && t2 > renewSeconds && t2 <= leaseSeconds ? t2 : Math.floor((leaseSeconds * 7) / 8),
  );
  return { renewSeconds, rebindSeconds };
}

export function leaseExpiresAt(lease: Lease): number {
  return lease.boundAt + lease.leaseSeconds * 1000;
}

export function leaseOf(record: LeaseRecord, family: Family): Lease | null {
  return record.leases.find((l) => l.family === family) ?? null;
}

/** The address of `family` Docker was given for the record's endpoint, if any. */
export function dockerAddressOf(record: LeaseRecord, family: Family): IpAddress | null {
  return record.dockerAddresses.find((a) => a.family === family) ?? null;
}

/** DUID-LL (RFC 8415 §11.4): type 3, hardware type 1 (Ethernet), the MAC. */
export function duidFromMac(mac: string): string {
  return '00030001' + mac.replace(/:/g, '');
}
