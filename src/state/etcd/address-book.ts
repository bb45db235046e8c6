/**
 * The shared address book: pools and claims in etcd, so that every host of
 * a fleet on one LAN hands out addresses and MACs from one space. Keys, under
 * /lanplug/v1/ (one key per address, never one big value; research/multihost.md §6):
 *
 *   pools/<pool id>        the pool: subnet, --ip-range, gateway, who defined it, which hosts use it
 *   ip/<pool id>/<address> a claim: host, kind, MAC, token
 *   mac/<MAC>              the endpoint that holds a MAC on the LAN
 *   hosts/<host id>        the host's registration, on a lease (presence.ts)
 *   absent/<host id>       since when a host that holds addresses has had no registration
 *   reclaiming/<host id>   the host reclaiming an absent host's addresses now (on its lease)
 *   reclaimed/<host id>/<pool id>/<address>
 *                          an address reclaimed from an absent host: by whom, when (read by that host once back)
 *
 * Every claim is one transaction that compares create revisions (the key must
 * not exist) and this host's registration (the fence), so two hosts can never
 * both succeed. A write whose answer was lost may have been applied: each value
 * carries a token, and a claim that finds its own token is a success.
 */
import { randomBytes } from 'node:crypto';
import { conflict, LanplugError, withContext } from '../../errors';
import type { Logger } from '../../log';
import { isEndpointKind, type AddressKind, type PoolRecord } from '../../model/ipam';
import { formatPrefix, parseAddress, parsePrefix, type IpAddress } from '../../net/address';
import type { BookPool, OwnClaim, ReclaimedClaim, ReclaimLock, SharedBook } from '../address-book';
import type { LostAddress, SharedPoolState } from '../shared-state';
import type { Compare, EtcdClient, KeyValue, MemberStatus, Op } from './client';
import { HostPresence } from './presence';

export const KEY_PREFIX = '/lanplug/v1/';
/** Every operation of the book ends within this (Docker's plugin timeout is 30 s; research: fail closed within 10). */
const OPERATION_BUDGET_MS = 9_000;
/** Compare-and-swap rounds on one pool key before giving up (only concurrent pool changes cost one). */
const CAS_ROUNDS = 8;
/** How long etcd keeps the record of an address reclaimed from an absent host (a week). */
const RECLAIMED_TTL_SECONDS = 7 * 24 * 3600;
const deadlineIn = (): number => Date.now() + OPERATION_BUDGET_MS;
/** MAC keys deleted per transaction (etcd's --max-txn-ops defaults to 128). */
const MACS_PER_TXN = 100;

/** What a pass over the pool releases etcd did not take did. */
export interface PoolReleaseReport {
  released: string[];
  /** Still not taken: the pool, why, and since when (ISO 8601). */
  pending: { poolId: string; error: string; since: string }[];
}

interface PoolValue {
  poolId: string;
  addressSpace: string;
  pool: string;
  range: string | null;
  gateway: string | null;
  definedBy: string;
  users: string[];
  /** Per user, the token of the write that joined it (tells a join whose answer was lost from an earlier one). */
  joins: Record<string, string>;
}

interface ClaimValue {
  host: string;
  kind: AddressKind;
  mac: string | null;
  token: string;
  at: string;
}

/** `reclaimed/<host>/<pool>/<address>`: an address another host reclaimed from `host`. */
interface ReclaimedValue {
  by: string;
  at: string;
  kind: AddressKind;
  mac: string | null;
  claimedAt: string;
}

interface MacValue {
  host: string;
  poolId: string;
  address: string;
  token: string;
}

const enc = encodeURIComponent;

export class EtcdAddressBook implements SharedBook {
  readonly presence: HostPresence;
  private readonly poolWork = new Map<string, Promise<void>>();
  private reclaimedLease: { id: string; grantedAt: number } | null = null;

  /** `local`: this host's state database (its instance id, the pool releases it still owes etcd). */
  constructor(
    private readonly client: EtcdClient,
    readonly hostId: string,
    private readonly log: Logger,
    private readonly local: SharedPoolState,
  ) {
    this.presence = new HostPresence(client, hostId, local.instanceId(), hostKey(hostId), log);
  }

  /**
   * Registered first, as for a write: which pools are this host's ("Pool overlaps") is only true
   * of the daemon that holds this host id's registration.
   */
  async listPools(): Promise<BookPool[]> {
    await this.presence.fence(OPERATION_BUDGET_MS);
    const owed = new Set(this.local.listPoolReleases().map((p) => p.poolId));
    return (await this.poolsAsStored()).flatMap((p) => {
      if (!owed.has(p.poolId)) return [p];
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
    const kv = await this.readPool(poolId, Date.now() + OPERATION_BUDGET_MS);
    return kv === null ? null : bookPool(parsePool(kv));
  }

  /**
   * Joins the pool (or creates it). A release of it this host still owes etcd (see releasePool) is
   * made first: Docker created the network again, and must not be told "Pool overlaps".
   */
  addPool(record: PoolRecord): Promise<'created' | 'joined'> {
    return this.onePoolAtATime(record.poolId, async () => {
      if (this.owesRelease(record.poolId)) {
        await this.leavePool(record.poolId);
        this.local.deletePoolRelease(record.poolId);
      }
      let sent = false;
      try {
        return await this.joinPool(record, () => (sent = true));
      } catch (err) {
        // A write etcd may have applied, for a network Docker will not create: this host leaves the pool again.
        if (sent && !(err instanceof LanplugError && err.code === 'Conflict')) this.oweRelease(record.poolId, err);
        throw err;
      }
    });
  }

  /**
   * Leaves the pool. When etcd does not take it (no quorum, or the answer was lost), the release is
   * kept in this host's state database and made by the periodic check (and `lanplug gc`), also after
   * a restart: Docker only logs a failed ReleasePool, and its next `docker network create` with the
   * same flags would otherwise be refused.
   */
  releasePool(poolId: string): Promise<void> {
    return this.onePoolAtATime(poolId, async () => {
      try {
        await this.leavePool(poolId);
      } catch (err) {
        this.oweRelease(poolId, err);
        throw withContext(`releasing shared pool ${poolId} (kept: the periodic check and lanplug gc make it)`, err);
      }
      this.local.deletePoolRelease(poolId);
    });
  }

  /** The pool releases this host still owes etcd: for `lanplug doctor`. */
  owedPoolReleases(): PoolReleaseReport['pending'] {
    return this.local
      .listPoolReleases()
      .map((p) => ({ poolId: p.poolId, error: p.error, since: new Date(p.failedAt).toISOString() }));
  }

  /** The pool releases etcd did not take, made again: the periodic check and `lanplug gc`. */
  async retryPoolReleases(): Promise<PoolReleaseReport> {
    const report: PoolReleaseReport = { released: [], pending: [] };
    let unavailable: LanplugError | null = null;
    for (const owed of this.local.listPoolReleases()) {
      await this.onePoolAtATime(owed.poolId, async () => {
        if (!this.owesRelease(owed.poolId)) return; // made meanwhile: the network was created again
        try {
          // One etcd timeout per pass is enough to know: the others wait for the next pass.
          if (unavailable !== null) throw unavailable;
          await this.leavePool(owed.poolId);
          this.local.deletePoolRelease(owed.poolId);
          report.released.push(owed.poolId);
          this.log.info('shared pool: made a release etcd had not taken', {
            pool: owed.poolId,
            failedAt: new Date(owed.failedAt).toISOString(),
          });
        } catch (err) {
          if (err instanceof LanplugError && err.code === 'Unavailable') unavailable = err;
          const error = err instanceof Error ? err.message : String(err);
          this.local.putPoolRelease(owed.poolId, error, Date.now());
          report.pending.push({ poolId: owed.poolId, error, since: new Date(owed.failedAt).toISOString() });
        }
      });
    }
    return report;
  }

  /** Creates or joins the pool; `sending` runs before each write (its outcome may stay unknown). */
  private async joinPool(record: PoolRecord, sending: () => void): Promise<'created' | 'joined'> {
    const deadline = Date.now() + OPERATION_BUDGET_MS;
    const key = poolKey(record.poolId);
    // Tells this call's write from an earlier join by this host, when an answer was lost.
    const token = randomBytes(8).toString('hex');
    let attempt: 'created' | 'joined' | null = null;
    for (let round = 0; round < CAS_ROUNDS; round++) {
      const kv = await this.readPool(record.poolId, deadline);
      if (kv === null) {
        const value: PoolValue = {
          poolId: record.poolId,
          addressSpace: record.addressSpace,
          pool: formatPrefix(record.pool),
          range: record.range === null ? null : formatPrefix(record.range),
          gateway: null,
          definedBy: this.hostId,
          users: [this.hostId],
          joins: { [this.hostId]: token },
        };
        sending();
        attempt = 'created';
        if (await this.write([createRevisionIs0(key)], [put(key, value)], deadline)) return attempt;
        continue;
      }
      const current = parsePool(kv);
      if (current.users.includes(this.hostId)) {
        if (attempt !== null && current.joins[this.hostId] === token) return attempt; // applied; its answer was lost
        throw conflict('Pool overlaps with other one on this address space');
      }
      const joined: PoolValue = {
        ...current,
        users: [...current.users, this.hostId],
        joins: { ...current.joins, [this.hostId]: token },
      };
      sending();
      attempt = 'joined';
      if (await this.write([modRevisionIs(key, kv.modRevision)], [put(key, joined)], deadline)) return attempt;
    }
    throw busy(record.poolId);
  }

  /**
   * Drops this host from the pool's users; the last user takes the pool with it: its claims (the
   * gateway and aux entries, and whatever a host that went away left) and their MAC keys.
   */
  private async leavePool(poolId: string): Promise<void> {
    const deadline = Date.now() + OPERATION_BUDGET_MS;
    const key = poolKey(poolId);
    for (let round = 0; round < CAS_ROUNDS; round++) {
      const kv = await this.readPool(poolId, deadline);
      if (kv === null) return;
      const current = parsePool(kv);
      if (!current.users.includes(this.hostId)) return;
      const users = current.users.filter((u) => u !== this.hostId);
      const { [this.hostId]: _left, ...joins } = current.joins;
      const macs = users.length === 0 ? await this.macKeysOf(poolId, deadline) : [];
      // etcd takes at most 128 operations per transaction: MAC keys past the first hundred go after.
      const [first, rest] = [macs.slice(0, MACS_PER_TXN), macs.slice(MACS_PER_TXN)];
      const ops: Op[] =
        users.length === 0
          ? [
              { delete: { key } },
              { delete: { key: claimPrefix(poolId), prefix: true } },
              ...first.map((m) => ({ delete: { key: m.key } })),
            ]
          : [put(key, { ...current, users, joins })];
      const compares = [modRevisionIs(key, kv.modRevision), ...first.map((m) => modRevisionIs(m.key, m.modRevision))];
      if (await this.write(compares, ops, deadline)) {
        for (let i = 0; i < rest.length; i += MACS_PER_TXN) {
          const batch = rest.slice(i, i + MACS_PER_TXN);
          await this.write(
            batch.map((m) => modRevisionIs(m.key, m.modRevision)),
            batch.map((m) => ({ delete: { key: m.key } })),
            deadline,
          );
        }
        this.log.info(users.length === 0 ? 'shared pool removed' : 'left shared pool', { pool: poolId, users });
        return;
      }
    }
    throw busy(poolId);
  }

  /** The MAC keys that name an address of the pool. */
  private async macKeysOf(poolId: string, deadline: number): Promise<KeyValue[]> {
    const kvs = await this.client.range(`${KEY_PREFIX}mac/`, { prefix: true, deadlineMs: deadline - Date.now() });
    return kvs.filter((kv) => {
      try {
        return (JSON.parse(kv.value) as Partial<MacValue>).poolId === poolId;
      } catch {
        return false;
      }
    });
  }

  private owesRelease(poolId: string): boolean {
    return this.local.listPoolReleases().some((p) => p.poolId === poolId);
  }

  private oweRelease(poolId: string, err: unknown): void {
    const error = err instanceof Error ? err.message : String(err);
    this.local.putPoolRelease(poolId, error, Date.now());
    this.log.warn('shared pool: etcd did not take this host leaving it; the periodic check makes the release', {
      pool: poolId,
      error,
    });
  }

  /** Joins, releases and retried releases of one pool happen one after the other on this host. */
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
        const kv = await this.readPool(poolId, deadline);
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
      const result = await this.fencedTxn(
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

  async release(poolId: string, address: IpAddress): Promise<boolean> {
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
    // The gateway and aux entries stay as long as the pool (other hosts' networks use them).
    if (!isEndpointKind(holder.kind)) return false;
    return this.removeClaim(kv, holder, deadline);
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
        await this.write([modRevisionIs(marker.key, marker.modRevision)], [{ delete: { key: marker.key } }], deadline);
        continue;
      }
      absent.set(host, Number((JSON.parse(marker.value) as { since?: number }).since ?? Date.now()));
    }
    for (const host of holders) {
      if (registered.has(host) || host === this.hostId || absent.has(host)) continue;
      const key = `${KEY_PREFIX}absent/${host}`;
      const since = Date.now();
      if (await this.write([createRevisionIs0(key)], [put(key, { since, seenBy: this.hostId })], deadline))
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
      const result = await this.fencedTxn(
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
          await this.write([modRevisionIs(kv.key, kv.modRevision)], [{ delete: { key: kv.key } }], deadlineIn());
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
   * absent host, it leaves a record of it for that host (`reclaimed/<host>/...`, on a lease of a
   * week: a host away longer finds only that etcd does not record its address).
   */
  private async removeClaim(
    kv: KeyValue,
    claim: ClaimValue,
    deadline: number,
    reclaimedFrom: string | null = null,
  ): Promise<boolean> {
    const ops: Op[] = [{ delete: { key: kv.key } }];
    if (claim.mac !== null) ops.push({ delete: { key: macKey(claim.mac) } });
    if (reclaimedFrom !== null) {
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
    return this.write([modRevisionIs(kv.key, kv.modRevision)], ops, deadline);
  }

  /** A lease of RECLAIMED_TTL_SECONDS for reclaim records, granted again every hour. */
  private async recordLease(deadline: number): Promise<string> {
    const current = this.reclaimedLease;
    if (current !== null && Date.now() - current.grantedAt < 3_600_000) return current.id;
    const id = await this.client.grantLease(RECLAIMED_TTL_SECONDS, deadline - Date.now());
    this.reclaimedLease = { id, grantedAt: Date.now() };
    return id;
  }

  private async readPool(poolId: string, deadline: number): Promise<KeyValue | null> {
    const [kv] = await this.client.range(poolKey(poolId), { deadlineMs: deadline - Date.now() });
    return kv ?? null;
  }

  /** A transaction that must also find this host's registration as written; true when it applied. */
  private async write(compares: Compare[], ops: Op[], deadline: number): Promise<boolean> {
    const result = await this.fencedTxn(compares, ops, [], deadline);
    if (result === 'fence') return false;
    return result === 'done';
  }

  /**
   * 'done' when applied; 'fence' when this host's registration was not as written (it is
   * renewed before the caller's next round); else what the failure ops read.
   */
  private async fencedTxn(
    compares: Compare[],
    ops: Op[],
    failure: Op[],
    deadline: number,
  ): Promise<'done' | 'fence' | KeyValue[][]> {
    const fence = await this.presence.fence(deadline - Date.now());
    const result = await this.client.txn(
      [fence, ...compares],
      ops,
      [{ range: { key: fence.key } }, ...failure],
      deadline - Date.now(),
    );
    if (result.succeeded) return 'done';
    const [registration] = result.results[0] ?? [];
    if (registration?.value !== fence.value) {
      this.presence.forget();
      return 'fence';
    }
    return result.results.slice(1);
  }
}

const poolKey = (poolId: string): string => `${KEY_PREFIX}pools/${enc(poolId)}`;
const claimPrefix = (poolId: string): string => `${KEY_PREFIX}ip/${enc(poolId)}/`;
const claimKey = (poolId: string, address: IpAddress): string => `${claimPrefix(poolId)}${address.text}`;
const macKey = (mac: string): string => `${KEY_PREFIX}mac/${mac.toLowerCase()}`;
export const hostKey = (hostId: string): string => `${KEY_PREFIX}hosts/${hostId}`;

/** `ip/<pool id>/<address>` -> its pool id and address. */
function splitClaimKey(key: string): { poolId: string; address: string } {
  const [, poolPart = '', address = ''] = key.slice(KEY_PREFIX.length).split('/');
  return { poolId: decodeURIComponent(poolPart), address };
}

const createRevisionIs0 = (key: string): Compare => ({ key, target: 'CREATE', result: 'EQUAL', createRevision: 0n });
const modRevisionIs = (key: string, revision: bigint): Compare => ({
  key,
  target: 'MOD',
  result: 'EQUAL',
  modRevision: revision,
});
const put = (key: string, value: object): Op => ({ put: { key, value: JSON.stringify(value) } });

function busy(poolId: string): LanplugError {
  return new LanplugError(
    'Unavailable',
    `shared pool ${poolId} kept changing under this request (other hosts writing); try again`,
  );
}

function parsePool(kv: KeyValue): PoolValue {
  const value = JSON.parse(kv.value) as Partial<PoolValue>;
  if (typeof value.poolId !== 'string' || typeof value.pool !== 'string' || !Array.isArray(value.users))
    throw new LanplugError('Internal', `etcd key ${kv.key} does not hold a lanplug pool`);
  return {
    poolId: value.poolId,
    addressSpace: String(value.addressSpace ?? ''),
    pool: value.pool,
    range: typeof value.range === 'string' ? value.range : null,
    gateway: typeof value.gateway === 'string' ? value.gateway : null,
    definedBy: String(value.definedBy ?? '?'),
    users: value.users.map(String),
    joins: Object.fromEntries(
      Object.entries(typeof value.joins === 'object' && value.joins !== null ? value.joins : {}).filter(
        (e): e is [string, string] => typeof e[1] === 'string',
      ),
    ),
  };
}

function bookPool(value: PoolValue): BookPool {
  return {
    poolId: value.poolId,
    addressSpace: value.addressSpace,
    pool: parsePrefix(value.pool),
    range: value.range === null ? null : parsePrefix(value.range),
    definedBy: value.definedBy,
    gateway: value.gateway === null ? null : parseAddress(value.gateway),
    users: value.users,
  };
}

const KINDS: readonly AddressKind[] = ['gateway', 'requested', 'aux', 'allocated'];

function parseClaim(kv: KeyValue): ClaimValue {
  const value = JSON.parse(kv.value) as Partial<ClaimValue>;
  const kind = KINDS.find((k) => k === value.kind);
  if (kind === undefined || typeof value.host !== 'string')
    throw new LanplugError('Internal', `etcd key ${kv.key} does not hold a lanplug claim`);
  return {
    host: value.host,
    kind,
    mac: typeof value.mac === 'string' ? value.mac : null,
    token: String(value.token ?? ''),
    at: String(value.at ?? ''),
  };
}
