/**
 * After Join on an `-o ipv6=slaac` network: Docker moves the endpoint's link into the container,
 * names it and configures it after Join has returned, and on a network without an IPv6 pool it turns
 * IPv6 off on that interface. So lanplug watches the sandbox, in the background and bounded in time:
 * once the link is up under Docker's name, it turns IPv6 on with router advertisements (slaac.ts); for
 * a while after, it turns it on again should Docker have written after it; then it waits for the
 * router's advertisement. What the advertisement says (its M and O flags, its RDNSS/DNSSL) goes to
 * slaac-advert.ts, which hands it to the follow-up; when a prefix has the A flag the watch waits for the
 * address the kernel forms from it and reports it (log line, `slaac.address` event), after reporting
 * each one DAD failed for (`slaac.dad-failed`, slaac-dad.ts). Nothing of this holds up Join's answer.
 *
 * Each poll enters the container's namespace synchronously on the daemon's event loop, so the cost is
 * bounded: the gaps between polls grow in each phase (20 ms doubling up to 250 ms), at most
 * MAX_ACTIVE_WATCHES watches poll at a time (the others wait their turn, first come first served), and
 * Leave and DeleteEndpoint end their endpoint's watch.
 */
import fs from 'node:fs';
import { LanplugError } from '../errors';
import type { LinkInfo } from '../link/link';
import type { Logger } from '../log';
import { recordEvent } from '../metrics/events';
import { shortId, type EndpointRecord, type NetworkSpec, type SlaacPolicy } from '../model/network';
import type { LeaseStore } from '../state/lease-store';
import type { Store } from '../state/store';
import { listenForFlagChanges, readAdvertFlags, type AdvertFlags, type FlagChanges } from '../netlink/router-adverts';
import { AdvertHearing, type AdvertFollowUp } from './slaac-advert';
import { AdvertFlagsFollower } from './slaac-flags';
import type { FailedAddress } from './slaac-dad';
import { listenInContainer, type ContainerNotesSource } from './slaac-notes';
import {
  containerLinkOf,
  enableSlaac,
  endpointSlaacSecret,
  ipv6Disabled,
  learnedAddresses,
  type LearnedAddress,
} from './slaac';

export interface SlaacWatch {
  /** Starts the watch of an endpoint Docker is moving into `netns`; one per endpoint (a new one replaces it). */
  watch(spec: NetworkSpec, endpoint: EndpointRecord, netns: string): void;
  /** Ends the endpoint's watch, running or waiting its turn (Leave, DeleteEndpoint); nothing if it has none. */
  cancel(endpointId: string): void;
}

export interface SlaacTiming {
  /** The first gap between polls in each phase; each next gap is twice the last, up to maxPollMs. */
  firstPollMs: number;
  /** Below the 250–850 ms Docker 20.10 takes to make the sandbox: the link is found soon after it is there. */
  maxPollMs: number;
  /** How long after Join the link may take to come up under Docker's name (the container starts meanwhile). */
  linkWaitMs: number;
  /** How long after lanplug's writes it checks that nobody turned IPv6 off again. */
  guardMs: number;
  /** How long after Join an address from an advertisement is waited for (routers advertise every few minutes at most). */
  addressWaitMs: number;
}

const TIMING: SlaacTiming = {
  firstPollMs: 20,
  maxPollMs: 250,
  linkWaitMs: 30_000,
  guardMs: 2_000,
  addressWaitMs: 60_000,
};

/**
 * Watches that poll at one time: at most 64 × 4 polls a second once their gaps have grown (a poll is
 * ~0.14 ms), 448 in the first second of a burst; a burst of Joins cannot starve Docker's other calls.
 */
export const MAX_ACTIVE_WATCHES = 64;

/** A watch waiting for one of the MAX_ACTIVE_WATCHES to end. */
interface QueuedWatch {
  endpointId: string;
  joinedAt: number;
  what: Record<string, string>;
  netns: string;
  start: () => void;
}

/**
 * The container's namespace as the watch reaches it (slaac.ts, netlink/router-adverts.ts,
 * slaac-notes.ts); each call enters the namespace once. Without `listen` and `advertFlags` (fakes of
 * the cost tests) the watch knows nothing of the advertisement but the address the kernel formed from
 * it, and of DAD failures only an address the kernel keeps flagged.
 */
export interface SandboxAccess {
  containerLink(netns: string, endpoint: EndpointRecord, owns: (link: LinkInfo) => boolean): LinkInfo | null;
  ipv6Disabled(netns: string, ifname: string): boolean | null;
  enable(netns: string, ifname: string, secret: string, policy: SlaacPolicy): void;
  learnedAddresses(netns: string, index: number): LearnedAddress[];
  /** The watch's notification socket in the container (prefixes, RA options, DAD failures). */
  listen?(netns: string): ContainerNotesSource;
  advertFlags?(netns: string, index: number): AdvertFlags | null;
  /** What tells a later change of the flags, held from the first flags followed until Leave (slaac-flags.ts). */
  listenFlags?(netns: string): FlagChanges;
  /** The sandbox file is there: Docker removes it when the container stops, Leave or not. */
  present(netns: string): boolean;
}

const REAL_SANDBOX: SandboxAccess = {
  containerLink: containerLinkOf,
  ipv6Disabled,
  enable: enableSlaac,
  learnedAddresses,
  listen: listenInContainer,
  advertFlags: readAdvertFlags,
  listenFlags: listenForFlagChanges,
  present: (netns) => fs.existsSync(netns),
};

/**
 * Time as the watch reads and waits on it; `after` returns what cancels the wait. `now` is in ms and
 * only ever compared with itself (waits, guards, the flags' hold): any origin will do.
 */
export interface WatchClock {
  now(): number;
  after(ms: number, run: () => void): () => void;
}

/** The daemon's clock for the watch, and for host access and DHCPv6 beside it (slaac-host-access.ts, endpoint/slaac-dhcp6.ts). */
export const REAL_CLOCK: WatchClock = {
  // Monotonic, not the wall clock: a step of the wall clock (NTP, an operator's `date -s`) would
  // otherwise end a hold or a guard at once, or stretch it for hours (the flags' FLAGS_HOLD_MS above all).
  // Whole milliseconds: the waits it measures are logged and put in events.
  now: () => Math.round(performance.now()),
  after(ms, run) {
    // Unref'd: a watch never keeps the daemon alive.
    const timer = setTimeout(run, ms).unref();
    return () => clearTimeout(timer);
  },
};

/** What unit tests replace; the e2e dualstack test runs the real ones. */
export interface SlaacWatchSeams {
  timing?: SlaacTiming;
  sandbox?: SandboxAccess;
  clock?: WatchClock;
  /** Whether the store still has the endpoint (the daemon's store); absent: only the sandbox file is checked. */
  recorded?: (endpoint: EndpointRecord) => boolean;
}

/** Never reached (the follower exists only where the sandbox can listen): what says nothing changed. */
const noFlagChanges: FlagChanges = { changed: () => false, close: () => undefined };

type Phase =
  | { kind: 'link' }
  | { kind: 'guard'; link: LinkInfo; until: number; rewrites: number }
  | { kind: 'address'; link: LinkInfo };

export class SandboxSlaacWatcher implements SlaacWatch {
  /** The running watches: what cancels each one's next poll. */
  private readonly active = new Map<string, () => void>();
  /** What each running watch holds open in its container (the notification socket). */
  private readonly held = new Map<string, () => void>();
  private followUp: AdvertFollowUp | null = null;
  private readonly queue: QueuedWatch[] = [];
  private readonly timing: SlaacTiming;
  private readonly sandbox: SandboxAccess;
  private readonly clock: WatchClock;
  /** After the watch: the later changes of the flags it followed; null where the sandbox cannot tell them. */
  private readonly flagsFollower: AdvertFlagsFollower | null;

  constructor(
    private readonly log: Logger,
    /** Whether a link is this daemon's (its group): what tells an ipvlan link of lanplug's from another. */
    private readonly owns: (link: LinkInfo) => boolean,
    seams: SlaacWatchSeams = {},
  ) {
    this.timing = seams.timing ?? TIMING;
    this.sandbox = seams.sandbox ?? REAL_SANDBOX;
    this.clock = seams.clock ?? REAL_CLOCK;
    const sandbox = this.sandbox;
    this.flagsFollower =
      sandbox.listenFlags === undefined || sandbox.advertFlags === undefined
        ? null
        : new AdvertFlagsFollower(
            log,
            {
              listenFlags: (netns) => sandbox.listenFlags?.(netns) ?? noFlagChanges,
              advertFlags: (netns, index) => sandbox.advertFlags?.(netns, index) ?? null,
              stillThere: (endpoint, netns) => sandbox.present(netns) && (seams.recorded?.(endpoint) ?? true),
              now: () => this.clock.now(),
              after: (ms, run) => this.clock.after(ms, run),
            },
            () => this.followUp,
          );
  }

  /** The daemon's follow-up of the advertisements' flags and options (made after the watcher: it needs the lease keeper). */
  followWith(followUp: AdvertFollowUp): void {
    this.followUp = followUp;
  }

  watch(spec: NetworkSpec, endpoint: EndpointRecord, netns: string): void {
    const slaac = spec.slaac ?? null;
    if (slaac === null) return;
    this.cancel(endpoint.endpointId);
    const joinedAt = this.clock.now();
    const what = { endpoint: shortId(endpoint.endpointId), network: shortId(spec.networkId) };
    const start = (): void => this.run(spec, slaac, endpoint, netns, joinedAt, what);
    if (this.active.size < MAX_ACTIVE_WATCHES) {
      start();
      return;
    }
    this.queue.push({ endpointId: endpoint.endpointId, joinedAt, what, netns, start });
    this.log.debug('the watch of a container for IPv6 advertisements is queued: as many run already', {
      ...what,
      running: this.active.size,
      queued: this.queue.length,
    });
  }

  private run(
    spec: NetworkSpec,
    slaac: SlaacPolicy,
    endpoint: EndpointRecord,
    netns: string,
    joinedAt: number,
    what: Record<string, string>,
  ): void {
    const id = endpoint.endpointId;
    let phase: Phase = { kind: 'link' };
    /** The notification socket; null where it could not be opened (the watch then waits for an address only). */
    let listener: ContainerNotesSource | null = null;
    const heard = new AdvertHearing({
      spec,
      endpoint,
      netns,
      what,
      log: this.log,
      followUp: this.followUp,
      readFlags: this.sandbox.advertFlags?.bind(this.sandbox),
      followed: (link, flags) => this.flagsFollower?.follow(spec, endpoint, netns, link, flags, what),
    });
    /** The address in use was reported (or one the kernel keeps flagged dadfailed). */
    let addressDone = false;
    // The kernel forms the same failed address again at each advertisement (same prefix, same secret): said once.
    const saidDadFailed = new Set<string>();
    let gap = this.timing.firstPollMs;
    const enter = (next: Phase): void => {
      phase = next;
      gap = this.timing.firstPollMs;
    };
    const pollAgain = (): void => {
      this.active.set(id, this.clock.after(gap, step));
      gap = Math.min(gap * 2, this.timing.maxPollMs);
    };
    const step = (): void => {
      const now = this.clock.now();
      const ms = now - joinedAt;
      try {
        if (phase.kind === 'link') {
          const link = this.sandbox.containerLink(netns, endpoint, this.owns);
          if (link !== null && link.up && link.name !== endpoint.linkName) {
            const dockerTurnedOff = this.sandbox.ipv6Disabled(netns, link.name);
            // Listening before IPv6 comes on: the answer to the kernel's first solicitation is heard too,
            // and a DAD failure of the first address formed.
            listener = this.listen(netns, id, what);
            this.sandbox.enable(netns, link.name, endpointSlaacSecret(endpoint), slaac);
            this.log.info('IPv6 from router advertisements turned on in the container', {
              ...what,
              ifname: link.name,
              afterJoinMs: ms,
              ipv6WasOff: String(dockerTurnedOff),
            });
            enter({ kind: 'guard', link, until: now + this.timing.guardMs, rewrites: 0 });
          } else if (ms > this.timing.linkWaitMs) {
            this.log.warn(
              'the endpoint link did not come up in the container; IPv6 from advertisements not turned on',
              {
                ...what,
                sandbox: netns,
              },
            );
            this.finish(id);
            return;
          }
        } else if (phase.kind === 'guard') {
          if (this.sandbox.ipv6Disabled(netns, phase.link.name) === true) {
            // Someone (Docker) wrote after lanplug: the measurement the design rests on, logged when it fails.
            this.sandbox.enable(netns, phase.link.name, endpointSlaacSecret(endpoint), slaac);
            phase.rewrites += 1;
            this.log.warn('IPv6 was turned off again in the container after lanplug turned it on; turned on again', {
              ...what,
              ifname: phase.link.name,
              afterJoinMs: ms,
            });
          }
          if (now >= phase.until) enter({ kind: 'address', link: phase.link });
        }
        if (phase.kind !== 'link') {
          const link = phase.link;
          const addresses = this.sandbox.learnedAddresses(netns, link.index);
          const notes = listener?.drain(link.index) ?? null;
          if (notes !== null) heard.hear(link, notes, addresses.length > 0, now);
          // An address the kernel keeps flagged is final (reportAddress): said once, as the watch is about to end.
          const flagged = addressDone ? [] : addresses.filter((a) => a.state === 'dadfailed');
          this.reportDadFailures([...(notes?.dadFailed ?? []), ...flagged], saidDadFailed, what);
          if (!addressDone) addressDone = this.reportAddress(addresses, link, what, ms);
          // Done once the flags were followed and the address reported, or none is coming (no prefix had the A
          // flag, and no address formed that DAD failed for); knowing nothing of the advertisement (no
          // listener), once the address is reported.
          const done = listener === null ? addressDone : heard.followed && (addressDone || !heard.autoconf);
          if (done) {
            this.finish(id);
            return;
          }
        }
        if (phase.kind === 'address' && ms > this.timing.addressWaitMs) {
          this.log.info(
            !heard.heardAny && listener !== null
              ? 'no router advertisement heard in the container yet; lanplug ls shows what comes later'
              : 'no IPv6 address from a router advertisement yet; lanplug ls shows it once there is',
            { ...what, waitedMs: ms },
          );
          this.finish(id);
          return;
        }
      } catch (err) {
        // Docker 20.10 names the sandbox at Join but makes its file only as the container starts (runc's hook).
        const notYet = phase.kind === 'link' && err instanceof LanplugError && err.code === 'NotFound';
        if (notYet && ms <= this.timing.linkWaitMs) {
          pollAgain();
          return;
        }
        // The container stopped or went meanwhile: nothing left to do in its sandbox.
        this.log.debug('the watch of a container for IPv6 advertisements ended', { ...what, error: String(err) });
        this.finish(id);
        return;
      }
      pollAgain();
    };
    this.active.set(id, this.clock.after(0, step));
  }

  /** The notification socket of a watch, held until it ends; null where it cannot be opened (logged). */
  private listen(netns: string, endpointId: string, what: Record<string, string>): ContainerNotesSource | null {
    if (this.sandbox.listen === undefined) return null;
    // A poll that opened one and then failed to turn IPv6 on (the sandbox not there yet) is retried: one socket.
    this.held.get(endpointId)?.();
    this.held.delete(endpointId);
    try {
      const listener = this.sandbox.listen(netns);
      this.held.set(endpointId, () => listener.close());
      return listener;
    } catch (err) {
      this.log.warn(
        'cannot listen for router advertisement options in the container; their flags and DNS not followed, DAD failures only seen if flagged',
        {
          ...what,
          error: String(err),
        },
      );
      return null;
    }
  }

  /** A watch ended: its place goes to the longest waiting, unless that one waited past its own time. */
  private finish(endpointId: string): void {
    this.active.delete(endpointId);
    this.held.get(endpointId)?.();
    this.held.delete(endpointId);
    while (this.active.size < MAX_ACTIVE_WATCHES) {
      const next = this.queue.shift();
      if (next === undefined) return;
      const waitedMs = this.clock.now() - next.joinedAt;
      if (waitedMs <= this.timing.linkWaitMs) {
        next.start();
        continue;
      }
      // Its link had as long as a running watch gives it: the container runs on, without IPv6 from lanplug.
      this.log.warn(
        'the watch of the container waited its turn longer than it lasts; IPv6 from advertisements not turned on',
        { ...next.what, sandbox: next.netns, waitedMs, running: this.active.size },
      );
      recordEvent('slaac.not-watched', { ...next.what, waitedMs });
    }
  }

  /** Each address DAD failed for, said once per watch (`said`) as the kernel drops it (or flags it). */
  private reportDadFailures(failures: readonly FailedAddress[], said: Set<string>, what: Record<string, string>): void {
    for (const failed of failures) {
      // Another device on the LAN answered for the address: the kernel keeps it off, as lanplug's probe would.
      const address = `${failed.address}/${failed.prefixLength}`;
      if (said.has(address)) continue;
      said.add(address);
      this.log.warn('the IPv6 address from the router advertisement is in use on the LAN (DAD failed); not used', {
        ...what,
        address,
      });
      recordEvent('slaac.dad-failed', { ...what, address });
    }
  }

  /**
   * True once there is something final to say: an address in use, or one the kernel keeps flagged
   * dadfailed. One it drops after DAD failed (reportDadFailures) is not final: the watch goes on for the
   * next one the kernel forms (or ends with none at addressWaitMs).
   */
  private reportAddress(
    addresses: readonly LearnedAddress[],
    link: LinkInfo,
    what: Record<string, string>,
    ms: number,
  ): boolean {
    if (addresses.some((a) => a.state === 'dadfailed')) return true;
    const usable = addresses.find((a) => a.state === 'preferred');
    if (usable === undefined) return false;
    this.log.info('IPv6 address from the router advertisement', {
      ...what,
      ifname: link.name,
      address: `${usable.address}/${usable.prefixLength}`,
      afterJoinMs: ms,
    });
    recordEvent('slaac.address', { ...what, address: `${usable.address}/${usable.prefixLength}`, afterJoinMs: ms });
    return true;
  }

  cancel(endpointId: string): void {
    this.followUp?.cancel(endpointId);
    this.flagsFollower?.cancel(endpointId);
    const pollCancel = this.active.get(endpointId);
    if (pollCancel !== undefined) {
      pollCancel();
      this.finish(endpointId);
      return;
    }
    const queued = this.queue.findIndex((q) => q.endpointId === endpointId);
    if (queued >= 0) this.queue.splice(queued, 1);
  }

  /**
   * After a daemon start: the flags of the endpoints whose containers run (their sandbox file is there)
   * are followed again, from what the store shows the daemon before followed (lastFollowed). A container
   * whose namespace or link cannot be read is left (it stopped meanwhile, or its watch never got that
   * far: its next start watches it). Each costs one namespace entry now and its socket; the first check
   * reads the flags, so a change made while no daemon ran is followed then.
   */
  resume(store: Pick<Store, 'listNetworks' | 'listEndpoints'> & Pick<LeaseStore, 'getLease'>): void {
    const follower = this.flagsFollower;
    if (follower === null) return;
    let resumed = 0;
    for (const network of store.listNetworks()) {
      const spec = network.spec;
      if ((spec.slaac ?? null) === null) continue;
      for (const endpoint of store.listEndpoints(spec.networkId)) {
        const netns = endpoint.dockerSandboxKey;
        if (netns === undefined || !this.sandbox.present(netns)) continue;
        const what = { endpoint: shortId(endpoint.endpointId), network: shortId(spec.networkId) };
        let link: LinkInfo | null;
        try {
          link = this.sandbox.containerLink(netns, endpoint, this.owns);
        } catch (err) {
          this.log.debug("the container's flags are not followed again: its namespace cannot be read", {
            ...what,
            error: String(err),
          });
          continue;
        }
        if (link === null) continue;
        if (follower.follow(spec, endpoint, netns, link, lastFollowed(store, endpoint), what, true)) resumed += 1;
      }
    }
    if (resumed > 0)
      this.log.info("the router advertisements' flags of running containers followed again", { containers: resumed });
  }

  /** Daemon shutdown: the watches stop (the containers keep what they have). */
  close(): void {
    this.queue.length = 0;
    for (const pollCancel of this.active.values()) pollCancel();
    this.active.clear();
    for (const close of this.held.values()) close();
    this.held.clear();
    this.flagsFollower?.close();
  }
}

/**
 * The flags a daemon before this one followed for the endpoint, as its store shows them: M if it holds a
 * DHCPv6 lease, O if it does or DNS came from DHCPv6 in this start of the container. What it asked and
 * did not get (no server answered) shows as unset, and is asked again if the router still says so.
 */
function lastFollowed(store: Pick<LeaseStore, 'getLease'>, endpoint: EndpointRecord): AdvertFlags {
  const managed = (store.getLease(endpoint.networkId, endpoint.endpointId)?.leases ?? []).some((l) => l.family === 6);
  const other = managed || (endpoint.learnedDns?.from.includes('dhcpv6') ?? false);
  return { heard: true, managed, other };
}
