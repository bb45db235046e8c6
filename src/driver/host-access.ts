/**
 * Host access: the Docker host reaching its own containers, which the kernel
 * does not allow through the parent (a macvlan or ipvlan parent never passes
 * traffic to its own children). lanplug gives the host a link of its own
 * beside the containers' — the shim `lh-<network id>`, a macvlan in bridge
 * mode (ipvlan: the network's own mode) on the same parent — with the host's
 * address on this network as /32 (/128), and one route per container through
 * it, added at Join and removed with the endpoint.
 *
 * Why per-container routes rather than one for the subnet or the --ip-range:
 * Docker does not tell a driver the --ip-range, and a route for the whole
 * subnet through the shim would take the host's traffic to every other device
 * on that LAN subnet (routers, printers) away from its own interface. A /32 per
 * container is exact: it changes the path to the containers and nothing else.
 * Routes carry lanplug's protocol number (76), so reconcile tells them apart.
 */
import { LanplugError } from '../errors';
import type { LinkInfo, LinkRef } from '../link/link';
import { writeFileSync } from 'node:fs';
import { RTPROT_LANPLUG } from '../link/ip';
import type { Rtnl } from '../link/rtnl';
import type { EndpointRecord, NetworkSpec } from '../model/network';
import { formatPrefix, hostPrefix, type IpAddress, type IpPrefix } from '../net/address';
import { shimLinkName } from './names';

/**
 * Makes sure the network's shim exists on `parent`, holds the host's addresses and is up. A macvlan
 * shim has a MAC of its own: it answers ARP for its own address only, never for the host's address
 * on the parent (a LAN router that kept the shim's MAC for that would send the host's own traffic,
 * SSH included, to the shim, and rp_filter would drop it there). An ipvlan shim answers with the
 * parent's MAC.
 */
export function ensureShim(rtnl: Rtnl, spec: NetworkSpec, parent: LinkInfo): LinkInfo {
  const access = spec.hostAccess;
  if (access === null) throw new LanplugError('Internal', `network ${spec.networkId} has no host access`);
  const name = shimLinkName(spec.networkId);
  let shim = rtnl.getLink(name);
  if (shim !== null && shim.parentIndex !== parent.index) {
    // A parent that was deleted and made again has a new index: the old shim went with the old parent,
    // and a link of that name elsewhere is a stale one of lanplug's.
    rtnl.deleteLink(shim);
    shim = null;
  }
  if (shim === null) shim = createShim(rtnl, spec, name, parent);
  ignoreRouterAdverts(shim);
  // Also on a shim an earlier lanplug made: see createShim.
  if (spec.mode.kind === 'macvlan') rtnl.answerArpForOwnAddressesOnly(shim);
  for (const address of [access.ipv4, access.ipv6]) if (address !== null) rtnl.addAddress(shim, hostPrefix(address));
  if (!shim.up) rtnl.setUp(shim);
  return shim;
}

/**
 * The shim takes no router advertisement (before it is up, where it is new): autoconfigured from the LAN's
 * prefix it would get an address and the prefix's on-link route, and the host's LAN traffic could leave by
 * it rather than the parent (seen in the lab: `ip -6 route get` of a LAN address through lh-…). Its
 * link-local address stays (SLAAC host access answers from it). Read-only /proc/sys (a managed plugin):
 * left as the kernel has it.
 */
function ignoreRouterAdverts(shim: LinkInfo): void {
  for (const key of ['accept_ra', 'autoconf'])
    try {
      writeFileSync(`/proc/sys/net/ipv6/conf/${shim.name}/${key}`, '0');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EROFS' && code !== 'EACCES') throw err;
    }
}

function createShim(rtnl: Rtnl, spec: NetworkSpec, name: string, parent: LinkInfo): LinkInfo {
  const common = { name, parentIndex: parent.index, ...(spec.mtu === null ? {} : { mtu: spec.mtu }) };
  return spec.mode.kind === 'macvlan'
    ? rtnl.createMacvlan({ ...common, mode: 'bridge' })
    : rtnl.createIpvlan({ ...common, mode: spec.mode.mode, flag: spec.mode.flag });
}

/** The routes a network's host access needs: each endpoint address through the shim, from the host's address. */
export function wantedRoutes(spec: NetworkSpec, endpoints: readonly Pick<EndpointRecord, 'ipv4' | 'ipv6'>[]): Route[] {
  const access = spec.hostAccess;
  if (access === null) return [];
  return endpoints.flatMap((e) => [
    ...(e.ipv4 === null || access.ipv4 === null
      ? []
      : [{ destination: hostPrefix(e.ipv4.address), source: access.ipv4 }]),
    ...(e.ipv6 === null || access.ipv6 === null
      ? []
      : [{ destination: hostPrefix(e.ipv6.address), source: access.ipv6 }]),
  ]);
}

export interface Route {
  destination: IpPrefix;
  source: IpAddress;
}

export function addRoutes(rtnl: Rtnl, shim: LinkRef, routes: readonly Route[]): void {
  for (const route of routes) rtnl.replaceRoute(route.destination, shim, route.source);
}

/** Removes an endpoint's routes; nothing to do when the shim is gone (its routes went with it). */
export function removeRoutes(rtnl: Rtnl, spec: NetworkSpec, routes: readonly Route[]): void {
  const shim = rtnl.getLink(shimLinkName(spec.networkId));
  if (shim === null) return;
  for (const route of routes) rtnl.deleteRoute(route.destination, shim);
}

/** The routes lanplug put through `shim` (its protocol, its link), of both families. */
export function routesThrough(rtnl: Rtnl, shim: LinkRef): IpPrefix[] {
  return ([4, 6] as const).flatMap((family) =>
    rtnl
      .listRoutes(family)
      .filter((r) => r.protocol === RTPROT_LANPLUG && r.oifIndex === shim.index)
      .map((r) => r.destination),
  );
}

export function routeKey(prefix: IpPrefix): string {
  return formatPrefix(prefix);
}
