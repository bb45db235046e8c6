/**
 * What the lease keeper needs of the networks its leases are on, from the
 * floors above it (endpoint/lease-networks.ts implements it: driver/ and the
 * LAN checks live there), and how it opens a channel on a link.
 */
import { openRtnl } from '../link/rtnl';
import type { Family, IpAddress, IpPrefix } from '../net/address';
import { IFA_F_TENTATIVE } from '../netlink/codec';
import { PacketChannel, type DhcpChannel } from './channel';
import type { OfferCheck } from './outcomes';
import { DHCP_CLIENT_PORT } from './message';
import { DHCP6_CLIENT_PORT } from './message6';

/** RT_SCOPE_LINK: a link-local address's scope. */
const SCOPE_LINK = 253;

/** The link a lease's frames leave by, in the daemon's namespace. */
export interface SendLink {
  index: number;
  name: string;
}

export interface LeaseNetworks {
  /** The LAN link of a network (the parent, or lanplug's own sibling of it); null when it has none now. */
  sendLink(networkId: string): SendLink | null;
  /** A server moved a container: its endpoint's address follows (what the LAN watch defends, what status shows). */
  moved(networkId: string, endpointId: string, address: IpPrefix): void;
  /**
   * How the addresses a network's servers bind (offered, or moved to at a renewal; IPv4 and IPv6) are
   * checked before use; none: used as given.
   */
  offerCheck(networkId: string): OfferCheck | undefined;
}

/** For tests and tools without networks: no link, nothing checked, nothing to follow. */
export const NO_LEASE_NETWORKS: LeaseNetworks = {
  sendLink: () => null,
  moved: () => undefined,
  offerCheck: () => undefined,
};

/**
 * A DHCP (or DHCPv6) client's channel on `link`, in `netns` when given (a container's), else the daemon's.
 * DHCPv6 in a container sends from the link-local address the link holds there (ready: DAD done).
 */
export function openChannel(link: SendLink, where: string, family: Family, netns?: string): DhcpChannel {
  const source6 = family === 6 && netns !== undefined ? linkLocalIn(netns, link.index) : null;
  return PacketChannel.open(link.index, where, {
    family,
    port: family === 4 ? DHCP_CLIENT_PORT : DHCP6_CLIENT_PORT,
    ...(netns === undefined ? {} : { netns }),
    ...(source6 === null ? {} : { source6 }),
  });
}

/** The link-local address `index` holds in `netns`, past DAD; null when it has none (yet). */
export function linkLocalIn(netns: string, index: number): IpAddress | null {
  const rtnl = openRtnl({ netns });
  try {
    const held = rtnl
      .listAddresses(6)
      .find((a) => a.index === index && a.scope === SCOPE_LINK && ((a.flags ?? 0) & IFA_F_TENTATIVE) === 0);
    return held?.prefix.address ?? null;
  } finally {
    rtnl.close();
  }
}
