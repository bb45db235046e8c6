/**
 * What a network knows about its addresses without asking the LAN, and the
 * addresses a DHCP server may bind that no container of it may ever take,
 * whatever the network's conflict policy: no host's address at all
 * (0.0.0.0/8, loopback, link-local, multicast, reserved), one outside the
 * network's subnet, the subnet's own or broadcast address, the router or the
 * server itself, another container's. An honest server misconfigured (a
 * reservation of the router's address) or a rogue one on the LAN offers
 * these; a container given one would take the router's traffic, or a
 * neighbour's, or have no route at all. Pure: the facts come from the caller.
 */
import type { Fields } from '../log';
import { formatPrefix, parsePrefix, prefixBounds, prefixContains, type IpAddress, type IpPrefix } from '../net/address';

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

/** Ranges no host on a LAN holds (RFC 6890), by family. */
const NOT_HOSTS: Record<4 | 6, IpPrefix[]> = {
  4: ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '240.0.0.0/4'].map((t) => parsePrefix(t)),
  6: ['::/127', 'fe80::/10', 'ff00::/8'].map((t) => parsePrefix(t)),
};

/** The refusal of `address` bound by `server` (which named `router`), or null: nothing the network knows stands against it. */
export function refuseOffered(
  address: IpAddress,
  by: { server: IpAddress; router: IpAddress | null },
  facts: NetworkFacts,
): OfferRefusal | null {
  const same = (a: IpAddress | null): boolean => a !== null && a.family === address.family && a.value === address.value;
  const range = NOT_HOSTS[address.family].find((p) => prefixContains(p, address));
  if (range !== undefined)
    return {
      what: 'no address a host may hold',
      why: `no address a host may hold (${formatPrefix(range)})`,
      fields: { range: formatPrefix(range) },
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
  if (home !== undefined && address.family === 4 && home.prefixLength < 31) {
    const { first, last } = prefixBounds(home);
    if (address.value === first || address.value === last)
      return {
        what: "the subnet's network or broadcast address",
        why: `the network or broadcast address of ${formatPrefix(home)}`,
        fields: { subnet: formatPrefix(home) },
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
