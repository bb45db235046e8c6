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
 * (driver/attachments.ts); its etcd claims are made here before the row
 * (`claim`) and given back after the row goes (SharedClaims: at DEL, GC, a
 * namespace gone at the reconcile), in the background, each give-back
 * awaited by the request that caused it (`settled`). Which pools a CNI
 * network joined is recorded in the host's store too, as a pool of the
 * address space `cni-shared:<name>` holding no claims, so that after a
 * restart the reconcile still knows whose claims to give back, and the
 * network's removal which pools to leave.
 */
import { invalidArgument, LanplugError } from '../errors';
import type { AttachNetwork, AttachRequest, SharedClaims } from '../driver/attachments';
import { LOCAL_ADDRESS_SPACE, poolIdOf, type IpamAllocator } from '../ipam/allocator';
import { sharedPoolOf, type RangeAllocation } from '../ipam/ranges';
import type { Logger } from '../log';
import type { AddressRange, PoolRecord } from '../model/ipam';
import { formatPrefix, prefixContains, type IpAddress } from '../net/address';
import type { AddressBook } from '../state/address-book';
import type { IpamStore } from '../state/ipam-store';
import type { Store } from '../state/store';

const markSpace = (networkName: string): string => `cni-shared:${networkName}`;

export class SharedAttachmentPools implements SharedClaims {
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly book: AddressBook,
    private readonly allocator: IpamAllocator,
    private readonly store: Store & IpamStore,
    private readonly log: Logger,
  ) {}

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
   * first address, as a Docker endpoint's.
   */
  async claim(request: AttachRequest, mac: string | null): Promise<RangeAllocation[]> {
    this.check(request);
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
    const pools = this.store.listPools().filter((p) => p.addressSpace === markSpace(networkName));
    const claims = addresses.flatMap((address) =>
      pools.filter((p) => prefixContains(p.pool, address)).map((p) => ({ poolId: sharedIdOf(p), address })),
    );
    if (claims.length === 0) return;
    this.track(this.giveBack(claims));
  }

  networkDropped(networkName: string): void {
    const marks = this.store.listPools().filter((p) => p.addressSpace === markSpace(networkName));
    for (const mark of marks) this.store.deletePool(mark.poolId);
    // A Docker network here on the same subnet uses the pool still: this host stays in it.
    const inUse = (mark: PoolRecord): boolean =>
      this.store
        .listNetworks()
        .some(({ spec }) => [...spec.ipv4, ...spec.ipv6].some((s) => formatPrefix(s.pool) === formatPrefix(mark.pool)));
    for (const mark of marks)
      if (!inUse(mark))
        this.track(
          this.allocator.releasePool(sharedIdOf(mark)).catch((err: unknown) =>
            this.log.warn('shared pool: could not leave the pool of a removed CNI network', {
              network: networkName,
              pool: sharedIdOf(mark),
              error: String(err),
            }),
          ),
        );
  }

  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private async giveBack(claims: readonly { poolId: string; address: IpAddress }[]): Promise<void> {
    for (const claim of claims)
      await this.allocator.releaseAddress(claim.poolId, claim.address).catch((err: unknown) =>
        this.log.warn('shared pool: could not give back an address; the periodic check frees it', {
          pool: claim.poolId,
          address: claim.address.text,
          error: String(err),
        }),
      );
  }

  private track(work: Promise<void>): void {
    const settled = work.finally(() => this.pending.delete(settled));
    this.pending.add(settled);
  }

  /**
   * The range's pool, joined by this host (or created) at the network's first claim, and recorded
   * here; a pool this host uses already (its daemon restarted, or its Docker network on the same
   * pool) is taken as it is. Its gateway and host-access addresses are recorded in it, as a Docker
   * network's are: a different gateway than the fleet's is refused in one line.
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
    try {
      await this.allocator.requestPool({
        addressSpace: LOCAL_ADDRESS_SPACE,
        pool,
        range: ipRange,
        v6: pool.address.family === 6,
      });
    } catch (err) {
      const known = await this.book.getPool(poolId);
      const usedHere = known !== null && this.book.hostId !== null && known.users.includes(this.book.hostId);
      if (!(err instanceof LanplugError && err.code === 'Conflict' && usedHere)) throw err;
    }
    await this.allocator.requestAddress({ poolId, preferred: range.gateway, gateway: true, mac: null });
    for (const aux of request.auxAddresses.values())
      if (prefixContains(pool, aux))
        await this.allocator.requestAddress({ poolId, preferred: aux, gateway: false, mac: null });
    try {
      this.store.insertPool(mark);
    } catch (err) {
      // Another ADD of the network joined it meanwhile.
      if (!(err instanceof LanplugError && err.code === 'Conflict')) throw err;
    }
    this.log.info('CNI network uses a shared pool', { network: request.networkName, pool: poolId });
    return { ...mark, poolId };
  }
}

/** The shared pool a mark stands for. */
function sharedIdOf(mark: PoolRecord): string {
  return mark.poolId.slice(mark.addressSpace.length + 1);
}
