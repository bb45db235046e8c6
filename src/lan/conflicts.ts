/**
 * Applying a network's conflict policy to what the LAN answered: an address
 * in use is refused in one line that names it, the device that answered and
 * the fix (`refuse`, the default), or logged and let through (`warn`). Every
 * device seen is remembered for `lanplug doctor`.
 */
import { LanplugError } from '../errors';
import type { Logger } from '../log';
import type { ConflictPolicy } from '../model/network';
import type { IpAddress } from '../net/address';
import type { LanSightings } from '../state/store';
import type { AskOptions, LanGuard } from './guard';
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

export function inUseMessage(
  address: IpAddress,
  verdict: Extract<ProbeVerdict, { inUse: true }>,
  advice: string,
): string {
  return `address ${address.text} is in use on the LAN by ${verdict.mac} (${verdict.how}); ${advice}`;
}

export class LanConflicts {
  /** `afterUse` runs whenever an address is handed out after a check or a network appears: the warmer refills. */
  constructor(
    private readonly guard: LanGuard,
    private readonly sightings: LanSightings,
    private readonly log: Logger,
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
    if (verdict.inUse) {
      this.sightings.recordSighting(
        { address: address.text, mac: verdict.mac, how: verdict.how, networkId: null },
        Date.now(),
      );
    }
    return verdict;
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

  isKnownTaken(address: IpAddress): boolean {
    return this.guard.isKnownTaken(address);
  }

  isKnownFree(address: IpAddress): boolean {
    return this.guard.isKnownFree(address);
  }
}
