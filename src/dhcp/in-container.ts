/**
 * What the lease keeper does inside a container's network namespace (Docker's
 * SandboxKey): find the container's link, and put a moved lease in place.
 * Each call opens a netlink socket there and closes it again.
 */
import { environment } from '../errors';
import type { LinkInfo } from '../link/link';
import { openRtnl } from '../link/rtnl';
import type { Lease, LeaseRecord } from '../model/lease';
import { parsePrefix, sameAddress } from '../net/address';

const DEFAULT_ROUTE = parsePrefix('0.0.0.0/0');

/** The container's link in its namespace: the one with the lease's MAC (ipvlan: and its address). */
export function containerLink(sandboxKey: string, record: LeaseRecord, lease: Lease): LinkInfo {
  const rtnl = openRtnl({ netns: sandboxKey });
  try {
    const candidates = rtnl.listLinks().filter((l) => l.mac === record.identity.mac);
    if (candidates.length <= 1) {
      const [only] = candidates;
      if (only === undefined) throw environment(`no link with MAC ${record.identity.mac} in ${sandboxKey}`);
      return only;
    }
    const holder = rtnl.listAddresses(lease.family).find((a) => sameAddress(a.prefix.address, lease.address.address));
    const link = candidates.find((l) => l.index === holder?.index);
    if (link === undefined) throw environment(`no link holds ${lease.address.address.text} in ${sandboxKey}`);
    return link;
  } finally {
    rtnl.close();
  }
}

/**
 * The old address goes first: a new one in the same subnet would be its
 * secondary, and the kernel removes secondaries with their primary. Removing
 * the last IPv4 address also removes the routes through the link, so the
 * default route is put back after.
 */
export function applyInContainer(sandboxKey: string, record: LeaseRecord, old: Lease, next: Lease): void {
  const link = containerLink(sandboxKey, record, old);
  const rtnl = openRtnl({ netns: sandboxKey });
  try {
    // Only a default route that already leaves by this link is lanplug's to move: an --internal network has
    // none, and on a container with several networks Docker gave the default route to one of them.
    const defaultHere =
      next.family === 4 &&
      rtnl.listRoutes(4).some((r) => r.destination.prefixLength === 0 && r.oifIndex === link.index);
    if (!sameAddress(next.address.address, old.address.address)) {
      rtnl.deleteAddress(link, old.address);
      try {
        rtnl.addAddress(link, next.address);
      } catch (err) {
        // Never leave the container without an address: the old one back, and the failure reported.
        rtnl.addAddress(link, old.address);
        throw err;
      }
    }
    if (defaultHere && next.router !== null) rtnl.replaceRoute(DEFAULT_ROUTE, link, null, next.router);
  } finally {
    rtnl.close();
  }
}
