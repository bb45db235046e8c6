/**
 * What the lease keeper does inside a container's network namespace (Docker's
 * SandboxKey): find the container's link, and put a moved lease in place.
 * Each call opens a netlink socket there and closes it again.
 */
import { environment } from '../errors';
import type { RouteInfo } from '../link/ip';
import type { LinkInfo } from '../link/link';
import { openRtnl } from '../link/rtnl';
import type { Lease, LeaseRecord } from '../model/lease';
import { sameAddress, type IpAddress } from '../net/address';

/** The rtnetlink protocol of the routes the kernel makes itself (an address's subnet route). */
const RTPROT_KERNEL = 2;

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
 * the last IPv4 address also removes the routes through the link, so they are
 * put back after: the default route, and those a network's configuration
 * added (a CNI `routes`, a Podman `--route`), each via the new router where it
 * went via the old one (a route without a gateway in the configuration took
 * the router; gatewayAfterRenewal). What cannot be put back is reported, the
 * rest is put back.
 */
export function applyInContainer(sandboxKey: string, record: LeaseRecord, old: Lease, next: Lease): void {
  const link = containerLink(sandboxKey, record, old);
  const rtnl = openRtnl({ netns: sandboxKey });
  try {
    // Only routes that already leave by this link are lanplug's to move: an --internal network has no
    // default route, and on a container with several networks Docker gave the default route to one of
    // them. The kernel's own (the subnet's) come back with the address. IPv6 routes are not the kernel's to
    // remove with an address (only its prefix route goes): they stay as they are (kernel lane, links.test.ts).
    const routes =
      next.family === 4
        ? rtnl.listRoutes(4).filter((r) => r.oifIndex === link.index && r.protocol !== RTPROT_KERNEL)
        : [];
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
    const failures: string[] = [];
    for (const route of routes) {
      try {
        rtnl.replaceRoute(route.destination, link, null, gatewayAfterRenewal(route, old, next));
      } catch (err) {
        failures.push(err instanceof Error ? err.message : String(err));
      }
    }
    if (failures.length > 0) throw environment(failures.join('; '));
  } finally {
    rtnl.close();
  }
}

/**
 * A route's gateway after a renewal moved the lease. A route via the old router goes via the new one
 * (Docker's default route, and a configured route that took the router); one via a gateway of its own
 * stays, the default route too (a CNI `routes` or Podman `--route` 0.0.0.0/0 chose it over the
 * server's router: a server answering a rebind, which any server on the LAN may, does not take the
 * container's traffic). A default route without a gateway goes via the new router.
 */
export function gatewayAfterRenewal(
  route: Pick<RouteInfo, 'destination' | 'gateway'>,
  old: Lease,
  next: Lease,
): IpAddress | null {
  if (route.destination.prefixLength === 0 && route.gateway === null) return next.router;
  return followed(route.gateway, old, next);
}

/** A route's gateway after a renewal: the new router where it was the old one, else as it was. */
function followed(gateway: IpAddress | null, old: Lease, next: Lease): IpAddress | null {
  if (gateway === null || old.router === null || next.router === null) return gateway;
  return sameAddress(gateway, old.router) ? next.router : gateway;
}
