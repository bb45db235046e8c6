/**
 * Removing links off the request path.
 *
 * The kernel makes every link removal wait for RCU (an rcu_barrier after
 * rtnl_lock is released, 10-20 ms, inside the RTM_DELLINK call): paid by each
 * DeleteEndpoint, it was most of a detach. The reaper parks a link instead:
 * down, and into lanplug's link group, in one RTM_NEWLINK that costs
 * microseconds. That takes the link out of use at once: a macvlan that is
 * down no longer claims its MAC on the parent, and a link Docker handed back
 * from a container has lost its addresses on the way. Then every parked link
 * goes with one RTM_DELLINK for the whole group (one wait for the batch, not
 * one per link), sent from a worker thread on the reaper's own socket so that
 * the event loop serves the next request meanwhile.
 *
 * Nothing is lost if the daemon dies with links parked: the caller records
 * each link as a leftover before parking it and forgets the record only when
 * `gone` runs; the daemon removes the group at start, and reconcile whatever
 * else is left. The group is the daemon's own: another daemon's parked links
 * are never in it.
 */
import type { Logger } from '../log';
import { RTM_DELLINK } from '../netlink/codec';
import { ENODEV } from '../netlink/errno';
import { NetlinkSocket } from '../netlink/socket';
import { LanplugError } from '../errors';
import { encodeGroupDelete, type LinkInfo } from './link';
import type { Rtnl } from './rtnl';

/**
 * The link group parked links waited in before each state directory had a parked group of its own
 * (driver/link-ownership.ts); the default for tools and tests that own no links.
 */
export const PARKED_LINK_GROUP = 0x6c70;

/** How the driver removes an endpoint's link: now, or soon and off the request path. */
export interface LinkRemover {
  /**
   * The link is out of use (down) when this returns, and gone now or shortly;
   * `gone` runs once it is. Throws when the kernel refuses.
   */
  remove(link: LinkInfo, gone: () => void): void;
  /** Links handed to remove() and not yet gone; settle() removes them. */
  readonly pending: number;
  /** Everything handed to remove() is gone when this returns (before a parent goes, or a link of the same MAC comes). */
  settle(): void;
}

/** Removes at once, waiting for the kernel: for one-shot commands (`lanplug gc`) and unit tests. */
export class ImmediateRemover implements LinkRemover {
  readonly pending = 0;
  constructor(private readonly rtnl: Rtnl) {}
  remove(link: LinkInfo, gone: () => void): void {
    this.rtnl.deleteLink(link);
    gone();
  }
  settle(): void {}
}

export class LinkReaper implements LinkRemover {
  /** Parked links not yet sent for removal, by name, with what to do once they are gone. */
  private parked = new Map<string, () => void>();
  /** The batch the kernel is removing right now. */
  private batch = new Map<string, () => void>();
  private inFlight: Promise<void> | null = null;
  private scheduled = false;
  private readonly background: NetlinkSocket;

  /** The group links are parked in: this daemon's own (`ip link show group N` lists them). */
  private readonly group: number;

  /** `netns`: the namespace `rtnl` acts in, when not the daemon's own (tests). */
  constructor(
    private readonly rtnl: Rtnl,
    private readonly log: Logger,
    options: { netns?: string; parkedGroup?: number } = {},
  ) {
    this.group = options.parkedGroup ?? PARKED_LINK_GROUP;
    this.background = NetlinkSocket.open(options.netns === undefined ? {} : { netns: options.netns });
  }

  get pending(): number {
    return this.parked.size + this.batch.size;
  }

  remove(link: LinkInfo, gone: () => void): void {
    // Only links whose removal the kernel can batch (a group delete fails whole if one member cannot go).
    if (link.kind !== 'macvlan' && link.kind !== 'ipvlan') {
      this.rtnl.deleteLink(link);
      gone();
      return;
    }
    if (!this.rtnl.parkLink(link, this.group)) {
      gone();
      return;
    }
    this.parked.set(link.name, gone);
    this.schedule();
  }

  settle(): void {
    if (this.pending === 0) return;
    // Removes the group as it is now: the batch in flight too, if the kernel has not yet.
    this.removeGroup();
    const done = new Map([...this.batch, ...this.parked]);
    this.parked.clear();
    this.batch.clear();
    this.finish(done, true);
  }

  /**
   * Removes every link in the parked group now, however it got there (at
   * start: parked by a daemon that died). Should the kernel refuse the group
   * as a whole (someone put a link it cannot delete in it), each link is
   * tried on its own; the number left behind is returned, never thrown.
   */
  removeGroup(): void {
    try {
      this.rtnl.deleteLinkGroup(this.group);
      return;
    } catch (err) {
      this.log.warn('could not remove the parked links at once; removing them one by one', { error: String(err) });
    }
    for (const link of this.rtnl.listLinks().filter((l) => l.group === this.group)) {
      try {
        this.rtnl.deleteLink(link);
      } catch (err) {
        this.log.warn('could not remove a parked link; reconcile will retry', { link: link.name, error: String(err) });
      }
    }
  }

  /** For shutdown: waits for the batch in flight, then removes the rest now. */
  async close(): Promise<void> {
    await this.inFlight;
    this.settle();
    this.background.close();
  }

  /** Parked links go in the next turn of the event loop: those parked meanwhile join the batch. */
  private schedule(): void {
    if (this.scheduled || this.inFlight !== null) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.reap();
    });
  }

  private reap(): void {
    if (this.parked.size === 0 || this.inFlight !== null || this.background.closed) return;
    this.batch = this.parked;
    this.parked = new Map();
    const batch = this.batch;
    this.inFlight = this.background
      .requestInBackground(RTM_DELLINK, 0, encodeGroupDelete(this.group))
      .then(
        // The kernel removed every link of the group, and each of the batch was in it.
        () => this.finish(batch, false),
        (err: unknown) => {
          // ENODEV: settle() removed them first. Anything else: one by one, here.
          if (!(err instanceof LanplugError && err.errno === ENODEV)) this.removeGroup();
          this.finish(batch, true);
        },
      )
      .finally(() => {
        this.batch = new Map();
        this.inFlight = null;
        if (this.parked.size > 0) this.schedule();
      });
  }

  /**
   * Runs `gone` for each link of the batch that is gone (a link the kernel
   * would not remove keeps its leftover record, for reconcile). A settle()
   * that ran meanwhile has emptied the batch already: each `gone` runs once.
   */
  private finish(batch: Map<string, () => void>, check: boolean): void {
    for (const [name, gone] of batch) {
      try {
        if (!check || this.rtnl.getLink(name) === null) gone();
      } catch (err) {
        this.log.warn('could not forget a removed link', { error: String(err) });
      }
    }
  }
}
