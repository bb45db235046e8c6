/**
 * Later advertisements of a running `-o ipv6=slaac` container: the router's M and O flags may change
 * while it runs (DHCPv6 turned on at the router), and a host follows them (RFC 4861 §4.2). The watch
 * (slaac-watch.ts) follows the first advertisement's and ends; from then on this follower holds, until
 * Leave or DeleteEndpoint, one socket in the container joined to the group the kernel notifies when an
 * advertisement changes the flags it keeps (netlink/router-adverts.ts). One timer checks every held
 * socket each CHECK_MS: a receive that never waits and enters no namespace (microseconds each), and only
 * for a socket that has something are the flags read again in the container (RTM_GETLINK). A change
 * is logged once, recorded as a `slaac.flags` event (at most one per FLAGS_HOLD_MS per container), and goes to the follow-up with the flags followed
 * before it (endpoint/slaac-dhcp6.ts decides what it asks, as RFC 2462 §5.5.3 put it: a flag turned on
 * starts DHCPv6, a flag turned off stops nothing).
 *
 * The cost is one file descriptor per running SLAAC endpoint (the socket also keeps its namespace
 * alive, which Leave ends). A restarted daemon follows the containers that were running again, from
 * what its store shows was followed (slaac-watch.ts resume). Should Leave and DeleteEndpoint never
 * reach lanplug, a gone namespace tells nothing: every SWEEP_CHECKS checks, the follow of an endpoint
 * whose sandbox file is gone, or whose row the store no longer has, ends and its socket is closed.
 */
import type { LinkInfo } from '../link/link';
import type { Logger } from '../log';
import { recordEvent } from '../metrics/events';
import type { EndpointRecord, NetworkSpec } from '../model/network';
import type { AdvertFlags, FlagChanges } from '../netlink/router-adverts';
import type { AdvertFollowUp } from './slaac-advert';

/**
 * Between two checks of the sockets: a router advertises every few minutes (RFC 4861's
 * MaxRtrAdvInterval, 600 s by default), so a change is followed seconds after the advertisement that
 * made it; 1,000 containers cost 500 receives a second.
 */
export const FLAGS_CHECK_MS = 2_000;

/**
 * After a change is followed, the next is followed no sooner than this: the flags are read again when
 * it ends, and only what the router settled on counts. A router changes them when its operator does;
 * flags that flap at each advertisement (a broken or hostile router, or a container with NET_ADMIN
 * sending advertisements, which every container on the parent hears) would otherwise cost each
 * container a read, a log line, an event and a DHCPv6 exchange every other check.
 */
export const FLAGS_HOLD_MS = 15_000;

/**
 * Every this many checks (a minute), each follow is checked against what says its container still runs:
 * a stat and a store read per endpoint, cheap beside the socket it may free.
 */
export const SWEEP_CHECKS = 30;

/** What the follower reaches in the container, and when. */
export interface FlagsAccess {
  listenFlags(netns: string): FlagChanges;
  advertFlags(netns: string, index: number): AdvertFlags | null;
  /** The endpoint's sandbox file is there and the store still has the endpoint. */
  stillThere(endpoint: EndpointRecord, netns: string): boolean;
  /** Monotonic ms (the watch's clock): the hold must not end or stretch when the wall clock steps. */
  now(): number;
  after(ms: number, run: () => void): () => void;
}

interface Followed {
  spec: NetworkSpec;
  endpoint: EndpointRecord;
  netns: string;
  link: LinkInfo;
  /** What the follow-up was last given. */
  flags: AdvertFlags;
  changes: FlagChanges;
  /** Read the flags at the next check whatever the socket says: they may have changed before it was open. */
  readAnyway: boolean;
  /** No change is followed before this time (FLAGS_HOLD_MS after the last one). */
  holdUntil: number;
  /** Followed again after a daemon start: `flags` is what the store shows the daemon before followed. */
  resumed: boolean;
  what: Record<string, string>;
}

export class AdvertFlagsFollower {
  private readonly followed = new Map<string, Followed>();
  private stopTimer: (() => void) | null = null;
  /** Checks since the last sweep (SWEEP_CHECKS). */
  private checksUnswept = 0;

  constructor(
    private readonly log: Logger,
    private readonly access: FlagsAccess,
    private readonly followUp: () => AdvertFollowUp | null,
  ) {}

  /**
   * From the flags the watch followed (`resumed`: those a daemon before this one followed): their later
   * changes go to the follow-up until cancel(). False when no socket could be opened (warned).
   */
  follow(
    spec: NetworkSpec,
    endpoint: EndpointRecord,
    netns: string,
    link: LinkInfo,
    flags: AdvertFlags,
    what: Record<string, string>,
    resumed = false,
  ): boolean {
    this.cancel(endpoint.endpointId);
    let changes: FlagChanges;
    try {
      changes = this.access.listenFlags(netns);
    } catch (err) {
      this.log.warn(
        "cannot listen for changes of the router advertisement's flags in the container; followed at its next start",
        { ...what, error: String(err) },
      );
      return false;
    }
    this.followed.set(endpoint.endpointId, {
      spec,
      endpoint,
      netns,
      link,
      flags,
      changes,
      readAnyway: true,
      holdUntil: 0,
      resumed,
      what,
    });
    this.stopTimer ??= this.access.after(FLAGS_CHECK_MS, () => this.check());
    return true;
  }

  cancel(endpointId: string): void {
    const followed = this.followed.get(endpointId);
    if (followed === undefined) return;
    followed.changes.close();
    this.followed.delete(endpointId);
    if (this.followed.size === 0) this.stopChecks();
  }

  /** Daemon shutdown. */
  close(): void {
    for (const id of [...this.followed.keys()]) this.cancel(id);
  }

  get following(): number {
    return this.followed.size;
  }

  private stopChecks(): void {
    this.stopTimer?.();
    this.stopTimer = null;
  }

  private check(): void {
    this.stopTimer = null;
    const sweep = ++this.checksUnswept >= SWEEP_CHECKS;
    if (sweep) this.checksUnswept = 0;
    for (const [id, f] of [...this.followed]) {
      try {
        if (sweep && !this.access.stillThere(f.endpoint, f.netns)) {
          // Leave and DeleteEndpoint never came (or failed): the socket alone keeps the namespace alive.
          this.log.info("the container is gone without a Leave; the follow of its router advertisement's flags ended", {
            ...f.what,
            sandbox: f.netns,
          });
          this.cancel(id);
          continue;
        }
        // Both run: the socket is drained even when the flags are read anyway.
        if (!f.changes.changed() && !f.readAnyway) continue;
        // Held: read once the hold ends, whatever the socket says then.
        f.readAnyway = this.access.now() < f.holdUntil;
        if (f.readAnyway) continue;
        const now = this.access.advertFlags(f.netns, f.link.index);
        const resumed = f.resumed;
        f.resumed = false;
        if (now === null || (now.managed === f.flags.managed && now.other === f.flags.other)) continue;
        f.holdUntil = this.access.now() + FLAGS_HOLD_MS;
        const before = f.flags;
        f.flags = { heard: true, managed: now.managed, other: now.other };
        this.log.info("the router advertisement's flags changed in the container", {
          ...f.what,
          managed: String(now.managed),
          other: String(now.other),
          wasManaged: String(before.managed),
          wasOther: String(before.other),
          // The change may have come while no daemon ran: `was` is what the daemon before this one followed.
          ...(resumed ? { sinceDaemonStart: 'true' } : {}),
        });
        recordEvent('slaac.flags', { ...f.what, managed: String(now.managed), other: String(now.other) });
        this.followUp()?.flags(f.spec, f.endpoint, f.netns, f.link, f.flags, before);
      } catch (err) {
        // The container stopped or went meanwhile (its Leave follows): nothing left to follow there.
        this.log.debug("the follow of the router advertisement's flags in the container ended", {
          ...f.what,
          error: String(err),
        });
        this.cancel(id);
      }
    }
    if (this.followed.size > 0) this.stopTimer = this.access.after(FLAGS_CHECK_MS, () => this.check());
  }
}
