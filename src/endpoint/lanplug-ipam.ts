/**
 * The `lanplug` IPAM driver (`docker network create --ipam-driver lanplug`):
 * pools and claims are the allocator's (ipam/allocator.ts); an endpoint's
 * address is claimed, then asked of the LAN before Docker gets it — never
 * this host's, and per the network's policy not a device's: an address the
 * allocator chose that the LAN uses is skipped for the next, one asked for
 * by value is refused in one line.
 *
 * Why here and not in ipam/: the claim/probe loop awaits the LAN (a probe per
 * candidate the warmer has not answered) and needs the LAN's rules for a
 * pool (citizen.ts, lan/). ipam/ sits below lan/, citizen.ts and driver/ on
 * the floors of docs/architecture.md and may not ask them; every wait of the
 * endpoint path is the endpoint service's, on this floor, above all three.
 * ipam/ keeps what is decided without the LAN (the allocator, its address
 * arithmetic); the API edge (api/docker/ipam-routes.ts) only translates.
 */
import type { LanCitizen } from '../citizen';
import { LanplugError } from '../errors';
import type { AddressRequest, IpamAllocator, PoolRequest } from '../ipam/allocator';
import {
  ADVICE_EXPLICIT,
  answeringEverythingMessage,
  HOST_ADVICE_EXPLICIT,
  ONE_DEVICE_SAMPLES,
  type AnsweringEverything,
  type LanCheck,
} from '../lan/conflicts';
import type { PoolRecord } from '../model/ipam';
import type { Family, IpAddress, IpPrefix } from '../net/address';

/** What the driver asks of the LAN side: the checks, and which apply to a pool's addresses. */
export type IpamLan = Pick<LanCitizen, 'conflicts' | 'rulesForPool'>;

/**
 * Addresses in use on the LAN one automatic allocation skips (each a probe answered) before it
 * gives up: a /24's worth. A LAN that really has that many devices in a row at the start of the
 * range still gets past them (~10-25 ms each: a few seconds; and they are remembered for 10
 * minutes, so the next allocation skips them unasked), while a device answering every probe from a
 * MAC of its own making, which ONE_DEVICE_STREAK cannot tell, does not walk a /16 for minutes.
 */
const MAX_ANSWERED_PER_ALLOCATION = 256;

/**
 * How long one automatic allocation may walk answered addresses. Docker gives a plugin call 30 s
 * (its plugin client's timeout) and then retries, while the walk would go on and claim an address
 * Docker never gets. A device answering each probe late (~190 ms, within the probe's window) makes
 * 256 probes ~50 s; 10 s leaves the rest of the call, and CreateEndpoint after it, well inside 30 s.
 */
const WALK_BUDGET_MS = 10_000;

/**
 * Where Docker's pool requests go when CNI networks may use the same shared pool on this host
 * (endpoint/shared-attachments.ts): the host stays in the pool while either uses it.
 */
export type SharedPoolUse = Pick<IpamAllocator, 'requestPool' | 'releasePool'>;

export class LanplugIpam {
  constructor(
    private readonly allocator: IpamAllocator,
    /** The LAN side; null: addresses are claimed without asking anyone (tests of the API edge). */
    private readonly lan: IpamLan | null = null,
    /**
     * The clock the walk's budget is measured on (tests of a slow LAN): monotonic ms. On the wall clock,
     * one set forward mid-walk ended it at once ("stopped looking after 86400.0 s").
     */
    private readonly now: () => number = () => performance.now(),
    /** Pools: the allocator's, or, with CNI beside Docker, counted with CNI's use of them. */
    private readonly pools: SharedPoolUse = allocator,
  ) {}

  /** Whether pools are shared with other hosts (then Docker must send each endpoint's MAC). */
  get shared(): boolean {
    return this.allocator.shared;
  }

  requestPool(request: PoolRequest): Promise<PoolRecord> {
    return this.pools.requestPool(request);
  }

  releasePool(poolId: string): Promise<void> {
    return this.pools.releasePool(poolId);
  }

  /**
   * The address with the pool's prefix length, as Docker wants it. The LAN's rules apply only once
   * a lanplug network on a LAN uses the pool (citizen.rulesForPool): the gateway and --aux-address
   * entries, claimed before that, are never probed nor refused as this host's.
   */
  async requestAddress(request: AddressRequest): Promise<IpPrefix> {
    const lan = this.lan;
    const rules = lan === null || request.gateway ? null : lan.rulesForPool(await this.allocator.pool(request.poolId));
    // Refused before it is claimed: automatic allocation skips this host's addresses on its own.
    if (lan !== null && rules !== null && request.preferred !== null)
      lan.conflicts.refuseHostAddresses([request.preferred], HOST_ADVICE_EXPLICIT);
    const started = this.now();
    for (let answered = 1; ; answered++) {
      // Claimed first, asked about after: no other request can take it while the LAN is asked.
      const address = await this.allocator.requestAddress(request);
      const check = rules?.lan ?? null;
      if (lan === null || check === null) return address;
      // The warmer asked about it a moment ago (the usual case): no probe.
      if (lan.conflicts.isKnownFree(check.link, address.address)) {
        lan.conflicts.used();
        return address;
      }
      const verdict = await lan.conflicts.verdict(check, address.address);
      if (!verdict.inUse) {
        lan.conflicts.used();
        return address;
      }
      if (request.preferred !== null && check.policy === 'warn') return address;
      await this.allocator.releaseAddress(request.poolId, address.address);
      // An identity's reserved address the LAN uses now: it stays reserved, this container gets another.
      request = { ...request, name: null };
      if (request.preferred !== null)
        throw new LanplugError('Conflict', lan.conflicts.refusalOf(check, address.address, verdict, ADVICE_EXPLICIT));
      // Automatic: the allocator now skips it (the LAN was seen using it); the next one, unless what
      // answered answers for everything, or the walk is long enough to be no ordinary LAN's.
      const everything = await this.answeringEverything(lan, check, request.poolId, address.address.family);
      if (everything !== null && everything.mac === verdict.mac)
        throw new LanplugError('Conflict', answeringEverythingMessage(everything));
      const spent = this.now() - started;
      if (spent >= WALK_BUDGET_MS)
        throw new LanplugError(
          'Conflict',
          `${answered} addresses in a row are in use on the LAN, the last ${address.address.text} by ${verdict.mac} (${verdict.how}); lanplug stopped looking after ${(spent / 1000).toFixed(1)} s (the LAN answers slowly): give --ip-range where the LAN has free addresses`,
        );
      if (answered >= MAX_ANSWERED_PER_ALLOCATION)
        throw new LanplugError(
          'Conflict',
          `${answered} addresses in a row are in use on the LAN, the last ${address.address.text} by ${verdict.mac} (${verdict.how}); lanplug stopped looking: give --ip-range where the LAN has free addresses`,
        );
    }
  }

  /**
   * The device answering for every address of `check`'s network, if one is known or its streak is
   * confirmed now by addresses drawn elsewhere in the pool; a block holder's streak is not one.
   */
  private async answeringEverything(
    lan: IpamLan,
    check: LanCheck,
    poolId: string,
    family: Family,
  ): Promise<AnsweringEverything | null> {
    const suspect = lan.conflicts.suspectedOfEverything(check, family);
    if (suspect === null) return lan.conflicts.answeringEverything(check, family);
    // Fresh addresses only: one already known taken (the rest of a block its holder answers for) proves nothing.
    const elsewhere = await this.allocator.randomUnclaimed(
      poolId,
      ONE_DEVICE_SAMPLES,
      (a) => suspect.addresses.includes(a.text) || lan.conflicts.isKnownTaken(check.link, a),
    );
    return lan.conflicts.confirmAnsweringEverything(check, family, elsewhere);
  }

  releaseAddress(poolId: string, address: IpAddress): Promise<void> {
    return this.allocator.releaseAddress(poolId, address);
  }
}
