/**
 * The `identities` table: one reservation per (network, identity name), its
 * addresses as columns so that one address is found without reading every
 * row (the IPAM asks at each release). Written with the endpoint it follows,
 * and so as durable as endpoints are (see networks.ts).
 */
import { LanplugError } from '../../errors';
import type { IdentityReservation, KeptClaim } from '../identity-store';
import type { SqliteConnection } from './connection';

interface IdentityRow {
  network_id: string;
  name: string;
  mac: string | null;
  ipv4: string | null;
  ipv6: string | null;
  client_id: string;
  duid: string;
  endpoint_id: string | null;
  kept: string;
  created_at: number;
  last_seen: number;
}

const COLUMNS = 'network_id, name, mac, ipv4, ipv6, client_id, duid, endpoint_id, kept, created_at, last_seen';

export class IdentityTables {
  constructor(private readonly c: SqliteConnection) {}

  getReservation(networkId: string, name: string): IdentityReservation | null {
    const row = this.c
      .stmt(`SELECT ${COLUMNS} FROM identities WHERE network_id = ? AND name = ?`)
      .get(networkId, name) as IdentityRow | undefined;
    return row === undefined ? null : this.decode(row);
  }

  listReservations(): IdentityReservation[] {
    const rows = this.c.stmt(`SELECT ${COLUMNS} FROM identities ORDER BY network_id, name`).all() as IdentityRow[];
    return rows.map((row) => this.decode(row));
  }

  reservationsOfAddress(address: string): IdentityReservation[] {
    const rows = this.c
      .stmt(`SELECT ${COLUMNS} FROM identities WHERE ipv4 = ? OR ipv6 = ?`)
      .all(address, address) as IdentityRow[];
    return rows.map((row) => this.decode(row));
  }

  putReservation(r: IdentityReservation): void {
    this.c.write(
      `INSERT INTO identities (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (network_id, name) DO UPDATE SET mac = excluded.mac, ipv4 = excluded.ipv4,
           ipv6 = excluded.ipv6, client_id = excluded.client_id, duid = excluded.duid,
           endpoint_id = excluded.endpoint_id, kept = excluded.kept, last_seen = excluded.last_seen`,
      r.networkId,
      r.name,
      r.mac,
      r.ipv4,
      r.ipv6,
      r.clientId,
      r.duid,
      r.endpointId,
      JSON.stringify(r.kept),
      r.createdAt,
      r.lastSeen,
    );
  }

  deleteReservation(networkId: string, name: string): boolean {
    return this.c.write('DELETE FROM identities WHERE network_id = ? AND name = ?', networkId, name).changes === 1;
  }

  /** Those keeping no IPAM claim: the others go at the IPAM's ReleasePool, their claims freed then. */
  deleteNetworkReservations(networkId: string): void {
    this.c.write("DELETE FROM identities WHERE network_id = ? AND kept = '[]'", networkId);
  }

  /** A row whose kept claims do not read is an error naming it, never a reservation silently without them. */
  private decode(row: IdentityRow): IdentityReservation {
    let kept: KeptClaim[];
    try {
      const parsed = JSON.parse(row.kept) as unknown;
      if (!Array.isArray(parsed)) throw new Error('kept is not a list');
      kept = parsed.map((k: unknown) => {
        const claim = k as Partial<KeptClaim> | null;
        if (typeof claim?.poolId !== 'string' || typeof claim.address !== 'string')
          throw new Error('a kept claim is malformed');
        return { poolId: claim.poolId, address: claim.address };
      });
    } catch (err) {
      throw new LanplugError(
        'Internal',
        `${this.c.path}: the reservation of ${row.name} on network ${row.network_id.slice(0, 12)} cannot be read (${err instanceof Error ? err.message : String(err)}); lanplug will not guess what it meant`,
      );
    }
    return {
      networkId: row.network_id,
      name: row.name,
      mac: row.mac,
      ipv4: row.ipv4,
      ipv6: row.ipv6,
      clientId: row.client_id,
      duid: row.duid,
      endpointId: row.endpoint_id,
      kept,
      createdAt: row.created_at,
      lastSeen: row.last_seen,
    };
  }
}
