/**
 * A link in a runtime's network namespace (CNI's CNI_NETNS): what Docker
 * does itself for its containers, lanplug does for CNI runtimes. The link is
 * made from the host namespace (where its parent is) directly inside, then
 * named and configured from a netlink socket opened inside: addresses, up,
 * routes, and the notify sysctls that make the kernel announce it.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { LanplugError, withContext } from '../errors';
import type { LinkInfo } from '../link/link';
import { openRtnl, type Rtnl } from '../link/rtnl';
import { sameAddress, type IpAddress, type IpPrefix } from '../net/address';
import { inNetworkNamespace } from '../netlink/netns';

export interface SandboxRoute {
  destination: IpPrefix;
  gateway: IpAddress | null;
}

/** Runs `fn` with a netlink socket in `netns`; NotFound when the namespace file is gone. */
export function inSandbox<T>(netns: string, fn: (rtnl: Rtnl) => T): T {
  const rtnl = openRtnl({ netns });
  try {
    return fn(rtnl);
  } finally {
    rtnl.close();
  }
}

/**
 * Runs `fn` with `netns` open as a file descriptor (what IFLA_NET_NS_FD
 * takes); NotFound when it cannot be opened.
 */
export function withNamespaceFd<T>(netns: string, fn: (fd: number) => T): T {
  let fd: number;
  try {
    fd = openSync(netns, 'r');
  } catch (err) {
    throw new LanplugError('NotFound', `network namespace ${netns} cannot be opened: ${String(err)}`);
  }
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The link made as `madeAs` becomes `ifname`, then addresses, up, routes, in
 * that order (a route needs its address); the link as it is then.
 */
export function configureSandbox(
  netns: string,
  madeAs: string,
  ifname: string,
  addresses: readonly IpPrefix[],
  routes: readonly SandboxRoute[],
): LinkInfo {
  const link = inSandbox(netns, (rtnl) => {
    const made = rtnl.getLink(madeAs);
    if (made === null) throw new LanplugError('Internal', `${madeAs} is not in ${netns} after it was made there`);
    rtnl.rename(made, ifname);
    const link = { ...made, name: ifname };
    for (const address of addresses) rtnl.addAddress(link, address);
    rtnl.setUp(link);
    for (const route of routes) rtnl.replaceRoute(route.destination, link, null, route.gateway);
    return rtnl.getLink(ifname) ?? link;
  });
  // Gratuitous ARP / unsolicited NA whenever the link comes up or its MAC changes, from inside.
  writeSandboxSysctl(netns, `/proc/sys/net/ipv4/conf/${ifname}/arp_notify`, '1');
  writeSandboxSysctl(netns, `/proc/sys/net/ipv6/conf/${ifname}/ndisc_notify`, '1', true);
  return link;
}

/** A /proc/sys/net file binds to the namespace of the thread that opens it: opened inside, written outside. */
function writeSandboxSysctl(netns: string, path: string, value: string, optional = false): void {
  let fd: number | null;
  try {
    fd = inNetworkNamespace(
      netns,
      () => {
        try {
          return openSync(path, 'w');
        } catch (err) {
          if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return null; // IPv6 off in there
          throw err;
        }
      },
      (made) => {
        if (made !== null) closeSync(made);
      },
    );
  } catch (err) {
    throw withContext(`write ${path} in ${netns}`, err);
  }
  if (fd === null) return;
  try {
    writeSync(fd, value);
  } finally {
    closeSync(fd);
  }
}

/**
 * Deletes the sandbox's link under any of `names` (the name lanplug made it
 * under, the one it was renamed to) if it is the one lanplug put there (its
 * MAC, for macvlan); a namespace or link already gone is success.
 */
export function removeFromSandbox(netns: string, names: readonly string[], mac: string | null): void {
  let rtnl: Rtnl;
  try {
    rtnl = openRtnl({ netns });
  } catch (err) {
    if (err instanceof LanplugError && err.code === 'NotFound') return; // the namespace took the link with it
    throw err;
  }
  try {
    for (const name of names) {
      const link = rtnl.getLink(name);
      if (link !== null && (mac === null || link.mac === mac)) rtnl.deleteLink(link);
    }
  } finally {
    rtnl.close();
  }
}

/** What tells an endpoint's link in a sandbox from the rest of it. */
export interface LeftLink {
  /** The link group of the daemon that made it (lanplug's mark; another daemon's links carry theirs). */
  group: number;
  /** The endpoint's MAC (macvlan); null for ipvlan, whose links all carry the parent's. */
  mac: string | null;
  /** The endpoint's addresses: what tells one ipvlan link of lanplug's from another in one sandbox. */
  addresses: readonly IpAddress[];
}

/**
 * Deletes the link lanplug made for an endpoint Docker has deleted, found in the sandbox Docker
 * never emptied (`netns`, the Join's SandboxKey): Docker moves a link back out before
 * DeleteEndpoint, but a dockerd killed while its containers ran leaves their sandboxes behind, and
 * a macvlan left there keeps its MAC (an ipvlan its address) busy on the parent: the next container
 * Docker gives that address fails to start with "address already in use". Only a link of lanplug's
 * group with the endpoint's MAC (or, for ipvlan, one of its addresses) is touched. Returns the name
 * it had there, or null (nothing left: the namespace or the link is gone, the usual case).
 */
export function removeLeftInSandbox(netns: string, left: LeftLink): string | null {
  let rtnl: Rtnl;
  try {
    rtnl = openRtnl({ netns });
  } catch (err) {
    if (err instanceof LanplugError && err.code === 'NotFound') return null;
    throw err;
  }
  try {
    const ours = rtnl
      .listLinks()
      .filter((l) => l.group === left.group && (l.kind === 'macvlan' || l.kind === 'ipvlan'));
    const holding = (link: LinkInfo): boolean =>
      left.mac !== null
        ? link.mac === left.mac
        : [...rtnl.listAddresses(4), ...rtnl.listAddresses(6)].some(
            (a) => a.index === link.index && left.addresses.some((x) => sameAddress(x, a.prefix.address)),
          );
    const link = ours.find(holding);
    if (link === undefined) return null;
    rtnl.deleteLink(link);
    return link.name;
  } finally {
    rtnl.close();
  }
}
