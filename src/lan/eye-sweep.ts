/**
 * The LAN sync's look for this daemon's LAN eyes that no network needs any
 * more (eye.ts, unusedEyes), made only when its answer may have changed.
 * That answer depends on two things: the links (the eyes, their parents and
 * the parents' names) and the parent names the networks use. The networks
 * are compared with the last look's; the links are the kernel's to tell:
 * a NETLINK_ROUTE socket joined to RTNLGRP_LINK (netlink/events.ts) says
 * whether any link was added, changed or removed since the last period, an
 * overflowed queue (ENOBUFS) counting as a change. Any link, not only this
 * daemon's: a parent renamed or deleted changes the answer as much as an eye
 * does, and telling them apart would mean decoding every notification.
 *
 * Why: the look is a link dump, and where the containers' macvlans sit in
 * the daemon's namespace (the scale bench) the kernel writes all of them,
 * 68 ms of CPU every 2 s beside 10,000. Idle, nothing changes and nothing is
 * read. A look every SAFETY_PERIODS periods all the same bounds what a change
 * the kernel tells no one costs (a link that is down moved into another link
 * group, for one: lab-verified; an overflowed queue is reported, and the
 * kernel queues a notification inside the very call that made a link, removed
 * it, renamed it or changed its flags).
 */
import { countLanSyncDump } from '../metrics/registry';
import type { ChangeSignal } from './host-addresses';

/** With the sync every 2 s: a look at least every 30 s. */
export const SAFETY_PERIODS = 15;

export class UnusedEyeSweep {
  /** The parents the networks used at the last look that finished; null before the first. */
  private lookedWith: string | null = null;
  /** A change not yet looked at: set by a notification, kept until a look finished. */
  private dirty = true;
  private periodsSinceLook = 0;

  /**
   * `look` finds and removes the unused eyes (NetworkDriver.removeUnusedEyes); `links` tells of link
   * changes (absent: every period looks, as before notifications were used).
   */
  constructor(
    private readonly look: () => void,
    private readonly links: Pick<ChangeSignal, 'changed'> | null,
    private readonly safetyPeriods = SAFETY_PERIODS,
  ) {}

  /**
   * One period of the sync, with the parent names the networks use now (usedParentNames): looks when
   * a link changed, the networks' parents changed, the last look failed, or SAFETY_PERIODS went by
   * without one. Whether it looked; a failed look throws, and the next period looks again.
   */
  run(parents: ReadonlySet<string>): boolean {
    // Asked first, looked after: a change that lands during the look is seen by the next period.
    if (this.links === null || this.links.changed()) this.dirty = true;
    const key = [...parents].sort().join('\n');
    this.periodsSinceLook++;
    if (!this.dirty && key === this.lookedWith && this.periodsSinceLook < this.safetyPeriods) return false;
    this.dirty = true;
    this.periodsSinceLook = 0;
    countLanSyncDump();
    this.look();
    this.lookedWith = key;
    this.dirty = false;
    return true;
  }
}
