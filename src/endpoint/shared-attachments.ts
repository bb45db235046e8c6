/**
 * CNI and Podman attachments on the shared pools (`"shared": true` in a
 * conflist's ipam, `-o lanplug.shared=true` on a Podman network; the daemon
 * with `--store etcd://…`): each range set is the pool the Docker IPAM
 * driver makes of the same `--subnet` and `--ip-range` on any host of the
 * fleet, and an attachment's addresses are claimed in it by the same
 * allocator as a Docker endpoint's (one etcd transaction each, its MAC
 * with it), so that no host hands one out twice, to a pod or a container.
 *
 * The attachment's row is the host's store's, and synchronous
 * (driver/sandbox-attachments.ts); its etcd claims are made here before the row
 * (`claim`) and given back after the row goes (SharedClaims: at DEL, GC, a
 * namespace gone at the reconcile), in the background, each give-back
 * awaited by the request that caused it (`settled`). Which pools a CNI
 * network joined is recorded in the host's store too, as a pool of the
 * address space `cni-shared:<name>` holding no claims, so that after a
 * restart the reconcile still knows whose claims to give back, and the
 * network's removal which pools to leave.
 *
 * One host, several users of a pool: Docker's networks (the lanplug IPAM
 * driver's RequestPool, recorded as a pool of the address space
 * `docker-shared`) and CNI or Podman networks. The host joins the pool in
 * etcd with its first user and leaves it with its last, whichever that is:
 * the last host to leave takes the pool's claims with it, a live pod's too.
 * A give-back etcd did not take (no quorum at DEL, or its answer lost) is
 * owed, recorded as a pool of the address space `shared-owed:<address>#<claim
 * identity>` (so a restart keeps it), and made again every RETRY_MS until etcd
 * takes it. The claim's identity is read before the give-back is sent, and the
 * give-back made again frees only the claim that has it: etcd may have taken
 * the first one after all, and the address may since be another container's.
 */
import { invalidArgument, LanplugError } from '../errors';
import type { AttachNetwork, AttachRequest } from '../driver/attach-request';
import type { SharedClaims } from '../driver/attachment-hooks';
import { LOCAL_ADDRESS_SPACE, poolIdOf, type IpamAllocator, type PoolRequest } from '../ipam/allocator';
import { sharedPoolOf, type RangeAllocation } from '../ipam/ranges';
import type { Logger } from '../log';
import type { AddressRange, PoolRecord } from '../model/ipam';
import { addressesOf } from '../model/network';
import { formatPrefix, networkOf, prefixContains, type IpAddress, type IpPrefix } from '../net/address';
import type { AddressBook } from '../state/address-book';
import type { IpamStore } from '../state/ipam-store';
import type { Store } from '../state/store';

const CNI_SPACE = 'cni-shared:';
const markSpace = (networkName: string): string => `${CNI_SPACE}${networkName}`;
const DOCKER_SPACE = 'docker-shared';
const OWED_SPACE = 'shared-owed:';
/** How often owed give-backs are asked of etcd again. */
export const GIVE_BACK_RETRY_MS = 5_000;

export class SharedAttachmentPools implements SharedClaims {
  private readonly pending = new Set<Promise<void>>();
  /** Per shared pool, its joins and leaves here, one after the other. */
  private readonly poolWork = new Map<string, Promise<void>>();
  private retryTimer: NodeJS.Timeout | null = null;
  private retrying = false;

  constructor(
    private readonly book: AddressBook,
    private readonly allocator: IpamAllocator,
    private readonly store: Store & IpamStore,
    private readonly log: Logger,
  ) {
    if (this.owedGiveBacks().length > 0) this.scheduleRetry();
  }

  /** A shared network on a daemon whose pools are its own (no `--store etcd`) is refused in one line. */
  check(network: AttachNetwork): void {
    if (network.shared && this.book.hostId === null)
      throw invalidArgument(
        `network ${network.networkName} asks for a shared pool, and this daemon keeps its pools in its own store: start it with --store etcd://…`,
      );
  }

  /**
   * One address of each range set's shared pool, the pool joined first (with its gateway and the
   * host-access addresses, as a Docker network records them); all or none. `mac` is claimed with the
   * first address, as a Docker endpoint's. Pools an earlier configuration of the network joined, which
   * no attachment here uses, are left first.
   */
  async claim(request: AttachRequest, mac: string | null): Promise<RangeAllocation[]> {
    this.check(request);
    await this.leaveStalePools(request);
    const done: RangeAllocation[] = [];
    try {
      for (const set of request.rangeSets) {
        const [range] = set;
        if (range === undefined) continue;
        const pool = await this.join(request, range);
        const preferred = request.requestedIps.find((a) => prefixContains(range.subnet, a)) ?? null;
        const address = await this.allocator.requestAddress({
          poolId: pool.poolId,
          preferred,
          gateway: false,
          mac: done.length === 0 ? mac : null,
          endpoint: true,
        });
        // Claimed again (etcd had taken an owed give-back after all): the claim is this pod's now.
        this.forgetOwed(pool.poolId, address.address);
        done.push({ poolId: pool.poolId, address, gateway: range.gateway });
      }
      return done;
    } catch (err) {
      await this.release(done);
      throw err;
    }
  }

  /** Claims this host made for an attachment that was not made after all. */
  release(claims: readonly RangeAllocation[]): Promise<void> {
    return this.giveBack(claims.map((c) => ({ poolId: c.poolId, address: c.address.address })));
  }

  freed(networkName: string, addresses: readonly IpAddress[]): void {
    const pools = this.marksOf(markSpace(networkName));
    const claims = addresses.flatMap((address) =>
      pools.filter((p) => prefixContains(p.pool, address)).map((p) => ({ poolId: sharedIdOf(p), address })),
    );
    if (claims.length === 0) return;
    this.track(this.giveBack(claims));
  }

  networkDropped(networkName: string): void {
    const marks = this.marksOf(markSpace(networkName));
    for (const mark of marks) this.store.deletePool(mark.poolId);
    for (const mark of marks) this.track(this.leaveIfUnused(sharedIdOf(mark), mark.pool, networkName));
  }

  /**
   * Docker's RequestPool on a shared pool: joined in etcd, or, when a CNI network here uses it
   * already (this host is listed), taken as it is; Docker's use is recorded either way.
   */
  requestPool(request: PoolRequest): Promise<PoolRecord> {
    if (this.book.hostId === null || request.pool === null) return this.allocator.requestPool(request);
    const range = request.range === null ? null : networkOf(request.range);
    const poolId = poolIdOf(request.addressSpace, networkOf(request.pool), range);
    return this.onePoolAtATime(poolId, async () => {
      let record: PoolRecord;
      try {
        record = await this.allocator.requestPool(request);
      } catch (err) {
        const cniHere = this.usersHere(poolId).some((m) => m.addressSpace.startsWith(CNI_SPACE));
        if (!(err instanceof LanplugError && err.code === 'Conflict' && cniHere && (await this.listedIn(poolId))))
          throw err;
        record = { poolId, addressSpace: request.addressSpace, pool: networkOf(request.pool as IpPrefix), range };
        this.log.info('Docker network uses a shared pool a CNI network here uses', { pool: poolId });
      }
      this.record({ ...record, poolId: `${DOCKER_SPACE}/${poolId}`, addressSpace: DOCKER_SPACE });
      return record;
    });
  }

  /** Docker's ReleasePool: this host leaves the pool unless a CNI or Podman network here still uses it. */
  releasePool(poolId: string): Promise<void> {
    if (this.book.hostId === null) return this.allocator.releasePool(poolId);
    return this.onePoolAtATime(poolId, async () => {
      this.store.deletePool(`${DOCKER_SPACE}/${poolId}`);
      const users = this.usersHere(poolId);
      if (users.length > 0) {
        this.log.info('Docker network gone; this host stays in the shared pool: a CNI network here uses it', {
          pool: poolId,
          users: users.map((m) => m.addressSpace),
        });
        return;
      }
      await this.allocator.releasePool(poolId);
    });
  }

  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /** The owed give-backs' retries stop (the daemon stops; a restart takes them up again). */
  stop(): void {
    if (this.retryTimer !== null) clearInterval(this.retryTimer);
    this.retryTimer = null;
  }

  /** Owed give-backs, made now: the ones etcd takes go; at its first failure the rest wait for the next round. */
  async retryGiveBacks(): Promise<void> {
    if (this.retrying) return; // the last round is still waiting for etcd
    this.retrying = true;
    try {
      for (const owed of this.owedGiveBacks()) {
        const address = owed.pool.address;
        // Claimed again meanwhile (see claim): the claim is a pod's now.
        if (this.store.getPool(owed.poolId) === null) continue;
        // An attachment here holds the address again: its claim (etcd had taken the give-back after all).
        const held = this.store.listAllEndpoints().some((e) => addressesOf(e).some((a) => a.text === address.text));
        const failed = held ? null : await this.giveBackOne(sharedIdOf(owed), address, claimOf(owed));
        if (failed !== null) {
          this.log.debug('shared pool: an owed give-back still not taken', {
            pool: sharedIdOf(owed),
            address: address.text,
            error: failed,
          });
          return;
        }
        this.forgetOwed(sharedIdOf(owed), address);
        this.log.info('shared pool: made a give-back etcd had not taken', {
          pool: sharedIdOf(owed),
          address: address.text,
        });
      }
      if (this.owedGiveBacks().length === 0) this.stop();
    } finally {
      this.retrying = false;
    }
  }

  private async giveBack(claims: readonly { poolId: string; address: IpAddress }[]): Promise<void> {
    for (const claim of claims) {
      const failed = await this.giveBackOne(claim.poolId, claim.address, null);
      if (failed !== null)
        this.log.warn('shared pool: etcd did not take an address given back; owed, and asked again', {
          pool: claim.poolId,
          address: claim.address.text,
          error: failed,
        });
    }
  }

  /**
   * Frees this host's claim of `address`: the one whose identity is `known`, or, not known yet (no
   * give-back of it was sent), the one etcd holds now. What etcd did not take is owed, with the
   * identity once read. Null when it went (or was gone), else why etcd did not take it.
   */
  private async giveBackOne(poolId: string, address: IpAddress, known: string | null): Promise<string | null> {
    let claim = known;
    try {
      claim ??= await this.book.claimIdentity(poolId, address);
      if (claim !== null) await this.allocator.releaseAddress(poolId, address, claim);
      return null;
    } catch (err) {
      this.oweGiveBack(poolId, address, claim);
      return err instanceof Error ? err.message : String(err);
    }
  }

  private oweGiveBack(poolId: string, address: IpAddress, claim: string | null): void {
    const addressSpace = `${OWED_SPACE}${address.text}${claim === null ? '' : `#${claim}`}`;
    const owed = this.owedGiveBacks().find((p) => p.addressSpace === addressSpace && sharedIdOf(p) === poolId);
    if (owed === undefined) {
      // Owed already without the claim's identity (etcd did not answer its reading): known now.
      this.forgetOwed(poolId, address);
      const pool: IpPrefix = { address, prefixLength: address.family === 4 ? 32 : 128 };
      this.record({ poolId: `${addressSpace}/${poolId}`, addressSpace, pool, range: null });
    }
    this.scheduleRetry();
  }

  /** The owed give-backs of `address` in the shared pool go (made, or the address claimed here again). */
  private forgetOwed(poolId: string, address: IpAddress): void {
    for (const owed of this.owedGiveBacks())
      if (sharedIdOf(owed) === poolId && owed.pool.address.value === address.value) this.store.deletePool(owed.poolId);
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null) return;
    this.retryTimer = setInterval(() => this.track(this.retryGiveBacks()), GIVE_BACK_RETRY_MS);
    this.retryTimer.unref();
  }

  private owedGiveBacks(): PoolRecord[] {
    return this.store.listPools().filter((p) => p.addressSpace.startsWith(OWED_SPACE));
  }

  private track(work: Promise<void>): void {
    const settled = work.finally(() => this.pending.delete(settled));
    this.pending.add(settled);
  }

  /** Marks of one address space. */
  private marksOf(space: string): PoolRecord[] {
    return this.store.listPools().filter((p) => p.addressSpace === space);
  }

  /** The networks here (Docker's, CNI's, Podman's) recorded as users of the shared pool. */
  private usersHere(poolId: string): PoolRecord[] {
    return this.store
      .listPools()
      .filter(
        (p) => (p.addressSpace === DOCKER_SPACE || p.addressSpace.startsWith(CNI_SPACE)) && sharedIdOf(p) === poolId,
      );
  }

  /** Whether etcd lists this host among the pool's users. */
  private async listedIn(poolId: string): Promise<boolean> {
    const known = await this.book.getPool(poolId);
    return known !== null && this.book.hostId !== null && known.users.includes(this.book.hostId);
  }

  /**
   * Whether something here uses the pool: a network recorded as its user, a Docker network on its
   * subnet (recorded before Docker's use was), or an attachment holding one of its addresses.
   */
  private usedHere(poolId: string, pool: IpPrefix): boolean {
    const dockerNetwork = this.store
      .listNetworks()
      .some(
        (n) =>
          n.cniName === undefined &&
          [...n.spec.ipv4, ...n.spec.ipv6].some((s) => formatPrefix(s.pool) === formatPrefix(pool)),
      );
    const attached = this.store.listAllEndpoints().some((e) => addressesOf(e).some((a) => prefixContains(pool, a)));
    return this.usersHere(poolId).length > 0 || dockerNetwork || attached;
  }

  /** This host leaves the pool, unless something here still uses it. A failed leave is owed by the pool membership itself. */
  private leaveIfUnused(poolId: string, pool: IpPrefix, networkName: string): Promise<void> {
    return this.onePoolAtATime(poolId, async () => {
      if (this.usedHere(poolId, pool)) return;
      await this.allocator.releasePool(poolId).catch((err: unknown) =>
        this.log.warn('shared pool: could not leave the pool of a removed CNI network', {
          network: networkName,
          pool: poolId,
          error: String(err),
        }),
      );
    });
  }

  /** A join refused after this host was listed: it leaves the pool (etcd's failure: owed by the pool membership). */
  private async leaveRefusedJoin(poolId: string, networkName: string): Promise<void> {
    await this.allocator.releasePool(poolId).catch((err: unknown) =>
      this.log.warn('shared pool: could not leave a pool whose join was refused; the periodic check leaves it', {
        network: networkName,
        pool: poolId,
        error: String(err),
      }),
    );
  }

  /** Pools of the network's earlier configuration that no attachment here uses: their marks go, the host leaves them. */
  private async leaveStalePools(request: AttachRequest): Promise<void> {
    const wanted = new Set(
      request.rangeSets.flatMap(([range]) => {
        if (range === undefined) return [];
        const shared = sharedPoolOf(range);
        return [poolIdOf(LOCAL_ADDRESS_SPACE, shared.pool, shared.range)];
      }),
    );
    const endpoints = this.store.listAllEndpoints();
    for (const mark of this.marksOf(markSpace(request.networkName))) {
      if (wanted.has(sharedIdOf(mark))) continue;
      if (endpoints.some((e) => addressesOf(e).some((a) => prefixContains(mark.pool, a)))) continue;
      this.store.deletePool(mark.poolId);
      this.log.info('CNI network configuration changed: the pool of the earlier one is left', {
        network: request.networkName,
        pool: sharedIdOf(mark),
      });
      await this.leaveIfUnused(sharedIdOf(mark), mark.pool, request.networkName);
    }
  }

  private record(mark: PoolRecord): void {
    try {
      this.store.insertPool(mark);
    } catch (err) {
      // Recorded already (another request of the same network, or a give-back owed twice).
      if (!(err instanceof LanplugError && err.code === 'Conflict')) throw err;
    }
  }

  /** Joins and leaves of one shared pool here happen one after the other. */
  private onePoolAtATime<T>(poolId: string, work: () => Promise<T>): Promise<T> {
    const next = (this.poolWork.get(poolId) ?? Promise.resolve()).then(work);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.poolWork.set(poolId, settled);
    void settled.then(() => {
      if (this.poolWork.get(poolId) === settled) this.poolWork.delete(poolId);
    });
    return next;
  }

  /**
   * The range's pool, joined by this host (or created) at the network's first claim, and recorded
   * here; a pool this host uses already (its daemon restarted, or its Docker network on the same
   * pool) is taken as it is. Its gateway and host-access addresses are recorded in it, as a Docker
   * network's are: a different gateway than the fleet's is refused in one line. Refused, a join
   * leaves the pool again unless something here uses it (the pool goes whole when this host was its
   * only user): etcd would otherwise list this host as its user with no record of it here, and
   * nothing would ever leave it.
   */
  private async join(request: AttachRequest, range: AddressRange): Promise<PoolRecord> {
    const { pool, range: ipRange } = sharedPoolOf(range);
    const poolId = poolIdOf(LOCAL_ADDRESS_SPACE, pool, ipRange);
    const mark: PoolRecord = {
      poolId: `${markSpace(request.networkName)}/${poolId}`,
      addressSpace: markSpace(request.networkName),
      pool,
      range: ipRange,
    };
    if (this.store.getPool(mark.poolId) !== null) return { ...mark, poolId };
    // One at a time with Docker's RequestPool and ReleasePool of it: its removal meanwhile would not see this network.
    await this.onePoolAtATime(poolId, async () => {
      try {
        await this.allocator.requestPool({
          addressSpace: LOCAL_ADDRESS_SPACE,
          pool,
          range: ipRange,
          v6: pool.address.family === 6,
        });
      } catch (err) {
        if (!(err instanceof LanplugError && err.code === 'Conflict' && (await this.listedIn(poolId)))) throw err;
      }
      try {
        await this.allocator.requestAddress({ poolId, preferred: range.gateway, gateway: true, mac: null });
        for (const aux of request.auxAddresses.values())
          if (prefixContains(pool, aux))
            await this.allocator.requestAddress({ poolId, preferred: aux, gateway: false, mac: null });
      } catch (err) {
        if (!this.usedHere(poolId, pool)) await this.leaveRefusedJoin(poolId, request.networkName);
        throw err;
      }
      // Another ADD of the network may have recorded it meanwhile.
      this.record(mark);
    });
    this.log.info('CNI network uses a shared pool', { network: request.networkName, pool: poolId });
    return { ...mark, poolId };
  }
}

/** The identity of the claim an owed give-back is for; null when etcd did not answer its reading (nothing sent). */
function claimOf(owed: PoolRecord): string | null {
  const hash = owed.addressSpace.indexOf('#');
  return hash < 0 ? null : owed.addressSpace.slice(hash + 1);
}

/** The shared pool a mark stands for. */
function sharedIdOf(mark: PoolRecord): string {
  return mark.poolId.slice(mark.addressSpace.length + 1);
}
