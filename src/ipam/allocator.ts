/**
 * The `lanplug` IPAM driver's decisions, as typed operations (the driver,
 * endpoint/lanplug-ipam.ts, asks the LAN about what this claims; the remote
 * IPAM API is translated in api/docker/ipam-routes.ts). It behaves as Docker's
 * default IPAM does for the same flags — `--subnet`, `--ip-range`,
 * `--gateway`, `--aux-address`, `--ip`/`--ip6`, several subnets, IPv6 — and
 * gives the seed commands the same addresses, with Docker's wording for its
 * errors. Every claim goes through the address book, which refuses a second
 * claim of one address: this host's SQLite store, or etcd for a fleet of hosts
 * sharing one LAN (the same decisions on either; the shared book adds only what
 * sharing needs: a pool joined, a gateway recorded once, a MAC claimed with its
 * address, automatic allocation starting at a place of the host's own).
 */
import { conflict, invalidArgument, LanplugError, notFound } from '../errors';
import type { Logger } from '../log';
import type { AddressKind, PoolRecord } from '../model/ipam';
import {
  addressFromValue,
  formatPrefix,
  networkOf,
  prefixContains,
  prefixBounds,
  prefixesOverlap,
  type IpAddress,
  type IpPrefix,
} from '../net/address';
import type { AddressBook, BookPool, SharedBook } from '../state/address-book';
import { firstFree, isUsable, spreadStart } from './pool';
import { isKeptClaim, keepClaim, keptAddressFor, releasePoolReservations, type ReservationStore } from './reservations';

export const LOCAL_ADDRESS_SPACE = 'LocalDefault';
export const GLOBAL_ADDRESS_SPACE = 'GlobalDefault';

export interface PoolRequest {
  addressSpace: string;
  /** `--subnet`; lanplug does not pick subnets for you. */
  pool: IpPrefix | null;
  /** `--ip-range`. */
  range: IpPrefix | null;
  v6: boolean;
}

export interface AddressRequest {
  poolId: string;
  /** The address asked for (`--ip`, `--gateway`, an `--aux-address`), or null for any. */
  preferred: IpAddress | null;
  /** Docker asks for the gateway with RequestAddressType=com.docker.network.gateway. */
  gateway: boolean;
  /** The endpoint's MAC, which Docker sends only when the driver asks for it (shared pools do). */
  mac: string | null;
  /** A container's address even without a MAC (a CNI attachment's second family, an ipvlan's): never the pool's aux entry. */
  endpoint?: boolean;
  /** The container's name, which Docker 29 sends (`com.docker.network.endpoint.name`); null before. */
  name?: string | null;
}

/**
 * Addresses automatic allocation must not hand out although the book has them free (this host's
 * own, those the LAN uses): asked once per allocation for the pool, then per candidate.
 */
export interface AddressFilter {
  takenIn(pool: PoolRecord): (address: IpAddress) => boolean;
}

const NOTHING_TAKEN: AddressFilter = { takenIn: () => () => false };

export class IpamAllocator {
  /** Per pool, the automatic allocation in progress (see allocate). */
  private readonly allocating = new Map<string, Promise<void>>();

  constructor(
    private readonly book: AddressBook,
    private readonly log: Logger,
    private readonly lan: AddressFilter = NOTHING_TAKEN,
    /** Reservations by identity (ipam/reservations.ts): their addresses stay claimed while no container holds them. */
    private readonly reservations: ReservationStore | null = null,
  ) {}

  /** Whether pools are shared with other hosts (then Docker must send each endpoint's MAC). */
  get shared(): boolean {
    return this.book.hostId !== null;
  }

  async requestPool(request: PoolRequest): Promise<PoolRecord> {
    if (request.pool === null) {
      throw invalidArgument(
        'the lanplug IPAM driver does not choose subnets: give --subnet (and --ip-range, --gateway as you like)',
      );
    }
    if ((request.pool.address.family === 6) !== request.v6) {
      throw invalidArgument(`subnet ${formatPrefix(request.pool)} is not an IPv${request.v6 ? 6 : 4} subnet`);
    }
    const pool = networkOf(request.pool);
    const range = request.range === null ? null : networkOf(request.range);
    if (range !== null && !(prefixContains(pool, range.address) && range.prefixLength >= pool.prefixLength)) {
      throw invalidArgument(`--ip-range ${formatPrefix(range)} is not inside --subnet ${formatPrefix(pool)}`);
    }
    const record: PoolRecord = {
      poolId: poolIdOf(request.addressSpace, pool, range),
      addressSpace: request.addressSpace,
      pool,
      range,
    };
    for (const other of await this.book.listPools()) {
      // A shared pool is the same on every host: the identical one is joined, any other overlap refused.
      if (other.addressSpace !== request.addressSpace || !prefixesOverlap(other.pool, pool)) continue;
      if (other.definedBy === null) throw conflict('Pool overlaps with other one on this address space');
      // The same shared pool: joined, unless this host uses it already (the book says so).
      if (other.poolId === record.poolId) continue;
      if (other.users.includes(this.book.hostId ?? ''))
        throw conflict('Pool overlaps with other one on this address space');
      throw conflict(sharedMismatch(other, record));
    }
    const how = await this.book.addPool(record);
    this.log.info(how === 'created' ? 'pool created' : 'shared pool joined', { pool: record.poolId });
    return record;
  }

  /** Idempotent: a pool that is gone is released. */
  async releasePool(poolId: string): Promise<void> {
    if (this.reservations !== null) await releasePoolReservations(this.reservations, this.book, poolId, this.log);
    await this.book.releasePool(poolId);
    this.log.info('pool released', { pool: poolId });
  }

  /** The address with the pool's prefix length, as Docker wants it ("172.16.86.2/24"). */
  async requestAddress(request: AddressRequest): Promise<IpPrefix> {
    const pool = await this.requirePool(request.poolId);
    const kind = kindOf(request, this.shared);
    // On a shared pool the gateway is whatever the first host recorded (a second host's default must not differ).
    const preferred = kind === 'gateway' && request.preferred === null ? pool.gateway : request.preferred;
    const reserved = await this.reservedFor(request);
    if (reserved !== null) {
      this.log.info('address given back to its identity', {
        pool: pool.poolId,
        address: reserved.text,
        identity: request.name ?? '',
      });
      return { address: reserved, prefixLength: pool.pool.prefixLength };
    }
    const address =
      preferred === null
        ? await this.allocate(pool, kind, request.mac)
        : await this.claim(pool, preferred, kind, request.mac);
    return { address, prefixLength: pool.pool.prefixLength };
  }

  /** The next `count` addresses automatic allocation would hand out, without claiming them. */
  async nextFree(pool: PoolRecord, count: number): Promise<IpAddress[]> {
    const used = new Set((await this.book.claimed(pool.poolId)).map((a) => a.address.value));
    const out: IpAddress[] = [];
    const start = this.startOf(pool, pool.range ?? pool.pool);
    const skip = this.skipIn(pool);
    while (out.length < count) {
      const candidate = firstFree(pool.pool, pool.range ?? pool.pool, used, skip, start);
      if (candidate === null) break;
      out.push(candidate);
      used.add(candidate.value);
    }
    return out;
  }

  /**
   * Up to `count` addresses drawn at random from the range (or pool) that nobody claimed (so not the
   * gateway either) and `exclude` does not name: where to look for a second opinion on the LAN, away
   * from the addresses just asked about.
   */
  async randomUnclaimed(poolId: string, count: number, exclude: (address: IpAddress) => boolean): Promise<IpAddress[]> {
    const pool = await this.requirePool(poolId);
    const range = pool.range ?? pool.pool;
    const used = new Set((await this.book.claimed(pool.poolId)).map((a) => a.address.value));
    if (pool.gateway !== null) used.add(pool.gateway.value);
    const { first, last } = prefixBounds(range);
    const size = last - first + 1n;
    const out: IpAddress[] = [];
    // A few draws per address wanted: a nearly full range gives fewer, never a long search.
    for (let draw = 0; draw < count * 16 && out.length < count; draw++) {
      const value = first + (BigInt(Math.floor(Math.random() * 2 ** 48)) % size);
      if (!isUsable(pool.pool, value) || used.has(value)) continue;
      const address = addressFromValue(pool.pool.address.family, value);
      if (exclude(address)) continue;
      out.push(address);
      used.add(value);
    }
    return out;
  }

  pool(poolId: string): Promise<PoolRecord> {
    return this.requirePool(poolId);
  }

  pools(): Promise<PoolRecord[]> {
    return this.book.listPools();
  }

  /**
   * Idempotent: releasing an address that is free is success. An identity's reserved address stays
   * claimed. `claim` (AddressBook.claimIdentity's): only that claim of the address is freed.
   */
  async releaseAddress(poolId: string, address: IpAddress, claim?: string): Promise<void> {
    if (this.reservations !== null && keepClaim(this.reservations, poolId, address)) return;
    await this.book.release(poolId, address, claim);
  }

  /** Docker 29 names the container: an automatic request for a name with a reserved address gets it back. */
  private async reservedFor(request: AddressRequest): Promise<IpAddress | null> {
    const name = request.name ?? null;
    if (this.reservations === null || name === null || request.gateway || request.preferred !== null) return null;
    const kept = keptAddressFor(this.reservations, request.poolId, name);
    return kept !== null && (await this.stillClaimedHere(request.poolId, kept)) ? kept : null;
  }

  /**
   * A kept claim is this host's on a single host (nothing else frees it); on a shared pool another host
   * may have reclaimed it while this host was away (ipam/reclaim.ts) and handed it out since: then it is
   * no longer the reservation's to give.
   */
  private async stillClaimedHere(poolId: string, address: IpAddress): Promise<boolean> {
    if (!isSharedBook(this.book)) return true;
    return (await this.book.holderOf(poolId, address)) === this.book.hostId;
  }

  private async requirePool(poolId: string): Promise<BookPool> {
    const pool = await this.book.getPool(poolId);
    if (pool === null) throw notFound(`pool ${poolId} is not one the lanplug IPAM driver knows`);
    return pool;
  }

  private async claim(pool: PoolRecord, address: IpAddress, kind: AddressKind, mac: string | null): Promise<IpAddress> {
    if (address.family !== pool.pool.address.family || !isUsable(pool.pool, address.value)) {
      throw invalidArgument(`requested address ${address.text} is out of range of pool ${formatPrefix(pool.pool)}`);
    }
    if (!(await this.book.claim(pool.poolId, address, kind, mac))) {
      // Kept for an identity: let through, CreateEndpoint checks the container's identity against it.
      if (
        kind !== 'gateway' &&
        this.reservations !== null &&
        isKeptClaim(this.reservations, pool.poolId, address) &&
        (await this.stillClaimedHere(pool.poolId, address))
      )
        return address;
      throw new LanplugError('Conflict', 'Address already in use');
    }
    return address;
  }

  /**
   * One automatic allocation at a time per pool on this host: concurrent requests would all read the
   * same claims and race for the same first free address, each loser paying another round trip to
   * the book (on etcd, 100 requests at once took 17.7 s; serialized, each reads what the last one
   * claimed). Other hosts start elsewhere in the range.
   */
  private allocate(pool: PoolRecord, kind: AddressKind, mac: string | null): Promise<IpAddress> {
    const previous = this.allocating.get(pool.poolId) ?? Promise.resolve();
    const next = previous.then(() => this.allocateNow(pool, kind, mac));
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.allocating.set(pool.poolId, settled);
    void settled.then(() => {
      if (this.allocating.get(pool.poolId) === settled) this.allocating.delete(pool.poolId);
    });
    return next;
  }

  /** The first free address of the range (or pool) that is not this host's and the LAN does not use either. */
  private async allocateNow(pool: PoolRecord, kind: AddressKind, mac: string | null): Promise<IpAddress> {
    // The gateway of a pool without --gateway is its first address, wherever the range is (as Docker does),
    // and is meant to be a device of the LAN (the router, maybe this host): nothing is skipped for it.
    const gateway = kind === 'gateway';
    const range = gateway ? pool.pool : (pool.range ?? pool.pool);
    const used = new Set((await this.book.claimed(pool.poolId)).map((a) => a.address.value));
    const start = gateway ? null : this.startOf(pool, range);
    const skip = gateway ? () => false : this.skipIn(pool);
    for (;;) {
      const candidate = firstFree(pool.pool, range, used, skip, start);
      if (candidate === null)
        throw new LanplugError('Conflict', `No available addresses on this pool${this.keptNote(pool.poolId)}`);
      if (await this.book.claim(pool.poolId, candidate, kind, mac)) return candidate;
      used.add(candidate.value); // claimed meanwhile (another host, on a shared book): the next one
    }
  }

  /**
   * A pool full of identities' reservations looks, months on, like a pool full of nothing (`docker ps`
   * shows few containers): the refusal says how many addresses they keep and where to see them.
   */
  private keptNote(poolId: string): string {
    if (this.reservations === null) return '';
    const kept = this.reservations
      .listReservations()
      .filter((r) => r.endpointId === null && r.kept.some((k) => k.poolId === poolId)).length;
    return kept === 0
      ? ''
      : ` (${kept} of its addresses kept for lanplug.identity reservations no container holds: lanplug ls --identities lists them, lanplug forget NETWORK NAME frees one, --identity-expire ends them)`;
  }

  /**
   * Where automatic allocation starts: the range's first address on a single host (Docker's
   * order, which the seed documents show), a place of the host's own on a shared pool, so that
   * hosts allocating at the same moment do not all race for the first free address.
   */
  private startOf(pool: PoolRecord, range: IpPrefix): bigint | null {
    return this.book.hostId === null ? null : spreadStart(range, this.book.hostId);
  }

  private skipIn(pool: PoolRecord): (value: bigint) => boolean {
    if (this.lan === NOTHING_TAKEN) return () => false;
    const taken = this.lan.takenIn(pool);
    return (value) => taken(addressFromValue(pool.pool.address.family, value));
  }
}

/** A pool's id, as Docker gets it from RequestPool: its address space, `--subnet` and `--ip-range`. */
export function poolIdOf(addressSpace: string, pool: IpPrefix, range: IpPrefix | null): string {
  return `${addressSpace}/${formatPrefix(pool)}${range === null ? '' : `/${formatPrefix(range)}`}`;
}

function kindOf(request: AddressRequest, shared: boolean): AddressKind {
  if (request.gateway) return 'gateway';
  if (request.preferred === null) return 'allocated';
  if (request.endpoint === true) return 'requested';
  // Docker sends the MAC with every endpoint's request once the driver asks for it; an
  // --aux-address request carries none. A single host never needed to tell them apart.
  return shared && request.mac === null ? 'aux' : 'requested';
}

function sharedMismatch(other: BookPool, wanted: PoolRecord): string {
  const describe = (p: PoolRecord): string =>
    `--subnet ${formatPrefix(p.pool)}${p.range === null ? '' : ` --ip-range ${formatPrefix(p.range)}`}`;
  return `shared pool ${formatPrefix(other.pool)} was defined by host ${other.definedBy ?? '?'} with ${describe(other)}, not ${describe(wanted)}: give the same --subnet and --ip-range on every host`;
}

function isSharedBook(book: AddressBook): book is SharedBook {
  return book.hostId !== null && 'holderOf' in book;
}
