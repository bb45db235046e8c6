/** What lanplug saw on the LAN (a device using an address), kept for `lanplug doctor`, a process of its own. */
import type { LanSighting } from '../store';
import type { SqliteConnection } from './connection';

export class LanSeenTable {
  constructor(private readonly c: SqliteConnection) {}

  recordSighting(s: Omit<LanSighting, 'firstSeen' | 'lastSeen'>, at: number): void {
    this.c.write(
      `INSERT INTO lan_seen (address, mac, how, network_id, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (address) DO UPDATE SET mac = excluded.mac, how = excluded.how, network_id = excluded.network_id,
           last_seen = excluded.last_seen, first_seen = CASE WHEN lan_seen.mac = excluded.mac THEN lan_seen.first_seen ELSE excluded.first_seen END`,
      s.address,
      s.mac,
      s.how,
      s.networkId,
      at,
      at,
    );
  }

  listSightings(): LanSighting[] {
    const rows = this.c.stmt('SELECT * FROM lan_seen ORDER BY address').all() as {
      address: string;
      mac: string;
      how: string;
      network_id: string | null;
      first_seen: number;
      last_seen: number;
    }[];
    return rows.map((r) => ({
      address: r.address,
      mac: r.mac,
      how: r.how,
      networkId: r.network_id,
      firstSeen: r.first_seen,
      lastSeen: r.last_seen,
    }));
  }
}
