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
 * first start with a state directory's groups adopts those its store records,
 * once. A second process acting for the same groups (a daemon on a copy of
 * the state directory) is refused: see holdLinkGroup.
 */
import { randomInt } from 'node:crypto';
import { createServer } from 'node:net';
import { LanplugError } from '../errors';
import { EYE_LINK_PREFIX } from '../lan/eye';
import type { LinkInfo } from '../link/link';
import { openRtnl, type Rtnl } from '../link/rtnl';
import { LinkReaper, PARKED_LINK_GROUP } from '../link/reaper';
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
 * This state directory's groups, drawn and recorded on its first use. At the first draw, groups
 * whose eye tag another lanplug's links already use are drawn again (lan/eye.ts).
 */
export function linkGroupsOf(store: Store, log: Logger): LinkGroups {
  const recorded = recordedLinkGroups(store);
  if (recorded !== null) return recorded;
  const live = randomInt(GROUP_MIN, GROUP_MAX);
  let parked = randomInt(GROUP_MIN, GROUP_MAX);
  while (parked === live) parked = randomInt(GROUP_MIN, GROUP_MAX);
  store.transaction(() => {
    store.setMeta(LIVE_KEY, String(live));
    store.setMeta(PARKED_KEY, String(parked));
  });
  log.info('link groups drawn for this state directory', { live, parked });
  return { live, parked };
}

/**
 * Held for as long as this process acts for the state directory: a second process with the same
 * link group — a daemon on a copy of the directory — would take this one's links for its own and
 * remove them. An abstract unix socket (one per network namespace, gone with the process, however
 * it ends) named after the group.
 */
export async function holdLinkGroup(groups: LinkGroups, stateDir: string): Promise<{ release(): Promise<void> }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new LanplugError(
              'Conflict',
              `another lanplug on this host acts for link group ${groups.live}, the group of ${stateDir}: it runs on a copy of this state directory; give each lanplug daemon a state directory of its own (a new one is made empty: lanplug daemon --state-dir DIR)`,
            )
          : err,
      );
    });
    server.listen(`\0lanplug-link-group-${groups.live}`, resolve);
  });
  return { release: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** What the daemon acts on its links with, held until release. */
export interface OwnLinks {
  rtnl: Rtnl;
  /** Removes links off the request path, parking them in this directory's parked group meanwhile. */
  reaper: LinkReaper;
  /** The reaper, the handle and the group's hold, in reverse order of taking. */
  release(): Promise<void>;
}

/**
 * The daemon's hold on its state directory's links: the link groups (drawn once), held against a
 * second process on a copy of the directory; the rtnetlink handle that makes links in the live
 * group (an earlier lanplug's adopted); the reaper. Links a daemon parked for removal and did not
 * see go (it died) are removed now; their leftover records are reconciled at resume.
 */
export async function holdOwnLinks(store: Store, stateDir: string, log: Logger): Promise<OwnLinks> {
  const groups = linkGroupsOf(store, log);
  const held = await holdLinkGroup(groups, stateDir);
  let rtnl: Rtnl | null = null;
  let reaper: LinkReaper | null = null;
  const release = async (): Promise<void> => {
    await reaper?.close();
    rtnl?.close();
    await held.release();
  };
  try {
    rtnl = openOwnRtnl(store, log, { groups }).rtnl;
    reaper = new LinkReaper(rtnl, log, { parkedGroup: groups.parked });
    reaper.removeGroup();
    return { rtnl, reaper, release };
  } catch (err) {
    await release();
    throw err;
  }
}

/**
 * The rtnetlink handle of this state directory's owner: its links carry the directory's group.
 * Links made before groups existed are adopted (once, recorded as done only once it went through,
 * so that a failure repeats it at the next start). `dryRun` (`lanplug gc --dry-run`): nothing is
 * adopted or drawn; a directory without groups yet is looked at as an earlier lanplug would.
 */
export function openOwnRtnl(
  store: Store,
  log: Logger,
  options: { dryRun?: boolean; groups?: LinkGroups } = {},
): { rtnl: Rtnl; groups: LinkGroups | null } {
  if (options.dryRun === true) {
    const groups = recordedLinkGroups(store);
    return { rtnl: openRtnl({ group: groups?.live ?? 0 }), groups };
  }
  const groups = options.groups ?? linkGroupsOf(store, log);
  const rtnl = openRtnl({ group: groups.live });
  if (store.getMeta(ADOPTED_KEY) !== 'yes') {
    // A failure is logged and tried again at the next start; it does not keep the daemon from serving.
    if (adoptLegacyLinks(rtnl, store, log)) store.setMeta(ADOPTED_KEY, 'yes');
  }
  return { rtnl, groups };
}

/**
 * Links an earlier lanplug made (default group) that this store records are moved into its
 * group, and its LAN eyes under their old names on this store's parents go (they answered ARP
 * for the host's addresses; new ones are made as needed), as does its parked group. Links of
 * lanplug's names that no record here names are left alone and listed: they may be another
 * lanplug's, still of the version before. Returns whether every link was handled.
 */
export function adoptLegacyLinks(rtnl: Rtnl, store: Store, log: Logger): boolean {
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
  const unknown: string[] = [];
  const failed: string[] = [];
  const attempt = (link: LinkInfo, what: () => boolean, counter: () => void): void => {
    try {
      if (what()) counter();
    } catch (err) {
      failed.push(`${link.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  for (const link of rtnl.listLinks()) {
    if (link.group === PARKED_LINK_GROUP) {
      attempt(
        link,
        () => rtnl.deleteLink(link),
        () => removed++,
      );
      continue;
    }
    if (link.group !== 0) continue;
    const network = parents.get(link.name);
    const parentPlan = network === undefined ? null : ownedParent(network);
    if (recorded.has(link.name) || (parentPlan !== null && isTheLinkMade(rtnl, parentPlan, link)))
      attempt(
        link,
        () => rtnl.setGroup(link, rtnl.ownGroup),
        () => adopted++,
      );
    else if (isOldEye(link, parentIndexes))
      attempt(
        link,
        () => rtnl.deleteLink(link),
        () => removed++,
      );
    else if (hasLanplugName(link)) unknown.push(link.name);
  }
  log.info('links of an earlier lanplug adopted into this state directory', { adopted, removed });
  if (unknown.length > 0)
    log.warn(
      "links of lanplug's names that this state directory does not record: left alone (another lanplug's, or left by a crash of an earlier one: ip link del NAME once no lanplug uses it)",
      { links: unknown.join(' ') },
    );
  if (failed.length > 0)
    log.error('could not adopt every link of an earlier lanplug; tried again at the next start', {
      failures: failed.join('; '),
    });
  return failed.length === 0;
}

/** An eye under its old name, `lpe-<parent index>`, on a parent of this store's networks. */
function isOldEye(link: LinkInfo, parentIndexes: ReadonlySet<number>): boolean {
  return (
    link.name === `${EYE_LINK_PREFIX}-${link.parentIndex ?? ''}` &&
    link.kind === 'macvlan' &&
    link.parentIndex !== null &&
    parentIndexes.has(link.parentIndex)
  );
}

function hasLanplugName(link: LinkInfo): boolean {
  return [PROBE_LINK_PREFIX, ASKING_LINK_PREFIX, ENDPOINT_LINK_PREFIX, SHIM_LINK_PREFIX, EYE_LINK_PREFIX].some(
    (prefix) => link.name.startsWith(prefix),
  );
}
