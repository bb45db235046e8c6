/**
 * Whether an address may go to a container: never one this host holds itself
 * (whatever the network's policy), and then the network's conflict policy
 * applied to what the LAN answered: an address in use is refused in one line
 * that names it, the device that answered and the fix (`refuse`, the
 * default), or logged and let through (`warn`). Every device seen is
 * remembered for `lanplug doctor`.
 */
import { LanplugError } from '../errors';
import type { Logger } from '../log';
import { shortId, type ConflictPolicy } from '../model/network';
import type { Family, IpAddress } from '../net/address';
import type { LanSightings } from '../state/store';
import type { AskOptions, LanGuard } from './guard';
import { hostAddressMessage, type HostAddresses } from './host-addresses';
import type { ProbeLink, ProbeVerdict } from './probe';
import type { Holding } from './watch';
import { countConflict } from '../metrics/registry';
import { recordEvent } from '../metrics/events';

export interface LanCheck {
  link: ProbeLink;
  policy: Exclude<ConflictPolicy, 'off'>;
  networkId: string;
}

/** What a user can do about it, which depends on who chose the address. */
export const ADVICE_DEFAULT_IPAM =
  "Docker's IPAM would offer it again: reserve it with --aux-address, run the container with another --ip, or create the network with --ipam-driver lanplug, which skips addresses in use";
export const ADVICE_EXPLICIT = 'choose another --ip, or free that device';
/** The host's own address: nothing to free, and Docker's IPAM does not know the host holds it. */
export const HOST_ADVICE_DEFAULT_IPAM = (address: IpAddress): string =>
  `Docker's IPAM would offer it again: reserve it with --aux-address host=${address.text}, run the container with another --ip, or create the network with --ipam-driver lanplug, which skips this host's addresses`;
export const HOST_ADVICE_EXPLICIT = (): string => 'choose another --ip';

/** What CreateEndpoint checks before it records an endpoint: its addresses, and where to ask the LAN about them. */
export interface AddressCheck {
  addresses: IpAddress[];
  /** null: the LAN is not asked (lanplug.conflict=off, or the parent is down: nothing can answer). */
  lan: LanCheck | null;
}

export function inUseMessage(address: IpAddress, verdict: { mac: string; how: string }, advice: string): string {
  return `address ${address.text} is in use on the LAN by ${verdict.mac} (${verdict.how}); ${advice}`;
}

/**
 * Probes in a row for one network on its link (and family) answered by one MAC, each for another address, past
 * which that device is suspected of answering for every address: a router with proxy ARP for the
 * whole subnet (or anything else answering every probe) would otherwise have an allocation walk the
 * whole pool, a probe per address (a /16: 65,534 of them, tens of minutes). More than a host with
 * a few aliases holds in a row, and at ~10-25 ms per answered probe well under a second. A
 * legitimate holder of a block (another host's ipvlan containers, which all answer with its NIC's
 * MAC; a MetalLB block of VIPs) does that too, so the suspicion is confirmed before it stops
 * anything: see ONE_DEVICE_SAMPLES.
 */
export const ONE_DEVICE_STREAK = 16;
/**
 * Addresses drawn at random elsewhere in the pool that the suspected device must answer for too
 * before it is taken for one answering everything: a proxy-ARP router answers for them all, a
 * block holder almost never for two addresses picked at random outside its block. Two probes, a
 * few ms each when answered, at most one probe timeout each when not.
 */
export const ONE_DEVICE_SAMPLES = 2;
/** How long a device seen answering for everything is taken for one (the guard keeps "in use" as long). */
const ONE_DEVICE_MEMORY_MS = 10 * 60_000;

/** A device that answered ONE_DEVICE_STREAK probes in a row on a link, for these addresses, and when. */
export interface AnsweringEverything {
  mac: string;
  link: string;
  family: Family;
  addresses: string[];
  at: number;
}

/** The one line for an address refused because the device answering for it answers for every address. */
export function answeringEverythingMessage(device: AnsweringEverything): string {
  const probes = device.family === 4 ? 'ARP probes' : 'duplicate address detection';
  return `one device answers for every address on the LAN: ${device.mac} answered ${probes} for ${device.addresses.length} addresses in a row on ${device.link} (${device.addresses[0] ?? ''} to ${device.addresses[device.addresses.length - 1] ?? ''}), so no address there can be told free; if it is a router answering for the whole subnet (proxy ARP), turn that off, or create the network with -o lanplug.conflict=off; if it does hold them, give --ip-range where it does not`;
}

/** Where a run of answers is counted: per network, its probing link and the family. */
function keyOf(check: LanCheck, family: Family): string {
  return `${check.networkId}/${check.link.index}/${family}`;
}

export class LanConflicts {
  /**
   * Per network, link and family: the MAC that answered the last probes, and for which addresses in a
   * row. Per network: a device may answer for one subnet only (a router's proxy ARP for the subnet
   * behind it), and a network beside it on the same parent, whose free addresses say nothing of that
   * subnet, must not break the count.
   */
  private readonly streaks = new Map<string, { mac: string; addresses: string[] }>();
  /**
   * Per network, link and family: the device seen answering for every address, if any, and when on
   * `monotonic` (its `at` is the wall time, for people).
   */
  private readonly everything = new Map<string, { device: AnsweringEverything; seenAt: number }>();
  /**
   * Addresses recorded for an attachment that is still asking the LAN about them (a CNI ADD records
   * its claims before it asks): by network and address, how many such attachments. A device answering
   * then is the refusal, not a claim on a container's address: the LAN watch never defends these. By
   * network: two VLANs may carry one subnet, and the other's container keeps its address defended.
   */
  private readonly unconfirmed = new Map<string, number>();

  /** `afterUse` runs whenever an address is handed out after a check or a network appears: the warmer refills. */
  constructor(
    private readonly guard: LanGuard,
    private readonly sightings: LanSightings,
    private readonly log: Logger,
    /** This host's own addresses; null only where no host is involved (unit tests of the LAN side). */
    private readonly host: HostAddresses | null,
    private readonly afterUse: () => void = () => undefined,
    /**
     * What ONE_DEVICE_MEMORY_MS is measured on: monotonic ms. On the wall clock, one set back an hour
     * kept a network's allocations stopped for the hour after the device was last seen answering everything.
     */
    private readonly monotonic: () => number = () => performance.now(),
  ) {}

  /**
   * Marks `addresses` of network `networkId` as recorded but not yet confirmed free on the LAN, until
   * the returned function runs (once the attachment is either made or undone): see defensible.
   */
  confirming(networkId: string, addresses: readonly IpAddress[]): () => void {
    const keys = addresses.map((a) => `${networkId}/${a.text}`);
    for (const k of keys) this.unconfirmed.set(k, (this.unconfirmed.get(k) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      for (const k of keys) {
        const left = (this.unconfirmed.get(k) ?? 1) - 1;
        if (left > 0) this.unconfirmed.set(k, left);
        else this.unconfirmed.delete(k);
      }
    };
  }

  /**
   * What the LAN watch defends: the container holding an address, unless an attachment of its network
   * recorded with that address is still asking the LAN about it (no container uses it yet).
   */
  defensible(holding: Holding | null): Holding | null {
    if (holding === null) return null;
    return this.unconfirmed.has(`${holding.networkId}/${holding.address.text}`) ? null : holding;
  }

  /** An address was handed out: time to make sure the next ones are known. */
  used(): void {
    this.afterUse();
  }

  /** A network was created: its first candidates are asked about now, not at the warmer's next round. */
  networkAdded(): void {
    this.afterUse();
  }

  /** Asks the LAN about `address` (see LanGuard.ask); remembers who answered. */
  async verdict(check: LanCheck, address: IpAddress, options: AskOptions = {}): Promise<ProbeVerdict> {
    const verdict = await this.guard.ask(check.link, address, options);
    // A container of this host is not a device of the LAN to show in `lanplug doctor`.
    if (verdict.inUse && verdict.ownContainer !== true) {
      countConflict('probe');
      recordEvent('conflict.found', { address: address.text, mac: verdict.mac, how: verdict.how });
      this.sightings.recordSighting(
        { address: address.text, mac: verdict.mac, how: verdict.how, networkId: null },
        Date.now(),
      );
    }
    this.follow(check, address, verdict);
    return verdict;
  }

  /**
   * The device that answered ONE_DEVICE_STREAK probes in a row for as many addresses of `check`'s
   * network lately, if any: what it answers tells nothing (allocation stops, the warmer pauses).
   */
  answeringEverything(check: LanCheck, family: Family): AnsweringEverything | null {
    const key = keyOf(check, family);
    const seen = this.everything.get(key);
    if (seen === undefined) return null;
    if (this.monotonic() - seen.seenAt <= ONE_DEVICE_MEMORY_MS) return seen.device;
    this.everything.delete(key);
    // Else the next answer of that device would re-arm it at once, on a streak that old.
    this.streaks.delete(key);
    return null;
  }

  /**
   * The device that answered ONE_DEVICE_STREAK probes or more in a row for `check`'s network and is
   * not yet known to answer for every address: confirmAnsweringEverything tells which it is.
   */
  suspectedOfEverything(check: LanCheck, family: Family): { mac: string; addresses: readonly string[] } | null {
    const streak = this.streakOn(check, family);
    if (streak === null || streak.addresses.length < ONE_DEVICE_STREAK) return null;
    return this.answeringEverything(check, family)?.mac === streak.mac ? null : streak;
  }

  /**
   * Asks the LAN about `elsewhere` (ONE_DEVICE_SAMPLES addresses away from the suspected streak, not
   * claimed, not the gateway): the device is taken for one answering everything only if it answers
   * for those too. If not, its streak was a block it holds: the count starts again (its addresses
   * stay remembered as in use, so allocations skip them unasked). No address to draw (the pool is
   * full elsewhere) is no evidence, and no evidence is no proof: not confirmed, the device stays a
   * suspect (asked about again when an address elsewhere turns up), and what it answers for is in
   * use as any answer is. Taken as confirmed, a block holder in a nearly full pool would be named a
   * proxy-ARP router, and the network's allocations stopped.
   */
  async confirmAnsweringEverything(
    check: LanCheck,
    family: Family,
    elsewhere: readonly IpAddress[],
  ): Promise<AnsweringEverything | null> {
    const suspect = this.suspectedOfEverything(check, family);
    if (suspect === null) return this.answeringEverything(check, family);
    if (elsewhere.length === 0) {
      this.log.debug('one device answered a run of probes; no address elsewhere to confirm it answers everything', {
        network: shortId(check.networkId),
        link: check.link.name,
        mac: suspect.mac,
        answered: suspect.addresses.length,
      });
      return null;
    }
    const key = keyOf(check, family);
    for (const address of elsewhere) {
      const verdict = await this.guard.ask(check.link, address);
      if (verdict.inUse && verdict.ownContainer !== true) {
        countConflict('probe');
        this.sightings.recordSighting(
          { address: address.text, mac: verdict.mac, how: verdict.how, networkId: null },
          Date.now(),
        );
      }
      if (!verdict.inUse || verdict.mac !== suspect.mac) {
        this.streaks.delete(key);
        this.log.info('one device holds a block of addresses, not every address: allocation goes on past it', {
          network: shortId(check.networkId),
          link: check.link.name,
          mac: suspect.mac,
          answered: suspect.addresses.length,
          from: suspect.addresses[0],
          to: suspect.addresses[suspect.addresses.length - 1],
          elsewhere: address.text,
          answer: verdict.inUse ? verdict.mac : 'none',
        });
        return null;
      }
    }
    const device: AnsweringEverything = {
      mac: suspect.mac,
      link: check.link.name,
      family,
      addresses: [...suspect.addresses],
      at: Date.now(),
    };
    this.everything.set(key, { device, seenAt: this.monotonic() });
    this.log.warn('one device answers for every address on the LAN: allocation there stops, background probes pause', {
      network: shortId(check.networkId),
      link: check.link.name,
      mac: device.mac,
      answered: device.addresses.length,
      from: device.addresses[0],
      to: device.addresses[device.addresses.length - 1],
      elsewhere: elsewhere.map((a) => a.text).join(' '),
    });
    return device;
  }

  /** The device that answered the last probes for `check`'s network in a row, and for which addresses (oldest first); null after a free one. */
  streakOn(check: LanCheck, family: Family): { mac: string; addresses: readonly string[] } | null {
    return this.streaks.get(keyOf(check, family)) ?? null;
  }

  /** Counts the answers of one device in a row; at ONE_DEVICE_STREAK it is suspected of answering everything. */
  private follow(check: LanCheck, address: IpAddress, verdict: ProbeVerdict): void {
    const key = keyOf(check, address.family);
    // Another host probing for the same address says nothing about who holds what.
    if (verdict.inUse && verdict.contended === true) return;
    // An address nobody answers for disproves "answers for every address".
    if (!verdict.inUse) {
      this.streaks.delete(key);
      this.everything.delete(key);
      return;
    }
    const streak = this.streaks.get(key);
    const addresses = streak?.mac === verdict.mac ? streak.addresses : [];
    if (!addresses.includes(address.text)) addresses.push(address.text);
    this.streaks.set(key, { mac: verdict.mac, addresses });
  }

  /** Answers past their freshness are dropped (the guard's memory would otherwise only grow). */
  forgetStale(): void {
    this.guard.forgetStale();
  }

  /** The link of this host that holds `address`, or null: such an address is never a container's. */
  hostHolder(address: IpAddress): string | null {
    return this.host?.holder(address) ?? null;
  }

  /** Throws a Conflict naming the link when this host holds one of `addresses`. */
  refuseHostAddresses(addresses: readonly IpAddress[], advice: (address: IpAddress) => string): void {
    for (const address of addresses) {
      const link = this.hostHolder(address);
      if (link !== null) throw new LanplugError('Conflict', hostAddressMessage(address, link, advice(address)));
    }
  }

  /**
   * The whole check of an endpoint's addresses: none is this host's, and the LAN (if asked) uses
   * none under `refuse`. Addresses asked about a moment ago (by the warmer, or by the IPAM driver
   * for this very address) cost nothing.
   */
  async requireUsable(
    check: AddressCheck,
    advice: { host: (address: IpAddress) => string; lan: string },
  ): Promise<void> {
    this.refuseHostAddresses(check.addresses, advice.host);
    const lan = check.lan;
    if (lan === null) return;
    if (check.addresses.every((a) => this.guard.isKnownFree(lan.link, a))) this.used();
    else await this.require(lan, check.addresses, advice.lan);
  }

  /**
   * The refusal of `address`, in use by `verdict`'s device: that it answers for every address when it
   * was seen doing so (no other address would do), else who holds it and `advice`.
   */
  refusalOf(check: LanCheck, address: IpAddress, verdict: { mac: string; how: string }, advice: string): string {
    const everything = this.answeringEverything(check, address.family);
    return everything !== null && everything.mac === verdict.mac
      ? answeringEverythingMessage(everything)
      : inUseMessage(address, verdict, advice);
  }

  /** Throws a Conflict for an address in use under `refuse`; logs it under `warn`. */
  async require(check: LanCheck, addresses: readonly IpAddress[], advice: string): Promise<void> {
    for (const address of addresses) {
      const verdict = await this.verdict(check, address);
      if (!verdict.inUse) continue;
      const message = this.refusalOf(check, address, verdict, advice);
      if (check.policy === 'refuse') throw new LanplugError('Conflict', message);
      this.log.warn('using an address the LAN already uses (lanplug.conflict=warn)', {
        address: address.text,
        mac: verdict.mac,
      });
    }
    this.used();
  }

  /** Not for automatic allocation: this host holds it, or the LAN behind `link` (when known) was seen using it. */
  isKnownTaken(link: ProbeLink | null, address: IpAddress): boolean {
    if (this.hostHolder(address) !== null) return true;
    return link === null ? this.guard.isKnownTakenAnywhere(address) : this.guard.isKnownTaken(link, address);
  }

  /** The device the LAN behind any link was seen using `address` from (not this host: see hostHolder). */
  knownHolder(link: null, address: IpAddress): Extract<ProbeVerdict, { inUse: true }> | null {
    return this.guard.knownHolderAnywhere(address);
  }

  /**
   * isKnownTaken for many addresses in a row (an allocation walking its range): this host's addresses
   * as of now, looked up in memory.
   */
  takenOn(link: ProbeLink | null): (address: IpAddress) => boolean {
    const host = this.host?.snapshot() ?? ((): null => null);
    return (address) =>
      host(address) !== null ||
      (link === null ? this.guard.isKnownTakenAnywhere(address) : this.guard.isKnownTaken(link, address));
  }

  isKnownFree(link: ProbeLink, address: IpAddress): boolean {
    return this.guard.isKnownFree(link, address);
  }
}
