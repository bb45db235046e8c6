/**
 * Keeps the LAN's answers fresh for the addresses containers will ask for
 * next, in the background, so that a normal `docker run` pays nothing for the
 * conflict check: every tick it asks about the next few candidates of each
 * network the guard has no fresh answer for, one probe at a time per link,
 * paced (at most PROBES_PER_SECOND per link) so that an intrusion detection
 * system does not take the host for a scanner. It pauses a network for which one
 * device answers for every address (LanConflicts.answeringEverything): what it
 * would learn there is nothing, one address after another. A device suspected
 * of it (ONE_DEVICE_STREAK answers in a row) is first asked about a couple of
 * addresses elsewhere in the pool, which tells it from a block holder.
 */
import type { Logger } from '../log';
import type { Family, IpAddress } from '../net/address';
import { ONE_DEVICE_SAMPLES, type LanCheck, type LanConflicts } from './conflicts';

const PROBES_PER_SECOND = 10;

/** A network's LAN link and the addresses its next containers would get, best first. */
export interface WarmTarget {
  check: LanCheck;
  candidates: IpAddress[];
  /**
   * Addresses at random elsewhere in the pool of `family` (unclaimed, not the gateway, not `exclude`d),
   * to confirm a suspected device answering everything; [] where lanplug does not know the pool.
   */
  elsewhere: (family: Family, exclude: (address: IpAddress) => boolean) => Promise<IpAddress[]>;
}

export class CandidateWarmer {
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly targets: () => Promise<WarmTarget[]>,
    private readonly conflicts: LanConflicts,
    private readonly log: Logger,
  ) {}

  start(everyMs: number): void {
    this.timer = setInterval(() => void this.tick(), everyMs);
    this.timer.unref();
    void this.tick();
  }

  /** One round; a round still running is not started twice. */
  tick(): Promise<void> {
    this.running ??= this.round().finally(() => (this.running = null));
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.running;
  }

  private async round(): Promise<void> {
    let targets: WarmTarget[];
    try {
      targets = await this.targets();
    } catch (err) {
      this.log.warn('no candidates to keep fresh this round', { error: String(err) });
      return;
    }
    for (const target of targets) {
      for (const candidate of target.candidates) {
        // A device answering for every address would be asked about the whole pool, 4 addresses a tick.
        if (this.conflicts.answeringEverything(target.check, candidate.family) !== null) continue;
        if (
          this.conflicts.isKnownFree(target.check.link, candidate) ||
          this.conflicts.isKnownTaken(target.check.link, candidate)
        )
          continue;
        try {
          await this.conflicts.verdict(target.check, candidate);
          await this.confirmSuspect(target, candidate.family);
        } catch (err) {
          // The link is gone (the network was removed during the round, or its parent went away, which
          // the parent watch reports): the next candidates would fail the same way.
          if (/ENODEV|ENXIO/.test(String(err))) {
            this.log.debug('background probes stopped: the link is gone', { network: target.check.networkId });
            break;
          }
          this.log.warn('a background probe failed', { address: candidate.text, error: String(err) });
        }
        await new Promise((resolve) => setTimeout(resolve, 1000 / PROBES_PER_SECOND));
      }
    }
  }

  /** A device that just answered ONE_DEVICE_STREAK in a row: answering everything, or holding a block? */
  private async confirmSuspect(target: WarmTarget, family: Family): Promise<void> {
    const suspect = this.conflicts.suspectedOfEverything(target.check, family);
    if (suspect === null) return;
    // Fresh addresses only: one already known taken (the rest of a block its holder answers for) proves nothing.
    const elsewhere = await target.elsewhere(
      family,
      (a) => suspect.addresses.includes(a.text) || this.conflicts.isKnownTaken(target.check.link, a),
    );
    await this.conflicts.confirmAnsweringEverything(target.check, family, elsewhere.slice(0, ONE_DEVICE_SAMPLES));
  }
}
