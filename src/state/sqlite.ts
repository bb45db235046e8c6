/**
 * The Store on an embedded SQLite database (better-sqlite3: synchronous, so
 * one request's reads and writes never interleave with another's).
 *
 * The database is opened with WAL and synchronous=FULL: a record that was
 * acknowledged survives a crash of the daemon or of the machine.
 */
import Database from 'better-sqlite3';
import { mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { LanplugError } from '../errors';
import type { Logger } from '../log';
import {
  decodeEndpoint,
  decodeNetwork,
  encodeEndpoint,
  encodeNetwork,
  type EndpointRecord,
  type NetworkRecord,
} from './records';
import type { Store } from './store';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS networks (
  id     TEXT PRIMARY KEY,
  record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
  network_id  TEXT NOT NULL,
  endpoint_id TEXT NOT NULL,
  record      TEXT NOT NULL,
  PRIMARY KEY (network_id, endpoint_id)
);
`;

export const DATABASE_FILE = 'lanplug.db';

export class SqliteStore implements Store {
  private readonly db: Database.Database;

  private constructor(db: Database.Database, private readonly log: Logger) {
    this.db = db;
  }

  /** Opens (creating if needed) `<stateDir>/lanplug.db`; the directory is made root-only. */
  static open(stateDir: string, log: Logger): SqliteStore {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    chmodSync(stateDir, 0o700);
    const db = new Database(join(stateDir, DATABASE_FILE));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    db.exec(SCHEMA);
    return new SqliteStore(db, log);
  }

  getNetwork(networkId: string): NetworkRecord | null {
    const row = this.db.prepare('SELECT record FROM networks WHERE id = ?').get(networkId) as RecordRow | undefined;
    return row === undefined ? null : this.decodeOrSkip('network', networkId, row.record, decodeNetwork);
  }

  listNetworks(): NetworkRecord[] {
    const rows = this.db.prepare('SELECT id, record FROM networks ORDER BY id').all() as IdRecordRow[];
    return rows.flatMap((row) => this.decodeOrSkip('network', row.id, row.record, decodeNetwork) ?? []);
  }

  insertNetwork(record: NetworkRecord): void {
    const result = this.db
      .prepare('INSERT OR IGNORE INTO networks (id, record) VALUES (?, ?)')
      .run(record.spec.networkId, encodeNetwork(record));
    if (result.changes === 0) {
      throw new LanplugError('Conflict', `network ${record.spec.networkId} is already recorded`);
    }
  }

  deleteNetwork(networkId: string): void {
    this.transaction(() => {
      this.db.prepare('DELETE FROM endpoints WHERE network_id = ?').run(networkId);
      this.db.prepare('DELETE FROM networks WHERE id = ?').run(networkId);
    });
  }

  getEndpoint(networkId: string, endpointId: string): EndpointRecord | null {
    const row = this.db
      .prepare('SELECT record FROM endpoints WHERE network_id = ? AND endpoint_id = ?')
      .get(networkId, endpointId) as RecordRow | undefined;
    return row === undefined ? null : this.decodeOrSkip('endpoint', endpointId, row.record, decodeEndpoint);
  }

  listEndpoints(networkId: string): EndpointRecord[] {
    const rows = this.db
      .prepare('SELECT endpoint_id AS id, record FROM endpoints WHERE network_id = ? ORDER BY endpoint_id')
      .all(networkId) as IdRecordRow[];
    return rows.flatMap((row) => this.decodeOrSkip('endpoint', row.id, row.record, decodeEndpoint) ?? []);
  }

  putEndpoint(record: EndpointRecord): void {
    this.db
      .prepare('INSERT OR REPLACE INTO endpoints (network_id, endpoint_id, record) VALUES (?, ?, ?)')
      .run(record.networkId, record.endpointId, encodeEndpoint(record));
  }

  deleteEndpoint(networkId: string, endpointId: string): void {
    this.db.prepare('DELETE FROM endpoints WHERE network_id = ? AND endpoint_id = ?').run(networkId, endpointId);
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    this.db.close();
  }

  /** A corrupt row is logged and treated as absent: it must never take the daemon down. */
  private decodeOrSkip<T>(what: string, id: string, text: string, decode: (text: string) => T): T | null {
    try {
      return decode(text);
    } catch (err) {
      this.log.error('skipping unreadable state record', { what, id, error: String(err) });
      return null;
    }
  }
}

interface RecordRow {
  record: string;
}
interface IdRecordRow {
  id: string;
  record: string;
}
