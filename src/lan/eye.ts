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
/** Linux interface names are at most 15 bytes. */
const NAME_MAX = 15;
/** Names tried for one parent: a second daemon whose tag happens to be this one's gets the next. */
const TAGS_TRIED = 3;

/**
 * The names this daemon's eye on a parent may have, in the order tried: `lpe<tag>-<parent index>`,
 * the tag 3 characters of the daemon's link group (a different part of it for each try);
 * `lpe<tag>_<index in base 36>` where the decimal index would not fit in 15 bytes; `lpe-<index>`
 * where links carry no group (tests, tools).
 */
export function eyeNames(rtnl: Pick<Rtnl, 'ownGroup'>, parentIndex: number): string[] {
  if (rtnl.ownGroup === 0) return [`${EYE_LINK_PREFIX}-${parentIndex}`];
  return Array.from({ length: TAGS_TRIED }, (_, i) => {
    const tag = (Math.floor(rtnl.ownGroup / 36 ** (3 * i)) % 36 ** 3).toString(36).padStart(3, '0');
    const decimal = `${EYE_LINK_PREFIX}${tag}-${parentIndex}`;
    return decimal.length <= NAME_MAX ? decimal : `${EYE_LINK_PREFIX}${tag}_${parentIndex.toString(36)}`;
  });
}

/**
 * This daemon's eye on `parent`, made if missing: a bridge-mode macvlan with no address and
 * IFF_NOARP. Without NOARP the kernel would answer ARP on it for every address of the host's
 * namespace (arp_ignore 0), with the eye's MAC: a LAN router that keeps the last answer would send
 * the host's own traffic, SSH included, to a link that drops it (rp_filter). The probes and
 * announcements it carries are lanplug's own frames on a packet socket, which NOARP does not stop.
 */
export function ensureEye(rtnl: Rtnl, parent: LinkInfo): LinkInfo {
  const names = eyeNames(rtnl, parent.index);
  let name: string | null = null;
  for (const candidate of names) {
    const present = rtnl.getLink(candidate);
    if (present === null) {
      name ??= candidate;
      continue;
    }
    // Another daemon's link of that name (its tag is this one's): the next name.
    if (!rtnl.owns(present)) continue;
    if (present.parentIndex === parent.index && present.up && present.noArp !== false) return present;
    rtnl.deleteLink(present); // this daemon's, but not what it must be: made again
    name ??= candidate;
  }
  if (name === null)
    throw new LanplugError(
      'Conflict',
      `every name this lanplug's LAN eye on ${parent.name} may have (${names.join(', ')}) is another daemon's link; remove those no lanplug daemon uses`,
    );
  const eye = rtnl.createMacvlan({ name, parentIndex: parent.index, mode: 'bridge', noArp: true });
  // No link-local address, no DAD, no router solicitations: the eye sends only what lanplug sends.
  silenceIpv6(rtnl, eye);
  rtnl.setUp(eye);
  return eye;
}

/**
 * This daemon's eyes whose parent none of its networks uses any more (or that sit on the wrong
 * parent). Only this daemon's eyes are read, and each one's parent: the sync runs this after any
 * link changed (eye-sweep.ts), and a dump of every link of the namespace beside 10,000 others cost
 * ~140 ms of CPU each time.
 */
export function unusedEyes(rtnl: Rtnl, networks: readonly NetworkRecord[]): LinkInfo[] {
  const used = usedParentNames(networks);
  return rtnl.listOwnLinks('macvlan', EYE_LINK_PREFIX).filter((eye) => {
    if (eye.parentIndex === null || !eyeNames(rtnl, eye.parentIndex).includes(eye.name)) return true;
    const parent = rtnl.getLinkByIndex(eye.parentIndex);
    return parent === null || !used.has(parent.name);
  });
}

/** The parents whose eyes `networks` need: all that unusedEyes reads of the networks. */
export function usedParentNames(networks: readonly NetworkRecord[]): Set<string> {
  return new Set(networks.map((n) => n.spec.parent.name));
}

export function removeUnusedEyes(rtnl: Rtnl, networks: readonly NetworkRecord[]): void {
  for (const eye of unusedEyes(rtnl, networks)) rtnl.deleteLink(eye);
}
