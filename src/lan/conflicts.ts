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
import type { ConflictPolicy } from '../model/network';
import type { IpAddress } from '../net/address';
import type { LanSightings } from '../state/store';
import type { AskOptions, LanGuard } from './guard';
import { hostAddressMessage, type HostAddresses } from './host-addresses';
import type { ProbeLink, ProbeVerdict } from './probe';

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

export class LanConflicts {
  /** `afterUse` runs whenever an address is handed out after a check or a network appears: the warmer refills. */
  constructor(
    private readonly guard: LanGuard,
    private readonly sightings: LanSightings,
    private readonly log: Logger,
    /** This host's own addresses; null only where no host is involved (unit tests of the LAN side). */
    private readonly host: HostAddresses | null,
    private readonly afterUse: () => void = () => undefined,
  ) {}

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
      this.sightings.recordSighting(
        { address: address.text, mac: verdict.mac, how: verdict.how, networkId: null },
        Date.now(),
      );
    }
    return verdict;
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

  /** Throws a Conflict for an address in use under `refuse`; logs it under `warn`. */
  async require(check: LanCheck, addresses: readonly IpAddress[], advice: string): Promise<void> {
    for (const address of addresses) {
      const verdict = await this.verdict(check, address);
      if (!verdict.inUse) continue;
      const message = inUseMessage(address, verdict, advice);
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
