/**
 * What a network knows about its addresses without asking the LAN, and the
 * addresses a DHCP server may bind that no container of it may ever take,
 * whatever the network's conflict policy: no host's address at all
 * (0.0.0.0/8, loopback, link-local, multicast, reserved), one outside the
 * network's subnet, the network or broadcast address of that subnet or of the
 * prefix the answer itself gives (known or not, a subnet says nothing of a
 * dedicated NIC's LAN), an IPv4 mask broader than /8 (mask 0.0.0.0 would put
 * the whole Internet on-link), the router or the server itself, another
 * container's. An honest server misconfigured (a
 * reservation of the router's address) or a rogue one on the LAN offers
 * these; a container given one would take the router's traffic, or a
 * neighbour's, or have no route at all. Pure: the facts come from the caller.
 */
import type { Fields } from '../log';
import {
  formatPrefix,
  networkOf,
  parsePrefix,
  prefixBounds,
  prefixContains,
  type IpAddress,
  type IpPrefix,
} from '../net/address';

/** What the network knows, as of the moment an address is checked. */
export interface NetworkFacts {
  /** Where the network is (its --subnet, or the host's own subnets on the parent), any family; empty: not known. */
  subnets: readonly IpPrefix[];
  /** Its gateways (--gateway) and the routers its leases name. */
  routers: readonly IpAddress[];
  /** The endpoint (short id) of another container that holds `address`, or null. */
  heldBy(address: IpAddress): string | null;
}

/** Why an address may not be used: `what` ends the log line "declining a DHCP address: it is …", `why` the DHCPDECLINE and the error. */
export interface OfferRefusal {
  what: string;
  why: string;
  fields: Fields;
}

/** The broadest IPv4 prefix a LAN plausibly has (a class A); a broader mask is a rogue's or a typo. */
const BROADEST_PREFIX4 = 8;

/** Ranges no host on a LAN holds (RFC 6890), by family. */
const NOT_HOSTS: Record<4 | 6, IpPrefix[]> = {
  4: ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '240.0.0.0/4'].map((t) => parsePrefix(t)),
  6: ['::/127', 'fe80::/10', 'ff00::/8'].map((t) => parsePrefix(t)),
};

/** The range of addresses no host holds that `address` is in, or undefined: a host may hold it. */
export function noHostRange(address: IpAddress): IpPrefix | undefined {
  return NOT_HOSTS[address.family].find((p) => prefixContains(p, address));
}

/**
 * Ranges no DNS server answers from: unspecified, multicast and reserved (255.255.255.255 among them).
 * Loopback and link-local stay: a resolver on the host, a cloud's 169.254.169.253.
 */
const NOT_DNS_SERVERS: Record<4 | 6, IpPrefix[]> = {
  4: ['0.0.0.0/8', '224.0.0.0/4', '240.0.0.0/4'].map((t) => parsePrefix(t)),
  6: ['::/128', 'ff00::/8'].map((t) => parsePrefix(t)),
};

/** True when a DNS server a DHCP server named is one a resolver can ask. */
export function usableDnsServer(address: IpAddress): boolean {
  return !NOT_DNS_SERVERS[address.family].some((p) => prefixContains(p, address));
}

/**
 * The router an answer names, or null when the container may not route through it (why goes to
 * `ignored`): no host's address, outside the leased prefix (unreachable on the link: the route
 * would fail, or make another device the gateway), or the leased address itself.
 */
export function usableRouter(
  router: IpAddress | null,
  leased: IpPrefix,
  ignored: (why: string) => void,
): IpAddress | null {
  if (router === null) return null;
  const range = noHostRange(router);
  const why =
    range !== undefined
      ? `no address a host may hold (${formatPrefix(range)})`
      : // A /32 lease (clouds, some ISPs) always has its router off the prefix: reached by an on-link route.
        leased.prefixLength < 32 && !prefixContains(leased, router)
        ? `outside the leased prefix ${formatPrefix(networkOf(leased))}`
        : router.value === leased.address.value
          ? 'the leased address itself'
          : null;
  if (why === null) return router;
  ignored(why);
  return null;
}

/**
 * The refusal of `address` bound by `server` (which named `router` and gave it `prefixLength`), or
 * null: nothing the network knows stands against it.
 */
export function refuseOffered(
  address: IpAddress,
  by: { server: IpAddress; router: IpAddress | null; prefixLength: number },
  facts: NetworkFacts,
): OfferRefusal | null {
  const same = (a: IpAddress | null): boolean => a !== null && a.family === address.family && a.value === address.value;
  const range = noHostRange(address);
  if (range !== undefined)
    return {
      what: 'no address a host may hold',
      why: `no address a host may hold (${formatPrefix(range)})`,
      fields: { range: formatPrefix(range) },
    };
  if (address.family === 4 && by.prefixLength < BROADEST_PREFIX4)
    return {
      what: `offered with a subnet mask broader than /${BROADEST_PREFIX4}`,
      why: `a subnet mask broader than /${BROADEST_PREFIX4} (/${by.prefixLength})`,
      fields: { prefixLength: by.prefixLength },
    };
  const subnets = facts.subnets.filter((s) => s.address.family === address.family);
  const home = subnets.find((s) => prefixContains(s, address));
  if (subnets.length > 0 && home === undefined) {
    const list = [...new Set(subnets.map(formatPrefix))].join(', ');
    return {
      what: "outside the network's subnet",
      why: `outside the network's subnet ${list}`,
      fields: { subnets: list },
    };
  }
  // The network's subnet, then the answer's own prefix (RFC 3021: a /31 or /32 has neither address).
  const offered = { address, prefixLength: by.prefixLength };
  for (const prefix of home === undefined ? [offered] : [home, offered]) {
    if (address.family !== 4 || prefix.prefixLength >= 31) continue;
    const { first, last } = prefixBounds(prefix);
    if (address.value === first || address.value === last)
      return {
        what: "the subnet's network or broadcast address",
        why: `the network or broadcast address of ${formatPrefix(networkOf(prefix))}`,
        fields: { subnet: formatPrefix(networkOf(prefix)) },
      };
  }
  if (same(by.router) || facts.routers.some(same))
    return { what: 'the router', why: "the network's router", fields: {} };
  if (same(by.server)) return { what: "the server's own", why: "the DHCP server's own address", fields: {} };
  const endpoint = facts.heldBy(address);
  if (endpoint !== null)
    return {
      what: "another container's",
      why: `in use by another container (endpoint ${endpoint})`,
      fields: { endpoint },
    };
  return null;
}
