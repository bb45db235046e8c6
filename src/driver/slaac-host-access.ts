/**
 * Host access (host-access.ts) for the addresses containers form themselves on an `-o ipv6=slaac`
 * network: lanplug learns them only after Join, in the container's namespace, and they move when the
 * router's prefix does. So a follower reads each such container's addresses, from Join until Leave or
 * DeleteEndpoint, and keeps one route per address through the network's shim: added when the kernel
 * has the address (past DAD), removed when the kernel drops it, all removed when the container goes.
 * Reconcile wants the same routes (slaacRoutesOf), so a periodic pass keeps them and a restarted daemon
 * puts back what it finds missing; the daemon then follows its running containers again (resume).
 *
 * The host's side is the shim's link-local address. A SLAAC network has no IPv6 pool, so there is no
 * `host6` aux address; an address of the host's own in the router's prefix would take the kernel's
 * autoconfiguration on the shim, which also puts the on-link route of the whole prefix through it
 * (the host's LAN traffic would leave by the shim, not its own interface). So each route is exact, the
 * container's address as /128, from the shim's link-local address: the container answers it on its
 * own link, and reaches the host at it (`fe80::…%eth0`). Never a route to an address the host holds.
 *
 * What the container says it holds is not trusted: a process with NET_ADMIN there can add any address
 * (a public resolver's, the LAN router's) with a lifetime, and a host route to it would send the host's
 * own traffic for it into the container. So an address gets a route only when (advertisedPrefixes,
 * routable) it lies in a prefix the host's own kernel has on-link on the parent from the LAN (the host
 * hears the same router; a route of the host's table the container cannot write), was not added
 * `nodad` (the kernel's SLAAC addresses always go through DAD), is not the host's, and is not claimed
 * by another endpoint or known to the host as a LAN neighbour's (heldElsewhere).
 *
 * Each read enters the container's namespace (~0.2 ms): every 4 s per followed container once its
 * address is there, growing from 250 ms to 1 s until then.
 */
import * as fs from 'node:fs';
import { LanplugError } from '../errors';
import type { LinkInfo, LinkRef } from '../link/link';
import type { Rtnl } from '../link/rtnl';
import type { Logger } from '../log';
import { shortId, type EndpointRecord, type NetworkSpec } from '../model/network';
import { hostPrefix, parseAddress, prefixContains, type IpAddress, type IpPrefix } from '../net/address';
import { RTPROT_LANPLUG } from '../link/ip';
import { IFA_F_DADFAILED, IFA_F_TENTATIVE, RT_SCOPE_LINK } from '../netlink/codec';
import type { LeaseStore } from '../state/lease-store';
import type { Store } from '../state/store';
import { routeKey, type Route } from './host-access';
import { shimLinkName } from './names';
import { containerLinkOf, learnedAddresses, type LearnedAddress } from './slaac';
import { REAL_CLOCK, type SlaacWatch, type WatchClock } from './slaac-watch';

/** Whether host access covers the network's SLAAC addresses: it has both. */
export function followsSlaac(spec: NetworkSpec): boolean {
  return spec.hostAccess !== null && (spec.slaac ?? null) !== null;
}

/** The shim's link-local address, once past DAD; null before (a shim just made) or with IPv6 off on it. */
export function shimLinkLocal(rtnl: Rtnl, shim: LinkRef): IpAddress | null {
  const found = rtnl
    .listAddresses(6)
    .find(
      (a) =>
        a.index === shim.index &&
        a.scope === RT_SCOPE_LINK &&
        ((a.flags ?? 0) & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) === 0,
    );
  return found?.prefix.address ?? null;
}

/** Either the routes for the learnt addresses, or why there are none. */
export type LearntRoutes = { routes: Route[] } | { whyNot: string };

/**
 * The LAN's prefixes as the host's own kernel has them: on-link routes (no gateway) on the shim's parent,
 * not lanplug's, neither a default route nor a host route nor link-local or multicast. The host hears the
 * router's advertisements on the parent (it forms its own address there), so this follows a prefix change.
 */
export function advertisedPrefixes(rtnl: Rtnl, shim: LinkRef): IpPrefix[] {
  const parentIndex = rtnl.getLinkByIndex(shim.index)?.parentIndex ?? null;
  if (parentIndex === null) return [];
  return rtnl
    .listRoutes(6)
    .filter(
      (r) =>
        r.oifIndex === parentIndex &&
        r.gateway === null &&
        r.protocol !== RTPROT_LANPLUG &&
        r.destination.prefixLength > 0 &&
        r.destination.prefixLength < 128 &&
        !/^f[ef]/i.test(r.destination.address.text),
    )
    .map((r) => r.destination);
}

export interface RouteChecks {
  /** Whether another endpoint or a LAN neighbour the host knows of holds the address (text form). */
  heldElsewhere?: (address: string) => boolean;
}

/**
 * The routes to a container's learnt addresses: the usable ones (not tentative), as /128 from the
 * shim's link-local address, and only those the kernel could have formed from the LAN router's
 * advertisement (see the header): inside a prefix the host has on-link on the parent, not `nodad`,
 * not the host's own (a LAN that let two devices form one address; the host's must stay its own), not
 * held elsewhere.
 */
export function learntRoutes(
  rtnl: Rtnl,
  shim: LinkRef,
  learned: readonly LearnedAddress[],
  checks: RouteChecks = {},
): LearntRoutes {
  const usable = learned.filter((a) => a.state === 'preferred' && a.nodad !== true);
  if (usable.length === 0) return { routes: [] };
  const source = shimLinkLocal(rtnl, shim);
  if (source === null) return { whyNot: `the shim ${shim.name} has no IPv6 link-local address (yet)` };
  const own = new Set(rtnl.listAddresses(6).map((a) => a.prefix.address.text));
  const prefixes = advertisedPrefixes(rtnl, shim);
  const heldElsewhere = checks.heldElsewhere ?? (() => false);
  return {
    routes: usable
      .map((a) => parseAddress(a.address))
      .filter((a) => !own.has(a.text) && !heldElsewhere(a.text) && prefixes.some((p) => prefixContains(p, a)))
      .map((a) => ({ destination: hostPrefix(a), source })),
  };
}

/** What the container of an endpoint formed, read in its sandbox; NotFound when the sandbox is gone. */
export function readLearned(
  netns: string,
  endpoint: EndpointRecord,
  owns: (link: LinkInfo) => boolean,
): LearnedAddress[] {
  const link = containerLinkOf(netns, endpoint, owns);
  return link === null ? [] : learnedAddresses(netns, link.index);
}

/**
 * The IPv6 addresses lanplug leased an endpoint from the LAN's DHCPv6 server (the router's M flag:
 * endpoint/slaac-dhcp6.ts). The container holds each as a permanent /128, which learnedAddresses leaves
 * out (a permanent address there is anyone's); the lease is lanplug's own record, so it is routed from it.
 */
export type LeasedAddresses = (networkId: string, endpointId: string) => string[];

/** LeasedAddresses from the lease records (the daemon's store). */
export function leasedIn(leases: Pick<LeaseStore, 'getLease'>): LeasedAddresses {
  return (networkId, endpointId) =>
    (leases.getLease(networkId, endpointId)?.leases ?? [])
      .filter((l) => l.family === 6)
      .map((l) => l.address.address.text);
}

/** A learnt address and the leased ones, as one list for learntRoutes (a lease is past DAD: lanplug checked it). */
function withLeased(learned: readonly LearnedAddress[], leased: readonly string[]): LearnedAddress[] {
  return [...learned, ...leased.map((address) => ({ address, prefixLength: 128, state: 'preferred' as const }))];
}

/**
 * For reconcile: the routes a SLAAC network's endpoints want through `shim`, read in their running
 * containers, and their DHCPv6 leases (`leased`); each endpoint whose container cannot be read is said
 * (`whyNot`), its learnt addresses' routes left to go.
 */
export function slaacRoutesOf(
  rtnl: Rtnl,
  spec: NetworkSpec,
  endpoints: readonly EndpointRecord[],
  shim: LinkRef,
  whyNot: (endpoint: EndpointRecord, why: string) => void,
  leased: LeasedAddresses = () => [],
): Route[] {
  if (!followsSlaac(spec)) return [];
  const each = endpoints.map((endpoint): Route[] => {
    const netns = endpoint.dockerSandboxKey;
    if (netns === undefined) return [];
    let learned: LearnedAddress[];
    try {
      learned = readLearned(netns, endpoint, (l) => rtnl.owns(l));
    } catch (err) {
      whyNot(
        endpoint,
        `its container's addresses cannot be read (${err instanceof Error ? err.message : String(err)})`,
      );
      learned = [];
    }
    const found = learntRoutes(rtnl, shim, withLeased(learned, leased(spec.networkId, endpoint.endpointId)));
    if ('whyNot' in found) {
      whyNot(endpoint, found.whyNot);
      return [];
    }
    return found.routes;
  });
  // An address two endpoints claim (one container added another's) is routed to neither.
  const claims = new Map<string, number>();
  for (const route of each.flat())
    claims.set(routeKey(route.destination), (claims.get(routeKey(route.destination)) ?? 0) + 1);
  return each.flat().filter((route) => claims.get(routeKey(route.destination)) === 1);
}

export interface FollowTiming {
  /** The first gap between reads after Join; it doubles up to waitMaxMs while the container has no address. */
  firstReadMs: number;
  waitMaxMs: number;
  /** The gap once the container has an address: how long a prefix change takes to reach the host's route. */
  followMs: number;
  /** How long after Join the sandbox may take to appear (Docker makes it as the container starts). */
  sandboxWaitMs: number;
}

const TIMING: FollowTiming = { firstReadMs: 250, waitMaxMs: 1_000, followMs: 4_000, sandboxWaitMs: 30_000 };

interface Followed {
  networkId: string;
  /** Cancels the next read. */
  stop: () => void;
  /** The routes this follower added, by destination. */
  routes: Map<string, Route>;
}

export interface FollowSeams {
  timing?: FollowTiming;
  read?: (netns: string, endpoint: EndpointRecord) => LearnedAddress[];
  /** The endpoint's DHCPv6 leases (the daemon's store); none without. */
  leased?: LeasedAddresses;
  /**
   * What the gaps between reads and the sandbox's wait are measured and waited on: the watch's monotonic
   * clock. The wall clock would end the wait at once when set forward (a container whose sandbox came
   * late never got its routes) and stretch it for as long when set back (a sandbox that never came read
   * every second for an hour).
   */
  clock?: WatchClock;
}

/**
 * The follower, as a SlaacWatch: started at Join (for networks with host access), ended at Leave and
 * DeleteEndpoint, which also take its routes away (the container's addresses go with it).
 */
export class SlaacHostRoutes implements SlaacWatch {
  private readonly followed = new Map<string, Followed>();
  private readonly timing: FollowTiming;
  private readonly read: (netns: string, endpoint: EndpointRecord) => LearnedAddress[];
  private readonly leased: LeasedAddresses;
  private readonly clock: WatchClock;

  constructor(
    private readonly rtnl: Rtnl,
    private readonly log: Logger,
    seams: FollowSeams = {},
  ) {
    this.timing = seams.timing ?? TIMING;
    this.read = seams.read ?? ((netns, endpoint) => readLearned(netns, endpoint, (l) => rtnl.owns(l)));
    this.leased = seams.leased ?? (() => []);
    this.clock = seams.clock ?? REAL_CLOCK;
  }

  watch(spec: NetworkSpec, endpoint: EndpointRecord, netns: string): void {
    if (!followsSlaac(spec)) return;
    this.cancel(endpoint.endpointId);
    const followed: Followed = { networkId: spec.networkId, stop: () => undefined, routes: new Map() };
    this.followed.set(endpoint.endpointId, followed);
    const what = { endpoint: shortId(endpoint.endpointId), network: shortId(spec.networkId) };
    const startedAt = this.clock.now();
    let seen = false;
    let gap = this.timing.firstReadMs;
    let lastWhyNot: string | null = null;
    let saidWhyNot: string | null = null;
    const next = (ms: number): void => {
      followed.stop = this.clock.after(ms, step);
    };
    const step = (): void => {
      let learned: LearnedAddress[];
      try {
        learned = withLeased(this.read(netns, endpoint), this.leased(spec.networkId, endpoint.endpointId));
        seen = true;
      } catch (err) {
        const gone = err instanceof LanplugError && err.code === 'NotFound';
        if (gone && !seen && this.clock.now() - startedAt <= this.timing.sandboxWaitMs) {
          next(gap);
          return;
        }
        // The container stopped (or never started): its addresses went with it.
        this.log.debug('host access stops following a container: its sandbox cannot be read', {
          ...what,
          error: String(err),
        });
        this.cancel(endpoint.endpointId);
        return;
      }
      let whyNot: string | null;
      try {
        whyNot = this.sync(followed, learned, what);
      } catch (err) {
        // The kernel refused a route (the shim went down or away under it): said like any other reason,
        // and tried again at the next read. Thrown out of this timer, it would end the daemon.
        whyNot = err instanceof Error ? err.message : String(err);
      }
      // Said once, when two reads in a row found it: a shim made a moment ago is past DAD by the next.
      if (whyNot !== null && whyNot === lastWhyNot && whyNot !== saidWhyNot) {
        this.log.warn("host access: no route to the container's IPv6 address from the router advertisement", {
          ...what,
          why: whyNot,
        });
        saidWhyNot = whyNot;
      }
      lastWhyNot = whyNot;
      if (followed.routes.size > 0) next(this.timing.followMs);
      else {
        next(gap);
        gap = Math.min(gap * 2, this.timing.waitMaxMs);
      }
    };
    next(0);
  }

  /** Brings the kernel's routes in line with the container's addresses; why it could not, if it could not. */
  private sync(followed: Followed, learned: readonly LearnedAddress[], what: Record<string, string>): string | null {
    const shim = this.rtnl.getLink(shimLinkName(followed.networkId));
    if (shim === null) return 'the network has no shim (its parent is gone?)';
    // Another followed container already routed there holds it: this one added it (NET_ADMIN), not the kernel.
    const heldElsewhere = (address: string): boolean => {
      const key = routeKey(hostPrefix(parseAddress(address)));
      return [...this.followed.values()].some((other) => other !== followed && other.routes.has(key));
    };
    const found = learntRoutes(this.rtnl, shim, learned, { heldElsewhere });
    if ('whyNot' in found) return found.whyNot;
    const wanted = new Map(found.routes.map((r) => [routeKey(r.destination), r]));
    for (const [key, route] of wanted) {
      if (followed.routes.has(key)) continue;
      this.rtnl.replaceRoute(route.destination, shim, route.source);
      followed.routes.set(key, route);
      this.log.info("host access: route to the container's IPv6 address from the router advertisement", {
        ...what,
        address: key,
        shim: shim.name,
        source: route.source.text,
      });
    }
    for (const [key, route] of followed.routes) {
      if (wanted.has(key)) continue;
      this.rtnl.deleteRoute(route.destination, shim);
      followed.routes.delete(key);
      this.log.info('host access: route removed, the container no longer has the address', {
        ...what,
        address: key,
        shim: shim.name,
      });
    }
    return null;
  }

  /** Ends the endpoint's following and removes the routes it added. */
  cancel(endpointId: string): void {
    const followed = this.followed.get(endpointId);
    if (followed === undefined) return;
    followed.stop();
    this.followed.delete(endpointId);
    if (followed.routes.size === 0) return;
    try {
      const shim = this.rtnl.getLink(shimLinkName(followed.networkId));
      if (shim !== null) for (const route of followed.routes.values()) this.rtnl.deleteRoute(route.destination, shim);
    } catch (err) {
      // What is left is reconcile's: it removes lanplug routes no container holds the address of.
      this.log.warn('host access: could not remove the routes to a container', {
        endpoint: shortId(endpointId),
        error: String(err),
      });
    }
  }

  /** After a daemon start: follows again the endpoints whose containers run (their sandbox is there). */
  resume(store: Store): void {
    for (const network of store.listNetworks()) {
      if (!followsSlaac(network.spec)) continue;
      for (const endpoint of store.listEndpoints(network.spec.networkId)) {
        const netns = endpoint.dockerSandboxKey;
        if (netns !== undefined && fs.existsSync(netns)) this.watch(network.spec, endpoint, netns);
      }
    }
  }

  /** Daemon shutdown: the following stops; the routes stay (the next daemon's reconcile checks them). */
  close(): void {
    for (const followed of this.followed.values()) followed.stop();
    this.followed.clear();
  }
}

/** Both watches at the driver's one place for them (Join, Leave, DeleteEndpoint). */
export function bothWatches(first: SlaacWatch, second: SlaacWatch): SlaacWatch {
  return {
    watch(spec, endpoint, netns) {
      first.watch(spec, endpoint, netns);
      second.watch(spec, endpoint, netns);
    },
    cancel(endpointId) {
      first.cancel(endpointId);
      second.cancel(endpointId);
    },
  };
}
