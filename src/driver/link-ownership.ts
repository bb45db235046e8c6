/**
 * Whose links are whose. Every link a lanplug daemon makes carries the link
 * group of its state directory (two random numbers kept in the store: one for
 * live links, one for links parked for removal), so that two daemons on one
 * host — a second one with its own --state-dir, the service beside the
 * managed plugin — never take each other's links for crash leftovers. A name
 * says what a link is for; only the group says whose it is. A link of the
 * same name and kind that the OS or the user made (an `eth0.50` ifupdown made
 * again) has the default group, and is never lanplug's.
 *
 * Links made before lanplug marked its links carry the default group: the
 * first start with a state directory's groups adopts those its store records
 * (and removes what lanplug always removed at start), once.
 */
import { randomInt } from 'node:crypto';
import { EYE_LINK_PREFIX } from '../lan/eye';
import type { LinkInfo } from '../link/link';
import { openRtnl, type Rtnl } from '../link/rtnl';
import { PARKED_LINK_GROUP } from '../link/reaper';
import type { Logger } from '../log';
import type { Store } from '../state/store';
import { ASKING_LINK_PREFIX, ENDPOINT_LINK_PREFIX, PROBE_LINK_PREFIX, SHIM_LINK_PREFIX, shimLinkName } from './names';
import { isTheLinkMade, ownedParent } from './parent';

export interface LinkGroups {
  /** Links this state directory's daemon made and uses. */
  live: number;
  /** Links it parked for removal (link/reaper.ts). */
  parked: number;
}

const LIVE_KEY = 'link_group';
const PARKED_KEY = 'parked_link_group';
const ADOPTED_KEY = 'legacy_links_adopted';
/**
 * Away from 0 (every link's default), the low numbers people give groups by hand and the legacy
 * parked group; below 2^31, which iproute2 prints (and parses) as a signed number.
 */
const GROUP_MIN = 0x0010_0000;
const GROUP_MAX = 0x7fff_fff0;

/** The groups recorded in the store, or null when no daemon of this version has run on it. */
export function recordedLinkGroups(store: Pick<Store, 'getMeta'>): LinkGroups | null {
  const live = Number(store.getMeta(LIVE_KEY) ?? NaN);
  const parked = Number(store.getMeta(PARKED_KEY) ?? NaN);
  return Number.isInteger(live) && Number.isInteger(parked) ? { live, parked } : null;
}

/**
 * The rtnetlink handle of this state directory's owner: its links carry the directory's group.
 * The groups are drawn and recorded on first use; links made before groups existed are adopted
 * (once, recorded as done only once it went through, so that a crash halfway repeats it).
 */
export function openOwnRtnl(store: Store, log: Logger): { rtnl: Rtnl; groups: LinkGroups } {
  let groups = recordedLinkGroups(store);
  if (groups === null) {
    const live = randomInt(GROUP_MIN, GROUP_MAX);
    let parked = randomInt(GROUP_MIN, GROUP_MAX);
    while (parked === live) parked = randomInt(GROUP_MIN, GROUP_MAX);
    groups = { live, parked };
    store.transaction(() => {
      store.setMeta(LIVE_KEY, String(live));
      store.setMeta(PARKED_KEY, String(parked));
    });
    log.info('link groups drawn for this state directory', { live, parked });
  }
  const rtnl = openRtnl({ group: groups.live });
  if (store.getMeta(ADOPTED_KEY) !== 'yes') {
    try {
      adoptLegacyLinks(rtnl, store, log);
      store.setMeta(ADOPTED_KEY, 'yes');
    } catch (err) {
      rtnl.close();
      throw err;
    }
  }
  return { rtnl, groups };
}

/**
 * Links an earlier lanplug made (default group) that this store records are moved into its
 * group; what lanplug always removed at start (its parked group, feature probes, DHCP asking
 * links, endpoint links no endpoint owns, LAN eyes under their old names) is removed, as then.
 */
export function adoptLegacyLinks(rtnl: Rtnl, store: Store, log: Logger): void {
  const networks = store.listNetworks();
  const recorded = new Set<string>([
    ...store.listAllEndpoints().map((e) => e.linkName),
    ...networks.flatMap((n) => (n.spec.hostAccess === null ? [] : [shimLinkName(n.spec.networkId)])),
    ...store.listLeftovers().map((l) => l.name),
  ]);
  const parents = new Map(networks.flatMap((n) => (ownedParent(n) === null ? [] : [[n.spec.parent.name, n] as const])));
  const parentIndexes = new Set(
    networks.flatMap((n) => {
      const link = rtnl.getLink(n.spec.parent.name);
      return link === null ? [] : [link.index];
    }),
  );
  let adopted = 0;
  let removed = 0;
  for (const link of rtnl.listLinks()) {
    if (link.group !== 0) {
      if (link.group === PARKED_LINK_GROUP && rtnl.deleteLink(link)) removed++;
      continue;
    }
    const network = parents.get(link.name);
    const parentPlan = network === undefined ? null : ownedParent(network);
    if (recorded.has(link.name) || (parentPlan !== null && isTheLinkMade(rtnl, parentPlan, link))) {
      if (rtnl.setGroup(link, rtnl.ownGroup)) adopted++;
    } else if (wasAlwaysRemoved(link, parentIndexes)) {
      if (rtnl.deleteLink(link)) removed++;
    }
  }
  log.info('links of an earlier lanplug adopted into this state directory', { adopted, removed });
}

function wasAlwaysRemoved(link: LinkInfo, parentIndexes: ReadonlySet<number>): boolean {
  const kinds = ['macvlan', 'ipvlan'];
  if (link.name.startsWith(PROBE_LINK_PREFIX)) return true;
  if (link.name.startsWith(ASKING_LINK_PREFIX)) return link.kind === 'macvlan';
  // `lp-` or `lh-` and a 12-character id: an endpoint link or a shim no record names.
  if (link.name.startsWith(ENDPOINT_LINK_PREFIX) || link.name.startsWith(SHIM_LINK_PREFIX))
    return link.name.length === 15 && kinds.includes(link.kind ?? '');
  // An eye under its old name, `lpe-<parent index>`, on a parent of this store's networks.
  return (
    link.name === `${EYE_LINK_PREFIX}-${link.parentIndex ?? ''}` &&
    link.kind === 'macvlan' &&
    link.parentIndex !== null &&
    parentIndexes.has(link.parentIndex)
  );
}
