/**
 * The LAN guard: remembers what the LAN answered and asks it again only when
 * the answer is stale, so that a container's start usually pays nothing.
 *
 * - A "free" verdict stays fresh for FREE_FRESH_MS (the background prober
 *   keeps the next candidates of each network fresh: a normal `docker run`
 *   finds its address already asked about).
 * - An "in use" verdict is kept for TAKEN_FRESH_MS: automatic allocation skips
 *   the address without asking, and then asks again (devices leave).
 * - At most one probe per address is in flight; callers of the same address
 *   share it.
 */
import type { Logger } from '../log';
import type { IpAddress } from '../net/address';
import { probe, QUICK, type ProbeLink, type ProbeTiming, type ProbeVerdict } from './probe';

const FREE_FRESH_MS = 30_000;
const TAKEN_FRESH_MS = 10 * 60_000;

interface Known {
  verdict: ProbeVerdict;
  at: number;
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

export class LanGuard {
  private readonly known = new Map<string, Known>();
  private readonly inFlight = new Map<string, Promise<ProbeVerdict>>();

  constructor(
    private readonly log: Logger,
    private readonly prober: Prober = probe,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The LAN's answer for `address` as seen from `link`: remembered if fresh,
   * else asked now. `asNow`: a remembered "free" does not count (an address a
   * DHCP server just gave, which a device may have taken since).
   */
  async ask(link: ProbeLink, address: IpAddress, options: AskOptions = {}): Promise<ProbeVerdict> {
    const ownMac = options.ownMac ?? null;
    const cached = options.ignoreMemory === true ? null : this.fresh(address);
    const othersOnly = cached !== null && !(cached.inUse && cached.mac === ownMac) ? cached : null;
    if (othersOnly !== null && (othersOnly.inUse || options.asNow !== true)) return othersOnly;
    const key = address.text;
    const flightKey = ownMac === null ? key : `${key} ${ownMac}`;
    let pending = this.inFlight.get(flightKey);
    if (pending === undefined) {
      pending = this.prober(link, address, QUICK, ownMac).finally(() => this.inFlight.delete(flightKey));
      this.inFlight.set(flightKey, pending);
    }
    const verdict = await pending;
    if (verdict.inUse && verdict.contended === true) {
      this.log.info('address contended on the LAN', { address: key, mac: verdict.mac, how: verdict.how });
      return verdict;
    }
    if (!verdict.inUse && ownMac !== null) return verdict;
    this.known.set(key, { verdict, at: this.now() });
    if (verdict.inUse) this.log.info('address in use on the LAN', { address: key, mac: verdict.mac, how: verdict.how });
    return verdict;
  }

  /** True when the LAN was seen using `address` recently: automatic allocation skips it without asking. */
  isKnownTaken(address: IpAddress): boolean {
    return this.fresh(address)?.inUse === true;
  }

  /** True when the address was asked about recently and nobody answered. */
  isKnownFree(address: IpAddress): boolean {
    return this.fresh(address)?.inUse === false;
  }

  /** Addresses the LAN was seen using, with who: for `lanplug doctor` and the logs. */
  taken(): { address: string; mac: string; how: string; at: number }[] {
    return [...this.known.entries()].flatMap(([address, k]) =>
      k.verdict.inUse ? [{ address, mac: k.verdict.mac, how: k.verdict.how, at: k.at }] : [],
    );
  }

  private fresh(address: IpAddress): ProbeVerdict | null {
    const k = this.known.get(address.text);
    if (k === undefined) return null;
    const age = this.now() - k.at;
    return age <= (k.verdict.inUse ? TAKEN_FRESH_MS : FREE_FRESH_MS) ? k.verdict : null;
  }
}
