/**
 * The link lanplug probes and announces from on a macvlan parent: a
 * bridge-mode macvlan `lpe<tag>-<parent index>` with no address of its own
 * (IPv6 off, so it never speaks on its own behalf). From the parent itself,
 * probes reach the LAN but are blind to containers on sibling macvlans
 * (lab-verified, research note §6); from a bridge-mode sibling they see both.
 * One per parent and daemon (the tag comes from the daemon's link group, so
 * that a second daemon on the host has eyes of its own), made on first use;
 * it goes with the last network of its daemon on the parent, and reconcile
 * removes any that outlived it.
 */
import { LanplugError } from '../errors';
import type { LinkInfo } from '../link/link';
import { silenceIpv6 } from '../link/quiet';
import type { Rtnl } from '../link/rtnl';
import type { NetworkRecord } from '../model/network';

export const EYE_LINK_PREFIX = 'lpe';

/** `lpe<3 characters of the daemon's link group>-<parent index>`; `lpe-<index>` where links carry no group. */
export function eyeName(rtnl: Pick<Rtnl, 'ownGroup'>, parentIndex: number): string {
  const tag = rtnl.ownGroup === 0 ? '' : (rtnl.ownGroup % 36 ** 3).toString(36).padStart(3, '0');
  return `${EYE_LINK_PREFIX}${tag}-${parentIndex}`;
}

export function ensureEye(rtnl: Rtnl, parent: LinkInfo): LinkInfo {
  const name = eyeName(rtnl, parent.index);
  const present = rtnl.getLink(name);
  if (present !== null && !rtnl.owns(present))
    throw new LanplugError(
      'Conflict',
      `link ${name} is not this lanplug's (link group ${present.group}, not ${rtnl.ownGroup}): another lanplug daemon on this host uses that name for its LAN eye on ${parent.name}; remove it if no daemon does`,
    );
  if (present !== null && present.parentIndex === parent.index && present.up) return present;
  if (present !== null) rtnl.deleteLink(present);
  const eye = rtnl.createMacvlan({ name, parentIndex: parent.index, mode: 'bridge' });
  // No link-local address, no DAD, no router solicitations: the eye sends only what lanplug sends.
  silenceIpv6(rtnl, eye);
  rtnl.setUp(eye);
  return eye;
}

/** This daemon's eyes whose parent none of its networks uses any more (or that sit on the wrong parent). */
export function unusedEyes(rtnl: Rtnl, networks: readonly NetworkRecord[]): LinkInfo[] {
  const links = rtnl.listLinks();
  const usedParents = new Set(
    networks.flatMap((n) => links.filter((l) => l.name === n.spec.parent.name).map((l) => l.index)),
  );
  return links.filter(
    (link) =>
      link.name.startsWith(EYE_LINK_PREFIX) &&
      link.kind === 'macvlan' &&
      rtnl.owns(link) &&
      !(
        link.parentIndex !== null &&
        usedParents.has(link.parentIndex) &&
        link.name === eyeName(rtnl, link.parentIndex)
      ),
  );
}

export function removeUnusedEyes(rtnl: Rtnl, networks: readonly NetworkRecord[]): void {
  for (const eye of unusedEyes(rtnl, networks)) rtnl.deleteLink(eye);
}
