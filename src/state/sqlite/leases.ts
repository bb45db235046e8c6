/**
 * The tables of the DHCP clients: the leases held for containers (durable
 * when taken, so that a restarted daemon renews the same address; a renewal
 * is not, the next durable write takes it along), and the last address each
 * stable client identity held, asked for again at its next start.
 */
import type { LeaseRecord } from '../../model/lease';
import type { Stamped } from '../../model/network';
import { parseAddress, type IpAddress } from '../../net/address';
import { decodeLease, encodeLease } from '../records';
import type { Row, SqliteConnection } from './connection';

export class LeaseTables {
  constructor(private readonly c: SqliteConnection) {}

  getLease(networkId: string, endpointId: string): (LeaseRecord & Stamped) | null {
    const row = this.c
      .stmt('SELECT endpoint_id AS id, record, created_at FROM leases WHERE network_id = ? AND endpoint_id = ?')
      .get(networkId, endpointId) as Row | undefined;
    return row === undefined ? null : this.c.read('lease', row, decodeLease);
  }

  listLeases(): (LeaseRecord & Stamped)[] {
    const rows = this.c
      .stmt('SELECT endpoint_id AS id, record, created_at FROM leases ORDER BY created_at')
      .all() as Row[];
    return rows.map((row) => this.c.read('lease', row, decodeLease));
  }

  putLease(record: LeaseRecord, durable: boolean): void {
    this.c.transaction(() => {
      // A lease written again (renewed) keeps its first time.
      this.c.write(
        `INSERT INTO leases (network_id, endpoint_id, record, created_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (network_id, endpoint_id) DO UPDATE SET record = excluded.record`,
        record.networkId,
        record.endpointId,
        encodeLease(record),
        Date.now(),
      );
      if (durable) this.c.durable();
    });
  }

  moveLease(record: LeaseRecord, from: string): void {
    this.c.transaction(() => {
      this.deleteLease(record.networkId, from);
      this.putLease(record, true);
    });
  }

  deleteLease(networkId: string, endpointId: string): void {
    this.c.write('DELETE FROM leases WHERE network_id = ? AND endpoint_id = ?', networkId, endpointId);
  }

  rememberAddress(clientId: string, address: IpAddress): void {
    this.c.write(
      `INSERT INTO dhcp_last (client_id, address, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (client_id) DO UPDATE SET address = excluded.address, updated_at = excluded.updated_at`,
      clientId,
      address.text,
      Date.now(),
    );
  }

  forgetAddressesBefore(cutoff: number): number {
    return this.c.write('DELETE FROM dhcp_last WHERE updated_at < ?', cutoff).changes;
  }

  lastAddress(clientId: string): IpAddress | null {
    const row = this.c.stmt('SELECT address FROM dhcp_last WHERE client_id = ?').get(clientId) as
      { address: string } | undefined;
    return row === undefined ? null : parseAddress(row.address);
  }
}
