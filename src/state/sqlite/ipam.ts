/**
 * The tables of the `lanplug` IPAM driver (and CNI's ranges): pools, which
 * describe what the user configured and are on disk before Docker hears
 * "created", and the addresses claimed in them (by Docker's endpoints, or
 * owned by a CNI attachment), which survive any crash of the daemon but may
 * lose their last changes to a power loss (as endpoints do: see networks.ts).
 */
import { LanplugError } from '../../errors';
import type { AddressKind, PoolRecord } from '../../model/ipam';
import type { Stamped } from '../../model/network';
import { parseAddress, type IpAddress } from '../../net/address';
import { decodePool, encodePool } from '../records';
import type { Row, SqliteConnection } from './connection';

export class IpamTables {
  constructor(private readonly c: SqliteConnection) {}

  insertPool(pool: PoolRecord): void {
    const result = this.c.write(
      'INSERT OR IGNORE INTO pools (id, record, created_at) VALUES (?, ?, ?)',
      pool.poolId,
      encodePool(pool),
      Date.now(),
    );
    if (result.changes === 0) throw new LanplugError('Conflict', `pool ${pool.poolId} is already recorded`);
    this.c.durable();
  }

  getPool(poolId: string): (PoolRecord & Stamped) | null {
    const row = this.c.stmt('SELECT id, record, created_at FROM pools WHERE id = ?').get(poolId) as Row | undefined;
    return row === undefined ? null : this.c.read('pool', row, decodePool);
  }

  listPools(): (PoolRecord & Stamped)[] {
    const rows = this.c.stmt('SELECT id, record, created_at FROM pools ORDER BY id').all() as Row[];
    return rows.map((row) => this.c.read('pool', row, decodePool));
  }

  deletePool(poolId: string): void {
    this.c.transaction(() => {
      this.c.write('DELETE FROM addresses WHERE pool_id = ?', poolId);
      this.c.write('DELETE FROM pools WHERE id = ?', poolId);
      this.c.durable();
    });
  }

  claimAddress(poolId: string, address: IpAddress, kind: AddressKind, owner?: string): boolean {
    const result = this.c.write(
      'INSERT OR IGNORE INTO addresses (pool_id, address, kind, created_at, owner) VALUES (?, ?, ?, ?, ?)',
      poolId,
      address.text,
      kind,
      Date.now(),
      owner ?? null,
    );
    return result.changes === 1;
  }

  claimsOf(owner: string): { poolId: string; address: IpAddress }[] {
    const rows = this.c.stmt('SELECT pool_id, address FROM addresses WHERE owner = ?').all(owner) as {
      pool_id: string;
      address: string;
    }[];
    return rows.map((row) => ({ poolId: row.pool_id, address: parseAddress(row.address) }));
  }

  ownedClaims(prefix: string): { poolId: string; address: IpAddress; owner: string }[] {
    const rows = this.c
      .stmt('SELECT pool_id, address, owner FROM addresses WHERE owner IS NOT NULL AND substr(owner, 1, ?) = ?')
      .all(prefix.length, prefix) as { pool_id: string; address: string; owner: string }[];
    return rows.map((row) => ({ poolId: row.pool_id, address: parseAddress(row.address), owner: row.owner }));
  }

  poolsClaiming(address: IpAddress): string[] {
    const rows = this.c.stmt('SELECT pool_id FROM addresses WHERE address = ?').all(address.text) as {
      pool_id: string;
    }[];
    return rows.map((row) => row.pool_id);
  }

  releaseAddress(poolId: string, address: IpAddress): boolean {
    return this.c.write('DELETE FROM addresses WHERE pool_id = ? AND address = ?', poolId, address.text).changes === 1;
  }

  claimedAddresses(poolId: string): { address: IpAddress; kind: AddressKind }[] {
    const rows = this.c.stmt('SELECT address, kind FROM addresses WHERE pool_id = ?').all(poolId) as {
      address: string;
      kind: string;
    }[];
    return rows.map((row) => {
      const kind = row.kind;
      if (kind !== 'gateway' && kind !== 'requested' && kind !== 'aux' && kind !== 'allocated') {
        throw new LanplugError(
          'Internal',
          `${this.c.path}: address ${row.address} of pool ${poolId} has an unknown kind '${kind}'`,
        );
      }
      return { address: parseAddress(row.address), kind };
    });
  }

  dockerEndpointClaims(): { poolId: string; address: IpAddress; createdAt: number }[] {
    const rows = this.c
      .stmt(
        "SELECT pool_id, address, created_at FROM addresses WHERE owner IS NULL AND kind IN ('requested', 'allocated')",
      )
      .all() as { pool_id: string; address: string; created_at: number }[];
    return rows.map((row) => ({ poolId: row.pool_id, address: parseAddress(row.address), createdAt: row.created_at }));
  }
}
