/**
 * A host's use of shared pools: `pools/<pool id>` lists the hosts whose
 * networks use the pool, and the last one to leave takes the pool with it
 * (its claims, and their MAC keys).
 *
 * Docker only logs a failed ReleasePool. A release etcd does not take (no
 * quorum at `docker network rm`, or its answer lost) is therefore kept in
 * this host's state database and made by the periodic check and `lanplug
 * gc`, also after a restart; a `docker network create` of the same pool
 * makes it first, and is never refused "Pool overlaps" for it. A join whose
 * outcome is unknown (Docker creates no network then) is kept as a release to
 * make, and one whose answer was lost and which was asked again is known by
 * its token. Joins, releases and retries of one pool run one after the other.
 */
import { randomBytes } from 'node:crypto';
import { conflict, LanplugError, withContext } from '../../errors';
import type { Logger } from '../../log';
import type { PoolRecord } from '../../model/ipam';
import { formatPrefix } from '../../net/address';
import type { SharedPoolState } from '../shared-state';
import type { EtcdClient, KeyValue, Op } from './client';
import type { FencedWriter } from './fenced';
import {
  busy,
  CAS_ROUNDS,
  claimPrefix,
  createRevisionIs0,
  KEY_PREFIX,
  modRevisionIs,
  OPERATION_BUDGET_MS,
  parsePool,
  poolKey,
  put,
  readPool,
  type MacValue,
  type PoolValue,
} from './keys';

/** MAC keys deleted per transaction (etcd's --max-txn-ops defaults to 128). */
const MACS_PER_TXN = 100;

/** What a pass over the pool releases etcd did not take did. */
export interface PoolReleaseReport {
  released: string[];
  /** Still not taken: the pool, why, and since when (ISO 8601). */
  pending: { poolId: string; error: string; since: string }[];
}

export class PoolMembership {
  private readonly poolWork = new Map<string, Promise<void>>();

  constructor(
    private readonly client: EtcdClient,
    private readonly hostId: string,
    private readonly writer: FencedWriter,
    private readonly local: Pick<SharedPoolState, 'listPoolReleases' | 'putPoolRelease' | 'deletePoolRelease'>,
    private readonly log: Logger,
  ) {}

  /**
   * Joins the pool (or creates it). A release of it this host still owes etcd (see release) is
   * made first: Docker created the network again, and must not be told "Pool overlaps".
   */
  add(record: PoolRecord): Promise<'created' | 'joined'> {
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
  release(poolId: string): Promise<void> {
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
  owed(): PoolReleaseReport['pending'] {
    return this.local
      .listPoolReleases()
      .map((p) => ({ poolId: p.poolId, error: p.error, since: new Date(p.failedAt).toISOString() }));
  }

  /** The pool releases etcd did not take, made again: the periodic check and `lanplug gc`. */
  async retry(): Promise<PoolReleaseReport> {
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
      const kv = await readPool(this.client, record.poolId, deadline);
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
        if (await this.writer.write([createRevisionIs0(key)], [put(key, value)], deadline)) return attempt;
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
      if (await this.writer.write([modRevisionIs(key, kv.modRevision)], [put(key, joined)], deadline)) return attempt;
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
      const kv = await readPool(this.client, poolId, deadline);
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
      if (await this.writer.write(compares, ops, deadline)) {
        for (let i = 0; i < rest.length; i += MACS_PER_TXN) {
          const batch = rest.slice(i, i + MACS_PER_TXN);
          await this.writer.write(
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

  owesRelease(poolId: string): boolean {
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
}
