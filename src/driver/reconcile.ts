/**
 * Reconcile: bring the kernel back in line with the store after a crash, a
 * failed teardown or a parent that went away — at daemon start (before the
 * sockets listen), periodically, and on demand (`lanplug gc`).
 *
 * The store is the truth for intent, the kernel for links. Only links that
 * carry this daemon's link group (link-ownership.ts: another daemon's links,
 * and links of lanplug's names that the OS or a user made, carry another) and
 * one of lanplug's names and kinds are ever touched:
 * - endpoint links `lp-<id>` no endpoint record owns (a crash between creating
 *   the link and answering Docker) are deleted; owned ones are kept;
 * - probe links `lpp-*`, and DHCP asking links `lpd-*` no exchange is using, are deleted;
 * - parents lanplug made that a network needs and that are missing are made again;
 * - leftovers (what a teardown could not remove) are retried, and forgotten
 *   once gone.
 * A link the user made (an `eth0.50` lanplug did not create) is never touched,
 * and neither is a `dm-<id>` no lanplug record names: Docker's own macvlan
 * driver names its private parents the same way. lanplug's own are always
 * recorded (a network row before the link is made, a leftover before the row
 * goes), so they are found through the store, never by their name alone.
 */
import type { LinkInfo } from '../link/link';
import type { Rtnl } from '../link/rtnl';
import type { Logger } from '../log';
import { shortId, type EndpointRecord, type Leftover, type NetworkRecord } from '../model/network';
import type { LeaseStore } from '../state/lease-store';
import type { Store } from '../state/store';
import { unusedEyes } from '../lan/eye';
import { addRoutes, ensureShim, routeKey, routesThrough, wantedRoutes } from './host-access';
import { leasedIn, slaacRoutesOf } from './slaac-host-access';
import { ASKING_LINK_PREFIX, ENDPOINT_LINK_PREFIX, PROBE_LINK_PREFIX, SHIM_LINK_PREFIX, shimLinkName } from './names';
import { ensureParent, isStillOurs, ownedParent, releaseParent } from './parent';
import { countReconcileAction } from '../metrics/registry';
import { recordEvent } from '../metrics/events';

export interface ReconcileAction {
  /** What was (or, in a dry run, would be) done. */
  action: 'delete-link' | 'create-parent' | 'create-shim' | 'add-route' | 'delete-route' | 'forget-leftover';
  /** The link name. */
  target: string;
  why: string;
  outcome: 'done' | 'failed' | 'planned';
  error?: string;
}

export interface ReconcileReport {
  actions: ReconcileAction[];
  networks: number;
  endpoints: number;
  leftovers: number;
  /** Links in the namespace lanplug looked at. */
  links: number;
}

const ENDPOINT_KINDS = new Set(['macvlan', 'ipvlan']);

export interface ReconcileOptions {
  dryRun?: boolean;
  /** DHCP asking links an exchange is using now (a running daemon's): not leftovers. */
  askingLinksInUse?: ReadonlySet<string>;
  /** The DHCPv6 leases of `-o ipv6=slaac` endpoints (M flag): their host-access routes are wanted too. */
  leases?: Pick<LeaseStore, 'getLease'>;
}

export function reconcile(rtnl: Rtnl, store: Store, log: Logger, options: ReconcileOptions = {}): ReconcileReport {
  const dryRun = options.dryRun === true;
  const asking = options.askingLinksInUse ?? new Set<string>();
  const networks = store.listNetworks();
  const endpoints = store.listAllEndpoints();
  const leftovers = store.listLeftovers();
  const links = rtnl.listLinks();
  const actions: ReconcileAction[] = [];

  const act = (action: ReconcileAction['action'], target: string, why: string, fn: () => void): void => {
    const entry: ReconcileAction = { action, target, why, outcome: dryRun ? 'planned' : 'done' };
    if (!dryRun) {
      try {
        fn();
      } catch (err) {
        entry.outcome = 'failed';
        entry.error = err instanceof Error ? err.message : String(err);
      }
    }
    actions.push(entry);
    const fields = {
      action,
      target,
      why,
      outcome: entry.outcome,
      ...(entry.error === undefined ? {} : { error: entry.error }),
    };
    if (entry.outcome === 'failed') log.error('reconcile', fields);
    else log.info('reconcile', fields);
  };

  const shimNames = new Set(
    networks.flatMap((n) => (n.spec.hostAccess === null ? [] : [shimLinkName(n.spec.networkId)])),
  );
  const ownedLinkNames = new Set([...endpoints.map((e) => e.linkName), ...shimNames]);
  const leftoverNames = new Set(leftovers.map((l) => l.name));
  const deleteLink = (link: LinkInfo): void => {
    rtnl.deleteLink(link);
  };

  for (const link of links) {
    if (leftoverNames.has(link.name)) continue; // handled with its leftover record below
    if (!rtnl.owns(link)) continue; // another daemon's, the OS's or a user's
    if (isEndpointLink(link) && !ownedLinkNames.has(link.name)) {
      act(
        'delete-link',
        link.name,
        'endpoint link no endpoint owns (left by a crash before Docker got an answer)',
        () => deleteLink(link),
      );
    } else if (link.name.startsWith(ASKING_LINK_PREFIX) && link.kind === 'macvlan' && !asking.has(link.name)) {
      act('delete-link', link.name, 'DHCP asking link left by a crash', () => deleteLink(link));
    } else if (link.name.startsWith(PROBE_LINK_PREFIX)) {
      act('delete-link', link.name, 'kernel feature probe left by a crash', () => deleteLink(link));
    } else if (isShimLink(link) && !shimNames.has(link.name)) {
      act('delete-link', link.name, 'host-access shim no network uses', () => deleteLink(link));
    }
  }

  for (const leftover of leftovers) retryLeftover(rtnl, store, leftover, networks, ownedLinkNames, links, act);

  for (const network of networks) {
    const parent = ownedParent(network);
    if (parent === null || links.some((l) => l.name === parent.name)) continue;
    if (parent.kind === 'vlan' && !links.some((l) => l.name === parent.base)) {
      log.info('reconcile', {
        action: 'wait',
        target: parent.name,
        why: `base ${parent.base} is missing; made again when it returns`,
      });
      continue;
    }
    act('create-parent', parent.name, `network ${shortId(network.spec.networkId)} needs it`, () => {
      ensureParent(rtnl, parent, network.spec.mtu);
    });
  }

  for (const eye of unusedEyes(rtnl, networks)) {
    act('delete-link', eye.name, 'LAN eye on a parent no lanplug network uses', () => deleteLink(eye));
  }

  for (const network of networks) {
    if (network.spec.hostAccess !== null)
      reconcileHostAccess(rtnl, network, store.listEndpoints(network.spec.networkId), act, log, options.leases);
  }

  for (const a of actions)
    if (a.outcome !== 'planned') {
      countReconcileAction(a.action, a.outcome);
      recordEvent(`reconcile.${a.action}`, { target: a.target, outcome: a.outcome, why: a.why });
    }
  const report: ReconcileReport = {
    actions,
    networks: networks.length,
    endpoints: endpoints.length,
    leftovers: leftovers.length,
    links: links.length,
  };
  log.info('reconcile done', {
    dryRun,
    networks: report.networks,
    endpoints: report.endpoints,
    leftovers: report.leftovers,
    links: report.links,
    actions: actions.length,
    failed: actions.filter((a) => a.outcome === 'failed').length,
  });
  return report;
}

function retryLeftover(
  rtnl: Rtnl,
  store: Store,
  leftover: Leftover,
  networks: readonly NetworkRecord[],
  ownedLinkNames: ReadonlySet<string>,
  links: readonly LinkInfo[],
  act: (action: ReconcileAction['action'], target: string, why: string, fn: () => void) => void,
): void {
  const link = links.find((l) => l.name === leftover.name) ?? null;
  const forget = (): void => store.deleteLeftover(leftover.name);
  if (leftover.kind === 'endpoint-link' || leftover.kind === 'shim') {
    const ours = leftover.kind === 'shim' ? isShimLink : isEndpointLink;
    if (link === null || !ours(link) || !rtnl.owns(link) || ownedLinkNames.has(link.name)) {
      act(
        'forget-leftover',
        leftover.name,
        link === null
          ? 'endpoint link is gone'
          : rtnl.owns(link)
            ? 'endpoint link is in use again'
            : 'the link of that name is no longer the one lanplug made',
        forget,
      );
      return;
    }
    act('delete-link', leftover.name, `endpoint link a teardown could not remove (${leftover.reason})`, () => {
      rtnl.deleteLink(link);
      forget();
    });
    return;
  }
  if (networks.some((n) => n.spec.parent.name === leftover.name)) {
    act('forget-leftover', leftover.name, 'parent is used by a network again', forget);
    return;
  }
  if (link === null || !isStillOurs(rtnl, leftover.parent, link)) {
    act(
      'forget-leftover',
      leftover.name,
      link === null ? 'parent is gone' : 'the link of that name is no longer the one lanplug made',
      forget,
    );
    return;
  }
  act('delete-link', leftover.name, `parent a teardown could not remove (${leftover.reason})`, () => {
    releaseParent(rtnl, leftover.parent, networks);
    forget();
  });
}

/**
 * A host-access network needs its shim (made again when its parent came back)
 * and exactly one route per endpoint address through it: missing ones are
 * added, lanplug routes no endpoint needs are removed, none is ever doubled.
 */
function reconcileHostAccess(
  rtnl: Rtnl,
  network: NetworkRecord,
  endpoints: readonly EndpointRecord[],
  act: (action: ReconcileAction['action'], target: string, why: string, fn: () => void) => void,
  log: Logger,
  leases: Pick<LeaseStore, 'getLease'> | undefined,
): void {
  const spec = network.spec;
  const parent = rtnl.getLink(spec.parent.name);
  if (parent === null) return; // the parent's own reconcile (or its return) comes first
  const name = shimLinkName(spec.networkId);
  let shim = rtnl.getLink(name);
  if (shim === null || shim.parentIndex !== parent.index) {
    act('create-shim', name, `network ${shortId(spec.networkId)} has host access`, () => {
      shim = ensureShim(rtnl, spec, parent);
    });
    if (shim === null) return;
  } else {
    ensureShim(rtnl, spec, parent); // addresses and admin state, silently: they are the shim's own
  }
  const link: LinkInfo = shim;
  const wanted = [
    ...wantedRoutes(spec, endpoints),
    // The addresses containers formed from the router's advertisements, read in their namespaces.
    ...slaacRoutesOf(
      rtnl,
      spec,
      endpoints,
      link,
      (endpoint, why) =>
        log.info('reconcile', {
          action: 'wait',
          target: `endpoint ${shortId(endpoint.endpointId)}`,
          why: `no host-access route to its addresses from router advertisements: ${why}`,
        }),
      leases === undefined ? undefined : leasedIn(leases),
    ),
  ];
  const present = new Set(routesThrough(rtnl, link).map(routeKey));
  for (const route of wanted) {
    if (present.has(routeKey(route.destination))) continue;
    act(
      'add-route',
      `${routeKey(route.destination)} via ${name}`,
      'an endpoint of the network has no host-access route',
      () => addRoutes(rtnl, link, [route]),
    );
  }
  const wantedKeys = new Set(wanted.map((r) => routeKey(r.destination)));
  for (const destination of routesThrough(rtnl, link)) {
    if (wantedKeys.has(routeKey(destination))) continue;
    act('delete-route', `${routeKey(destination)} via ${name}`, 'no endpoint has that address any more', () => {
      rtnl.deleteRoute(destination, link);
    });
  }
}

function isShimLink(link: LinkInfo): boolean {
  return (
    link.name.startsWith(SHIM_LINK_PREFIX) &&
    link.name.length === SHIM_LINK_PREFIX.length + 12 &&
    ENDPOINT_KINDS.has(link.kind ?? '')
  );
}

function isEndpointLink(link: LinkInfo): boolean {
  return (
    link.name.startsWith(ENDPOINT_LINK_PREFIX) &&
    link.name.length === ENDPOINT_LINK_PREFIX.length + 12 &&
    ENDPOINT_KINDS.has(link.kind ?? '')
  );
}
