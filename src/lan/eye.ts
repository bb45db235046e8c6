/**
 * The link lanplug probes and announces from on a macvlan parent: a
 * bridge-mode macvlan `lpe-<parent index>` with no address of its own (IPv6
 * off, so it never speaks on its own behalf). From the parent itself, probes
 * reach the LAN but are blind to containers on sibling macvlans (lab-verified,
 * research note §6); from a bridge-mode sibling they see both. One per parent,
 * made on first use; reconcile removes it once no lanplug network uses the parent.
 */
import { writeFileSync } from 'node:fs';
import type { LinkInfo } from '../link/link';
import type { Rtnl } from '../link/rtnl';
import type { NetworkRecord } from '../model/network';

export const EYE_LINK_PREFIX = 'lpe-';

export function eyeName(parent: LinkInfo): string {
  return `${EYE_LINK_PREFIX}${parent.index}`;
}

export function ensureEye(rtnl: Rtnl, parent: LinkInfo): LinkInfo {
  const name = eyeName(parent);
  const present = rtnl.getLink(name);
  if (present !== null && present.parentIndex === parent.index && present.up) return present;
  if (present !== null) rtnl.deleteLink(present);
  const eye = rtnl.createMacvlan({ name, parentIndex: parent.index, mode: 'bridge' });
  // No link-local address, no DAD, no router solicitations: the eye sends only what lanplug sends.
  try {
    writeFileSync(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, '1');
  } catch (err) {
    // A kernel without IPv6 has no such file: nothing to turn off. A read-only /proc/sys (a managed
    // plugin's): no address of the kernel's making, which keeps the link as quiet.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') rtnl.stopIpv6AddressGeneration(eye);
  }
  rtnl.setUp(eye);
  return eye;
}

/** Eyes whose parent no lanplug network uses any more (or that sit on the wrong parent). */
export function unusedEyes(rtnl: Rtnl, networks: readonly NetworkRecord[]): LinkInfo[] {
  const links = rtnl.listLinks();
  const usedParents = new Set(
    networks.flatMap((n) => links.filter((l) => l.name === n.spec.parent.name).map((l) => l.index)),
  );
  return links.filter(
    (link) =>
      link.name.startsWith(EYE_LINK_PREFIX) &&
      link.kind === 'macvlan' &&
      !(
        link.parentIndex !== null &&
        usedParents.has(link.parentIndex) &&
        link.name === `${EYE_LINK_PREFIX}${link.parentIndex}`
      ),
  );
}

export function removeUnusedEyes(rtnl: Rtnl, networks: readonly NetworkRecord[]): void {
  for (const eye of unusedEyes(rtnl, networks)) rtnl.deleteLink(eye);
}
