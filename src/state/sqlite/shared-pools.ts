/**
 * What this host keeps of shared pools (etcd) on its own disk: the pool
 * releases it still owes (a failed release is tried again by every pass),
 * and the addresses its endpoints lost to another host that reclaimed them
 * while this host was away (read once from etcd, so on disk at once).
 */
import type { LostAddress, PendingPoolRelease } from '../shared-state';
import type { Row, SqliteConnection } from './connection';

export class SharedPoolTables {
  constructor(private readonly c: SqliteConnection) {}

  listPoolReleases(): PendingPoolRelease[] {
    const rows = this.c.stmt('SELECT pool_id, error, failed_at FROM pool_releases ORDER BY pool_id').all() as {
      pool_id: string;
      error: string;
      failed_at: number;
    }[];
    return rows.map((r) => ({ poolId: r.pool_id, error: r.error, failedAt: r.failed_at }));
  }

  putPoolRelease(poolId: string, error: string, at: number): void {
    this.c.write(
      `INSERT INTO pool_releases (pool_id, error, failed_at) VALUES (?, ?, ?)
         ON CONFLICT (pool_id) DO UPDATE SET error = excluded.error`,
      poolId,
      error,
      at,
    );
    this.c.durable();
  }

  deletePoolRelease(poolId: string): void {
    this.c.write('DELETE FROM pool_releases WHERE pool_id = ?', poolId);
  }

  listLostAddresses(): LostAddress[] {
    const rows = this.c
      .stmt('SELECT address AS id, record, noticed_at AS created_at FROM lost_addresses')
      .all() as Row[];
    return rows.map((row) => {
      const { createdAt, ...lost } = this.c.read('lost address', row, decodeLostAddress);
      return { ...lost, noticedAt: createdAt };
    });
  }

  putLostAddress(lost: LostAddress): void {
    const { noticedAt, ...record } = lost;
    this.c.write(
      'INSERT OR REPLACE INTO lost_addresses (address, record, noticed_at) VALUES (?, ?, ?)',
      lost.address,
      JSON.stringify(record),
      noticedAt,
    );
    // On disk before etcd's record of the reclaim is forgotten: the record is read once.
    this.c.durable();
  }

  deleteLostAddress(address: string): void {
    this.c.write('DELETE FROM lost_addresses WHERE address = ?', address);
  }

  isAddressLost(networkId: string, address: string): boolean {
    return (
      this.c
        .stmt("SELECT 1 FROM lost_addresses WHERE address = ? AND json_extract(record, '$.networkId') = ?")
        .get(address, networkId) !== undefined
    );
  }
}

function decodeLostAddress(text: string): Omit<LostAddress, 'noticedAt'> {
  const value = JSON.parse(text) as Partial<Record<keyof LostAddress, unknown>>;
  const field = (name: keyof LostAddress): string => {
    const v = value[name];
    if (typeof v !== 'string') throw new Error(`no ${name}`);
    return v;
  };
  return {
    address: field('address'),
    poolId: field('poolId'),
    networkId: field('networkId'),
    endpointId: field('endpointId'),
    reclaimedBy: field('reclaimedBy'),
    reclaimedAt: field('reclaimedAt'),
    heldBy: field('heldBy'),
  };
}
