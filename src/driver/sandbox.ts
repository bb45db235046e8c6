/**
 * A link in a runtime's network namespace (CNI's CNI_NETNS): what Docker
 * does itself for its containers, lanplug does for CNI runtimes. The link is
 * made from the host namespace (where its parent is) directly inside, then
 * named and configured from a netlink socket opened inside: addresses, up,
 * routes, and the notify sysctls that make the kernel announce it.
 */
import { closeSync, openSync, readdirSync, readFileSync, statSync, writeSync } from 'node:fs';
import { LanplugError, withContext } from '../errors';
import type { LinkInfo, LinkRef } from '../link/link';
import type { DropRouteType } from '../link/ip';
import { openRtnl, type Rtnl } from '../link/rtnl';
import { sameAddress, type IpAddress, type IpPrefix } from '../net/address';
import { inNetworkNamespace } from '../netlink/netns';

export interface SandboxRoute {
  destination: IpPrefix;
  gateway: IpAddress | null;
  /** A route that drops what it matches (netavark 2.0's `--route <destination>,blackhole`): no gateway, no link. */
  drop?: DropRouteType;
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
    addSandboxRoutes(rtnl, link, routes);
    return rtnl.getLink(ifname) ?? link;
  });
  // Gratuitous ARP / unsolicited NA whenever the link comes up or its MAC changes, from inside.
  writeSandboxSysctl(netns, `/proc/sys/net/ipv4/conf/${ifname}/arp_notify`, '1');
  writeSandboxSysctl(netns, `/proc/sys/net/ipv6/conf/${ifname}/ndisc_notify`, '1', true);
  return link;
}

/** The routes of a network in a sandbox: through `link` (via its gateway, if any), or dropping what they match. */
export function addSandboxRoutes(rtnl: Rtnl, link: LinkRef, routes: readonly SandboxRoute[]): void {
  for (const route of routes)
    if (route.drop === undefined) rtnl.replaceRoute(route.destination, link, null, route.gateway);
    else rtnl.replaceDropRoute(route.destination, route.drop);
}

/** A /proc/sys/net file binds to the namespace of the thread that opens it: opened inside, written outside. */
export function writeSandboxSysctl(netns: string, path: string, value: string, optional = false): void {
  const fd = openSandboxSysctl(netns, path, 'w', optional);
  if (fd === null) return;
  try {
    writeSync(fd, value);
  } finally {
    closeSync(fd);
  }
}

/** A /proc/sys/net file of the namespace, trimmed; null when it does not exist there (IPv6 off, no such link). */
export function readSandboxSysctl(netns: string, path: string): string | null {
  const fd = openSandboxSysctl(netns, path, 'r', true);
  if (fd === null) return null;
  try {
    return readFileSync(fd, 'utf8').trim();
  } finally {
    closeSync(fd);
  }
}

function openSandboxSysctl(netns: string, path: string, flags: 'r' | 'w', optional: boolean): number | null {
  try {
    return inNetworkNamespace(
      netns,
      () => {
        try {
          return openSync(path, flags);
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
    throw withContext(`${flags === 'w' ? 'write' : 'read'} ${path} in ${netns}`, err);
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

/**
 * The routes that drop (SandboxRoute.drop) a network put in a sandbox, removed at its teardown as
 * netavark's own drivers remove theirs: they belong to no link, so the link's removal leaves them.
 * A namespace that is gone, or a route already gone, is success.
 */
export function removeDropRoutes(netns: string, routes: readonly SandboxRoute[]): void {
  const drops = routes.filter((r) => r.drop !== undefined);
  if (drops.length === 0) return;
  let rtnl: Rtnl;
  try {
    rtnl = openRtnl({ netns });
  } catch (err) {
    if (err instanceof LanplugError && err.code === 'NotFound') return;
    throw err;
  }
  try {
    for (const route of drops) if (route.drop !== undefined) rtnl.deleteDropRoute(route.destination, route.drop);
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
  /** The network's parent in the daemon's namespace (a link in a sandbox names its lower device by that index); null when the parent is gone. */
  parentIndex: number | null;
}

/** What removeLeftInSandbox did. */
export type LeftInSandbox =
  | { kind: 'nothing' }
  | { kind: 'removed'; name: string }
  /** A process still lives in the namespace: a container runs there, whatever Docker said; nothing is touched. */
  | { kind: 'in use'; name: string };

/**
 * Deletes the link lanplug made for an endpoint Docker has deleted, found in the sandbox Docker
 * never emptied (`netns`, the Join's SandboxKey): Docker moves a link back out before
 * DeleteEndpoint, but a dockerd killed while its containers ran leaves their sandboxes behind, and
 * a macvlan left there keeps its MAC (an ipvlan its address) busy on the parent: the next container
 * Docker gives that address fails to start with "address already in use". Only a link of lanplug's
 * group on the network's parent with the endpoint's MAC (or, for ipvlan, one of its addresses) is
 * touched, and only in a namespace no process lives in (a left sandbox is held by its file alone).
 */
export function removeLeftInSandbox(netns: string, left: LeftLink): LeftInSandbox {
  let rtnl: Rtnl;
  try {
    rtnl = openRtnl({ netns });
  } catch (err) {
    if (err instanceof LanplugError && err.code === 'NotFound') return { kind: 'nothing' };
    throw err;
  }
  try {
    const candidates = rtnl
      .listLinks()
      .filter(
        (l) =>
          l.group === left.group &&
          (l.kind === 'macvlan' || l.kind === 'ipvlan') &&
          (left.parentIndex === null || l.parentIndex === left.parentIndex),
      );
    if (candidates.length === 0) return { kind: 'nothing' };
    const addresses = left.mac === null ? [...rtnl.listAddresses(4), ...rtnl.listAddresses(6)] : [];
    const link = candidates.find((l) =>
      left.mac !== null
        ? l.mac === left.mac
        : addresses.some((a) => a.index === l.index && left.addresses.some((x) => sameAddress(x, a.prefix.address))),
    );
    if (link === undefined) return { kind: 'nothing' };
    if (namespaceHasProcesses(netns)) return { kind: 'in use', name: link.name };
    rtnl.deleteLink(link);
    return { kind: 'removed', name: link.name };
  } finally {
    rtnl.close();
  }
}

/** Whether any process's network namespace is the one `netns` names (same device and inode as /proc/PID/ns/net). */
function namespaceHasProcesses(netns: string): boolean {
  const target = statSync(netns);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const ns = statSync(`/proc/${pid}/ns/net`);
      if (ns.ino === target.ino && ns.dev === target.dev) return true;
    } catch {
      // the process ended while we looked
    }
  }
  return false;
}
