/**
 * The addresses this host holds itself: every address on every link of the
 * daemon's network namespace (the parent's, a VLAN's, lanplug's own
 * host-access shims'). None of them is ever a container's: a container given
 * the host's address would announce it with its own MAC and take the host's
 * traffic, and the LAN probe cannot catch it — a macvlan child never hears
 * its parent's stack, and on ipvlan or passthru the probe leaves from the
 * parent itself.
 *
 * Read from the kernel, and read again whenever the kernel said an address
 * changed (NetlinkEvents): an address the host gains counts from that moment,
 * and a lookup costs a non-blocking receive, not a dump.
 */
import type { Rtnl } from '../link/rtnl';
import type { IpAddress } from '../net/address';

/** What tells HostAddresses that its copy is stale (netlink/events.ts); absent: read every time. */
export interface ChangeSignal {
  changed(): boolean;
  close(): void;
}

export class HostAddresses {
  /** Address (family and value) -> index of the link that holds it; null until first read. */
  private held: Map<string, number> | null = null;

  constructor(
    private readonly rtnl: Rtnl,
    private readonly signal: ChangeSignal | null = null,
  ) {}

  /** The name of the link of this host that holds `address`, or null when the host does not hold it. */
  holder(address: IpAddress): string | null {
    const index = this.current().get(keyOf(address));
    if (index === undefined) return null;
    return this.rtnl.getLinkByIndex(index)?.name ?? `link ${index}`;
  }

  /** `holder` as of now, for many lookups in a row (an allocation walking a range): one check for changes. */
  snapshot(): (address: IpAddress) => string | null {
    const held = this.current();
    return (address) => {
      const index = held.get(keyOf(address));
      return index === undefined ? null : (this.rtnl.getLinkByIndex(index)?.name ?? `link ${index}`);
    };
  }

  close(): void {
    this.signal?.close();
  }

  private current(): Map<string, number> {
    // Asked first, read after: a change that lands during the read is seen by the next lookup.
    const stale = this.signal === null || this.signal.changed() || this.held === null;
    if (stale) {
      const held = new Map<string, number>();
      for (const family of [4, 6] as const)
        for (const info of this.rtnl.listAddresses(family)) held.set(keyOf(info.prefix.address), info.index);
      this.held = held;
    }
    return this.held ?? new Map<string, number>();
  }
}

function keyOf(address: IpAddress): string {
  return `${address.family}/${address.value}`;
}

/** The line a user sees when a container would take this host's address. */
export function hostAddressMessage(address: IpAddress, link: string, advice: string): string {
  return `address ${address.text} is this host's own address (on ${link}): a container using it would take the host's traffic on the LAN; ${advice}`;
}
