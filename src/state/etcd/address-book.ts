/**
 * The shared address book: pools and claims in etcd, so that every host of
 * a fleet on one LAN hands out addresses and MACs from one space (keys.ts
 * lists the keys). The pools this host uses are pool-membership.ts's.
 *
 * Every claim is one transaction that compares create revisions (the key must
 * not exist) and this host's registration (the fence), so two hosts can never
 * both succeed. A write whose answer was lost may have been applied: each value
 * carries a token, and a claim that finds its own token is a success.
 */
import { randomBytes } from 'node:crypto';
import { conflict, LanplugError } from '../../errors';
import type { Logger } from '../../log';
import { isEndpointKind, type AddressKind, type PoolRecord } from '../../model/ipam';
import { parseAddress, type IpAddress } from '../../net/address';
import type { BookPool, OwnClaim, ReclaimedClaim, ReclaimLock, SharedBook } from '../address-book';
import type { LostAddress, SharedPoolState } from '../shared-state';
import type { Compare, EtcdClient, KeyValue, MemberStatus, Op } from './client';
import { FencedWriter } from './fenced';
import {
  bookPool,
  busy,
  CAS_ROUNDS,
  claimKey,
  claimPrefix,
  createRevisionIs0,
  deadlineIn,
  enc,
  hostKey,
  KEY_PREFIX,
  KINDS,
  macKey,
  modRevisionIs,
  OPERATION_BUDGET_MS,
  parseClaim,
  parsePool,
  poolKey,
  put,
  readPool,
  splitClaimKey,
  type ClaimValue,
  type MacValue,
  type ReclaimedValue,
} from './keys';
import { PoolMembership, type PoolReleaseReport } from './pool-membership';
import { HostPresence, thisMachine, type ThisMachine } from './presence';

export { hostKey, KEY_PREFIX } from './keys';
export type { PoolReleaseReport } from './pool-membership';

/** How long etcd keeps the record of an address reclaimed from an absent host (a week). */
const RECLAIMED_TTL_SECONDS = 7 * 24 * 3600;

export class EtcdAddressBook implements SharedBook {
  readonly presence: HostPresence;
  private readonly writer: FencedWriter;
  private readonly pools: PoolMembership;
  private reclaimedLease: { id: string; grantedAt: number } | null = null;

  /**
   * `local`: this host's state database (its instance id, the pool releases it still owes etcd);
   * `machine`: where this daemon runs (its boot id and pid, in its registration).
   */
  constructor(
    private readonly client: EtcdClient,
    readonly hostId: string,
    private readonly log: Logger,
    private readonly local: SharedPoolState,
    machine: ThisMachine = thisMachine(),
  ) {
    this.presence = new HostPresence(client, hostId, local.instanceId(), hostKey(hostId), log, machine);
    this.writer = new FencedWriter(client, this.presence);
    this.pools = new PoolMembership(client, hostId, this.writer, local, log);
  }

  /**
   * Registered first, as for a write: which pools are this host's ("Pool overlaps") is only true
   * of the daemon that holds this host id's registration.
   */
  async listPools(): Promise<BookPool[]> {
    await this.presence.fence(OPERATION_BUDGET_MS);
    return (await this.poolsAsStored()).flatMap((p) => {
      if (!this.pools.owesRelease(p.poolId)) return [p];
      // This host left it, and etcd has not heard yet: as far as this host's requests go, it has.
      const users = p.users.filter((u) => u !== this.hostId);
      return users.length === 0 ? [] : [{ ...p, users }];
    });
  }

  /** Every pool, whether or not this daemon is registered (for `lanplug status`). */
  async poolsAsStored(): Promise<BookPool[]> {
    const kvs = await this.client.range(`${KEY_PREFIX}pools/`, { prefix: true, deadlineMs: OPERATION_BUDGET_MS });
    return kvs.map((kv) => bookPool(parsePool(kv)));
  }

  async getPool(poolId: string): Promise<BookPool | null> {
    const kv = await readPool(this.client, poolId, deadlineIn());
    return kv === null ? null : bookPool(parsePool(kv));
  }

  addPool(record: PoolRecord): Promise<'created' | 'joined'> {
    return this.pools.add(record);
  }

  releasePool(poolId: string): Promise<void> {
    return this.pools.release(poolId);
  }

  /** The pool releases etcd did not take, made again: the periodic check and `lanplug gc`. */
  retryPoolReleases(): Promise<PoolReleaseReport> {
    return this.pools.retry();
  }

  /** The pool releases this host still owes etcd: for `lanplug doctor`. */
  owedPoolReleases(): PoolReleaseReport['pending'] {
    return this.pools.owed();
  }

  async claim(poolId: string, address: IpAddress, kind: AddressKind, mac: string | null): Promise<boolean> {
    const deadline = Date.now() + OPERATION_BUDGET_MS;
    const key = claimKey(poolId, address);
    const value: ClaimValue = {
      host: this.hostId,
      kind,
      mac,
      token: randomBytes(8).toString('hex'),
      at: new Date().toISOString(),
    };
    for (let round = 0; round < CAS_ROUNDS; round++) {
      const compares: Compare[] = [createRevisionIs0(key)];
      const ops: Op[] = [put(key, value)];
      if (kind === 'gateway') {
        // The gateway is the pool's: recorded once, and the same for every host.
        const kv = await readPool(this.client, poolId, deadline);
        if (kv === null) throw new LanplugError('NotFound', `pool ${poolId} is not one the lanplug IPAM driver knows`);
        const pool = parsePool(kv);
        if (pool.gateway !== null) {
          if (pool.gateway === address.text) return true;
          throw conflict(
            `shared pool ${pool.pool} has gateway ${pool.gateway}, given by host ${pool.definedBy}: give the same --gateway on every host`,
          );
        }
        compares.push(modRevisionIs(poolKey(poolId), kv.modRevision));
        ops.push(put(poolKey(poolId), { ...pool, gateway: address.text }));
      }
      const isEndpoint = isEndpointKind(kind);
      if (isEndpoint && mac !== null) {
        compares.push(createRevisionIs0(macKey(mac)));
        ops.push(put(macKey(mac), { host: this.hostId, poolId, address: address.text, token: value.token }));
      }
      const result = await this.writer.txn(
        compares,
        ops,
        [{ range: { key } }, ...(mac === null ? [] : [{ range: { key: macKey(mac) } }])],
        deadline,
      );
      if (result === 'done') return true;
      if (result === 'fence') continue;
      const [held] = result[0] ?? [];
      if (held !== undefined) {
        const holder = parseClaim(held);
        if (holder.token === value.token) return true; // our own write, applied before its answer was lost
        // Gateway and aux entries are the pool's: every host's network asks for the same ones.
        if (!isEndpoint && holder.kind === kind) return true;
        return false;
      }
      const [macHeld] = result[1] ?? [];
      if (isEndpoint && macHeld !== undefined) {
        const other = JSON.parse(macHeld.value) as MacValue;
        if (other.token === value.token) return true;
        throw conflict(`MAC address ${mac ?? ''} is already in use on the LAN (${other.address}, host ${other.host})`);
      }
      // The pool changed under a gateway claim (another host joined): read it again.
    }
    throw busy(poolId);
  }

  /**
   * With `identity`, only the claim that has it goes: a give-back made again after etcd took it (its
   * answer lost) finds a later claim of the address (another container's here) and leaves it.
   */
  async release(poolId: string, address: IpAddress, identity?: string): Promise<boolean> {
    const deadline = Date.now() + OPERATION_BUDGET_MS;
    const key = claimKey(poolId, address);
    const [kv] = await this.client.range(key, { deadlineMs: deadline - Date.now() });
    if (kv === undefined) return false;
    const holder = parseClaim(kv);
    if (holder.host !== this.hostId) {
      this.log.warn('shared pool: not releasing an address another host holds', {
        pool: poolId,
        address: address.text,
        host: holder.host,
      });
      return false;
    }
    if (identity !== undefined && holder.token !== identity) {
      this.log.info('shared pool: the claim given back is gone already; a later claim of the address stays', {
        pool: poolId,
        address: address.text,
      });
      return false;
    }
    // The gateway and aux entries stay as long as the pool (other hosts' networks use them).
    if (!isEndpointKind(holder.kind)) return false;
    return this.removeClaim(kv, holder, deadline);
  }

  async claimIdentity(poolId: string, address: IpAddress): Promise<string | null> {
    const [kv] = await this.client.range(claimKey(poolId, address), { deadlineMs: OPERATION_BUDGET_MS });
    if (kv === undefined) return null;
    const holder = parseClaim(kv);
    return holder.host === this.hostId ? holder.token : null;
  }

  async claimed(poolId: string): Promise<{ address: IpAddress; kind: AddressKind }[]> {
    const kvs = await this.client.range(claimPrefix(poolId), { prefix: true, deadlineMs: OPERATION_BUDGET_MS });
    return kvs.map((kv) => ({
      address: parseAddress(kv.key.slice(claimPrefix(poolId).length)),
      kind: parseClaim(kv).kind,
    }));
  }

  ownEndpointClaims(): Promise<OwnClaim[]> {
    return this.endpointClaimsOf(this.hostId);
  }

  async endpointClaimsOf(hostId: string): Promise<OwnClaim[]> {
    const kvs = await this.client.range(`${KEY_PREFIX}ip/`, { prefix: true, deadlineMs: OPERATION_BUDGET_MS });
    return kvs.flatMap((kv) => {
      const claim = parseClaim(kv);
      if (claim.host !== hostId || !isEndpointKind(claim.kind)) return [];
      const { poolId, address } = splitClaimKey(kv.key);
      return [
        {
          poolId,
          address: parseAddress(address),
          at: Date.parse(claim.at),
          identity: claim.token,
          // Another host's claim is reclaimed: its record tells that host, once back, what happened.
          release: () =>
            this.removeClaim(kv, claim, Date.now() + OPERATION_BUDGET_MS, hostId === this.hostId ? null : hostId),
        },
      ];
    });
  }

  async absentHolders(): Promise<Map<string, number>> {
    const deadline = Date.now() + OPERATION_BUDGET_MS;
    const read = (prefix: string): Promise<KeyValue[]> =>
      this.client.range(`${KEY_PREFIX}${prefix}`, { prefix: true, deadlineMs: deadline - Date.now() });
    // Claims first, registrations after: a host that registers in between is seen registered.
    const claims = await read('ip/');
    const [hosts, markers] = await Promise.all([read('hosts/'), read('absent/')]);
    const registered = new Set(hosts.map((kv) => kv.key.slice(`${KEY_PREFIX}hosts/`.length)));
    const holders = new Set(claims.map(parseClaim).flatMap((c) => (isEndpointKind(c.kind) ? [c.host] : [])));
    const absent = new Map<string, number>();
    for (const marker of markers) {
      const host = marker.key.slice(`${KEY_PREFIX}absent/`.length);
      if (registered.has(host) || !holders.has(host)) {
        // Back, or nothing left to reclaim: the count starts again next time.
        await this.writer.write(
          [modRevisionIs(marker.key, marker.modRevision)],
          [{ delete: { key: marker.key } }],
          deadline,
        );
        continue;
      }
      absent.set(host, Number((JSON.parse(marker.value) as { since?: number }).since ?? Date.now()));
    }
    for (const host of holders) {
      if (registered.has(host) || host === this.hostId || absent.has(host)) continue;
      const key = `${KEY_PREFIX}absent/${host}`;
      const since = Date.now();
      if (await this.writer.write([createRevisionIs0(key)], [put(key, { since, seenBy: this.hostId })], deadline))
        this.log.warn('shared pools: a host holding addresses is not registered', { host });
      absent.set(host, since);
    }
    return absent;
  }

  /** Each member's own answer (or why there was none): for `lanplug doctor`. */
  members(deadlineMs: number): Promise<({ endpoint: string; error: string } | MemberStatus)[]> {
    return Promise.all(
      this.client.endpoints.map((endpoint) =>
        this.client.memberStatus(endpoint, deadlineMs).catch((err: unknown) => ({
          endpoint,
          error: err instanceof Error ? err.message : String(err),
        })),
      ),
    );
  }

  /** The hosts registered now (their lease alive). */
  async registeredHosts(): Promise<string[]> {
    const kvs = await this.client.range(`${KEY_PREFIX}hosts/`, { prefix: true, deadlineMs: OPERATION_BUDGET_MS });
    return kvs.map((kv) => kv.key.slice(`${KEY_PREFIX}hosts/`.length));
  }

  /** Who holds what in every shared pool: for `lanplug status`. */
  async holdings(): Promise<
    { poolId: string; address: string; host: string; kind: AddressKind; mac: string | null }[]
  > {
    const kvs = await this.client.range(`${KEY_PREFIX}ip/`, { prefix: true, deadlineMs: OPERATION_BUDGET_MS });
    return kvs.map((kv) => {
      const claim = parseClaim(kv);
      return { ...splitClaimKey(kv.key), host: claim.host, kind: claim.kind, mac: claim.mac };
    });
  }

  /**
   * One host at a time reclaims a given absent host's addresses, or two probing one address at once
   * end each other's probes: `reclaiming/<host>`, created only where there is none, on this host's
   * registration lease (a host that dies while reclaiming frees it with its lease).
   */
  async lockReclaim(absentHost: string): Promise<ReclaimLock> {
    const deadline = Date.now() + OPERATION_BUDGET_MS;
    const key = `${KEY_PREFIX}reclaiming/${absentHost}`;
    const value = JSON.stringify({
      by: this.hostId,
      at: new Date().toISOString(),
      token: randomBytes(8).toString('hex'),
    });
    for (let round = 0; round < 2; round++) {
      await this.presence.fence(deadline - Date.now());
      const lease = this.presence.leaseId;
      if (lease === null) break;
      const result = await this.writer.txn(
        [createRevisionIs0(key)],
        [{ put: { key, value, lease } }],
        [{ range: { key } }],
        deadline,
      );
      if (result === 'fence') continue; // registered again meanwhile: on the new lease
      const [held] = result === 'done' ? [] : (result[0] ?? []);
      // Held by another host; or by this one, when an answer was lost and the write asked again.
      if (held !== undefined && held.value !== value) {
        const by = (JSON.parse(held.value) as { by?: unknown }).by;
        return { held: false, by: typeof by === 'string' ? by : '?' };
      }
      const mine: Compare = { key, target: 'VALUE', result: 'EQUAL', value };
      const release = async (): Promise<void> => {
        await this.client.txn([mine], [{ delete: { key } }], [], OPERATION_BUDGET_MS);
      };
      return { held: true, release };
    }
    throw new LanplugError('Unavailable', `etcd: host ${this.hostId} is not registered`);
  }

  /** This host's endpoint addresses other hosts reclaimed while it was away (their records). */
  async reclaimedFromHere(): Promise<ReclaimedClaim[]> {
    const prefix = `${KEY_PREFIX}reclaimed/${this.hostId}/`;
    const kvs = await this.client.range(prefix, { prefix: true, deadlineMs: OPERATION_BUDGET_MS });
    return kvs.map((kv) => {
      const [poolPart = '', address = ''] = kv.key.slice(prefix.length).split('/');
      const value = JSON.parse(kv.value) as Partial<ReclaimedValue>;
      return {
        poolId: decodeURIComponent(poolPart),
        address: parseAddress(address),
        by: String(value.by ?? '?'),
        at: String(value.at ?? '?'),
        kind: KINDS.find((k) => k === value.kind) ?? 'allocated',
        mac: typeof value.mac === 'string' ? value.mac : null,
        forget: async () => {
          await this.writer.write([modRevisionIs(kv.key, kv.modRevision)], [{ delete: { key: kv.key } }], deadlineIn());
        },
      };
    });
  }

  /** The host whose claim holds `address` now; null when nobody's does. */
  async holderOf(poolId: string, address: IpAddress): Promise<string | null> {
    const [kv] = await this.client.range(claimKey(poolId, address), { deadlineMs: OPERATION_BUDGET_MS });
    return kv === undefined ? null : parseClaim(kv).host;
  }

  /** Addresses endpoints here hold that another host took while this host was away (SharedPoolState). */
  lostAddresses(): LostAddress[] {
    return this.local.listLostAddresses();
  }

  /**
   * Deletes an endpoint's claim and its MAC. Compared on the revision read, and fenced: a claim made
   * again since is never removed, and a host cut off from etcd removes nothing. Reclaimed from an
   * absent host: only while that host is still unregistered, and with a record of it left for that
   * host (`reclaimed/<host>/...`, on a lease of a week: a host away longer finds only that etcd
   * does not record its address).
   */
  private async removeClaim(
    kv: KeyValue,
    claim: ClaimValue,
    deadline: number,
    reclaimedFrom: string | null = null,
  ): Promise<boolean> {
    const compares = [modRevisionIs(kv.key, kv.modRevision)];
    const ops: Op[] = [{ delete: { key: kv.key } }];
    if (claim.mac !== null) ops.push({ delete: { key: macKey(claim.mac) } });
    if (reclaimedFrom !== null) {
      // Only while that host is unregistered: back meanwhile, it may be starting a container on it.
      compares.push(createRevisionIs0(hostKey(reclaimedFrom)));
      const { poolId, address } = splitClaimKey(kv.key);
      const record: ReclaimedValue = {
        by: this.hostId,
        at: new Date().toISOString(),
        kind: claim.kind,
        mac: claim.mac,
        claimedAt: claim.at,
      };
      const key = `${KEY_PREFIX}reclaimed/${reclaimedFrom}/${enc(poolId)}/${address}`;
      ops.push({ put: { key, value: JSON.stringify(record), lease: await this.recordLease(deadline) } });
    }
    return this.writer.write(compares, ops, deadline);
  }

  /** A lease of RECLAIMED_TTL_SECONDS for reclaim records, granted again every hour. */
  private async recordLease(deadline: number): Promise<string> {
    const current = this.reclaimedLease;
    if (current !== null && Date.now() - current.grantedAt < 3_600_000) return current.id;
    const id = await this.client.grantLease(RECLAIMED_TTL_SECONDS, deadline - Date.now());
    this.reclaimedLease = { id, grantedAt: Date.now() };
    return id;
  }
}
