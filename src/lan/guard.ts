/**
 * The LAN guard: remembers what the LAN answered and asks it again only when
 * the answer is stale, so that a container's start usually pays nothing.
 *
 * - A "free" verdict stays fresh for FREE_FRESH_MS (the background prober
 *   keeps the next candidates of each network fresh: a normal `docker run`
 *   finds its address already asked about).
 * - An "in use" verdict is kept for TAKEN_FRESH_MS: automatic allocation skips
 *   the address without asking, and then asks again (devices leave).
 * - At most one probe per address and link is in flight; callers of the same
 *   address share it.
 * - An answer from a container of this host holding the address (the warmer
 *   asked about a candidate just as Docker gave it to a container) is no LAN
 *   device: it says the address is in use now, but it is not remembered, or
 *   the next container Docker gives that address would be refused for
 *   minutes because of one that is gone.
 *
 * Answers are kept per probing link and address: two VLANs (two eyes, two
 * parents) may carry the same subnet, and a device holding an address on one
 * says nothing about the other.
 */
import type { Logger } from '../log';
import type { IpAddress } from '../net/address';
import { probe, QUICK, type ProbeLink, type ProbeTiming, type ProbeVerdict } from './probe';

const FREE_FRESH_MS = 30_000;
const TAKEN_FRESH_MS = 10 * 60_000;

interface Known {
  verdict: ProbeVerdict;
  /** When it was answered, on the guard's monotonic clock. */
  at: number;
  address: IpAddress;
  /** The name of the parent the answer came through (for messages). */
  link: string;
}

/** By the probing link's index: its name is the parent's (ProbeLink.name), which is for messages. */
function keyOf(link: ProbeLink, address: IpAddress): string {
  return `${link.index}/${address.family}/${address.value}`;
}

export type Prober = (
  link: ProbeLink,
  candidate: IpAddress,
  timing: ProbeTiming,
  ownMac: string | null,
) => Promise<ProbeVerdict>;

export interface AskOptions {
  /** A remembered "free" does not count (an address a DHCP server just gave, which a device may have taken since). */
  asNow?: boolean;
  /** Nothing remembered counts (an absent host's address: reclaimed only if it is silent now). */
  ignoreMemory?: boolean;
  /**
   * The MAC of the one the address is for: its own answer is no conflict (a container asking its
   * DHCP server from scratch still holds the address). Such a probe is its own, and a "free" from
   * it is not remembered (the address is not free: its owner holds it).
   */
  ownMac?: string;
}

/** Whether `mac`, answering for `address` behind `link`, is a container of this host that holds it. */
export type OwnAnswer = (link: ProbeLink, address: IpAddress, mac: string) => boolean;

export class LanGuard {
  private readonly known = new Map<string, Known>();
  private readonly inFlight = new Map<string, Promise<ProbeVerdict>>();

  constructor(
    private readonly log: Logger,
    private readonly prober: Prober = probe,
    /**
     * What an answer's freshness is measured on: monotonic ms. On the wall clock, one set back an hour
     * kept a "free" answer for the hour (an address a device took since was handed out unasked), and
     * an "in use" one as long.
     */
    private readonly now: () => number = () => performance.now(),
    private readonly ownAnswer: OwnAnswer = () => false,
  ) {}

  /**
   * The LAN's answer for `address` as seen from `link`: remembered if fresh,
   * else asked now. `asNow`: a remembered "free" does not count (an address a
   * DHCP server just gave, which a device may have taken since).
   */
  async ask(link: ProbeLink, address: IpAddress, options: AskOptions = {}): Promise<ProbeVerdict> {
    const ownMac = options.ownMac ?? null;
    const key = keyOf(link, address);
    const cached = options.ignoreMemory === true ? null : this.fresh(key);
    // What the endpoint's own MAC answered is no conflict for it: only others' answers count.
    const othersOnly = cached !== null && !(cached.inUse && cached.mac === ownMac) ? cached : null;
    if (othersOnly !== null && (othersOnly.inUse || options.asNow !== true)) return othersOnly;
    const flightKey = ownMac === null ? key : `${key} ${ownMac}`;
    let pending = this.inFlight.get(flightKey);
    if (pending === undefined) {
      pending = this.prober(link, address, QUICK, ownMac).finally(() => this.inFlight.delete(flightKey));
      this.inFlight.set(flightKey, pending);
    }
    const verdict = await pending;
    const fields = verdict.inUse ? { address: address.text, link: link.name, mac: verdict.mac, how: verdict.how } : {};
    if (verdict.inUse && verdict.contended === true) {
      this.log.info('address contended on the LAN', fields);
      return verdict;
    }
    if (verdict.inUse && this.ownAnswer(link, address, verdict.mac)) {
      this.log.debug('a container of this host answered for its address', fields);
      return { ...verdict, ownContainer: true };
    }
    // Free for the owner is not free for everyone (the owner's own answer was ignored): not remembered.
    if (!verdict.inUse && ownMac !== null) return verdict;
    this.known.set(key, { verdict, at: this.now(), address, link: link.name });
    if (verdict.inUse) this.log.info('address in use on the LAN', fields);
    return verdict;
  }

  /** True when the LAN behind `link` was seen using `address` recently: automatic allocation skips it without asking. */
  isKnownTaken(link: ProbeLink, address: IpAddress): boolean {
    return this.fresh(keyOf(link, address))?.inUse === true;
  }

  /** True when the address was asked about on `link` recently and nobody answered. */
  isKnownFree(link: ProbeLink, address: IpAddress): boolean {
    return this.fresh(keyOf(link, address))?.inUse === false;
  }

  /**
   * True when a LAN behind any link was seen using `address` recently: for a caller that cannot
   * name the link (it skips an address that may be free on its own LAN, never the other way round).
   */
  isKnownTakenAnywhere(address: IpAddress): boolean {
    return this.knownHolderAnywhere(address) !== null;
  }

  /** The answer of the device seen using `address` recently behind any link, to name it in a refusal. */
  knownHolderAnywhere(address: IpAddress): Extract<ProbeVerdict, { inUse: true }> | null {
    for (const [key, k] of this.known) {
      if (k.address.value !== address.value || k.address.family !== address.family) continue;
      const verdict = this.fresh(key);
      if (verdict?.inUse === true) return verdict;
    }
    return null;
  }

  /** Drops answers too old to count (run now and then: the memory would otherwise only grow). */
  forgetStale(): void {
    for (const key of [...this.known.keys()]) if (this.fresh(key) === null) this.known.delete(key);
  }

  /**
   * Addresses the LAN was seen using, with who and on which parent: for `lanplug doctor` and the logs.
   * `at`: wall-clock ms, as long ago as the answer is by the monotonic clock.
   */
  taken(): { address: string; link: string; mac: string; how: string; at: number }[] {
    const now = this.now();
    const wall = Date.now();
    return [...this.known.values()].flatMap((k) =>
      k.verdict.inUse
        ? [{ address: k.address.text, link: k.link, mac: k.verdict.mac, how: k.verdict.how, at: wall - (now - k.at) }]
        : [],
    );
  }

  private fresh(key: string): ProbeVerdict | null {
    const k = this.known.get(key);
    if (k === undefined) return null;
    const age = this.now() - k.at;
    return age <= (k.verdict.inUse ? TAKEN_FRESH_MS : FREE_FRESH_MS) ? k.verdict : null;
  }
}
