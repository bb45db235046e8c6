/**
 * The Store on an embedded SQLite database (better-sqlite3: synchronous, so
 * one request's reads and writes never interleave with another's).
 *
 * The database is opened with WAL and synchronous=FULL: a record that was
 * acknowledged survives a crash of the daemon or of the machine. Opening it
 * moves its schema forward (schema.ts); a file that is newer, foreign or
 * damaged stops the daemon with one line naming it, and is never rewritten.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { LanplugError } from '../errors';
import type { EndpointRecord, Leftover, NetworkRecord, Stamped } from '../model/network';
import {
  decodeEndpoint,
  decodeLeftover,
  decodeNetwork,
  encodeEndpoint,
  encodeLeftover,
  encodeNetwork,
} from './records';
import { checkMigratable, migrate, SCHEMA_VERSION, schemaVersion } from './schema';
import { checkStateDir, prepareStateDir } from './state-dir';
import type { Store } from './store';

export const DATABASE_FILE = 'lanplug.db';

interface Row {
  id: string;
  record: string;
  created_at: number;
}

export class SqliteStore implements Store {
  private constructor(
    private readonly db: Database.Database,
    /** For messages: the database file. */
    readonly path: string,
    /** The schema version the file had before it was opened (0: new). */
    readonly foundVersion: number,
  ) {}

  /**
   * Opens `<stateDir>/lanplug.db` for the daemon: the directory is created
   * 0700 when missing and refused when others could write to it; the schema
   * is brought to the current version.
   */
  static open(stateDir: string): SqliteStore {
    prepareStateDir(stateDir);
    const path = join(stateDir, DATABASE_FILE);
    const db = openFile(path, {});
    try {
      // Refuse a newer or foreign file before anything (even the journal mode) is written to it.
      checkMigratable(db);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      const found = migrate(db);
      return new SqliteStore(db, path, found);
    } catch (err) {
      db.close();
      throw explainOpenFailure(path, err);
    }
  }

  /** Opens an existing database without creating or migrating anything (status, doctor). */
  static openReadOnly(stateDir: string): SqliteStore {
    checkStateDir(stateDir);
    const path = join(stateDir, DATABASE_FILE);
    const db = openFile(path, { readonly: true, fileMustExist: true });
    try {
      const version = schemaVersion(db);
      if (version !== SCHEMA_VERSION) {
        throw new LanplugError(
          'Conflict',
          version > SCHEMA_VERSION
            ? `has schema version ${version}, newer than this lanplug understands (${SCHEMA_VERSION})`
            : `has schema version ${version}; the lanplug daemon brings it to version ${SCHEMA_VERSION} when it starts`,
        );
      }
      return new SqliteStore(db, path, version);
    } catch (err) {
      db.close();
      throw explainOpenFailure(path, err);
    }
  }

  getNetwork(networkId: string): (NetworkRecord & Stamped) | null {
    const row = this.db.prepare('SELECT id, record, created_at FROM networks WHERE id = ?').get(networkId) as
      Row | undefined;
    return row === undefined ? null : this.read('network', row, decodeNetwork);
  }

  listNetworks(): (NetworkRecord & Stamped)[] {
    const rows = this.db.prepare('SELECT id, record, created_at FROM networks ORDER BY id').all() as Row[];
    return rows.map((row) => this.read('network', row, decodeNetwork));
  }

  insertNetwork(record: NetworkRecord): void {
    const result = this.db
      .prepare('INSERT OR IGNORE INTO networks (id, record, created_at) VALUES (?, ?, ?)')
      .run(record.spec.networkId, encodeNetwork(record), Date.now());
    if (result.changes === 0)
      throw new LanplugError('Conflict', `network ${record.spec.networkId} is already recorded`);
  }

  deleteNetwork(networkId: string): void {
    this.transaction(() => {
      this.db.prepare('DELETE FROM endpoints WHERE network_id = ?').run(networkId);
      this.db.prepare('DELETE FROM networks WHERE id = ?').run(networkId);
    });
  }

  getEndpoint(networkId: string, endpointId: string): (EndpointRecord & Stamped) | null {
    const row = this.db
      .prepare('SELECT endpoint_id AS id, record, created_at FROM endpoints WHERE network_id = ? AND endpoint_id = ?')
      .get(networkId, endpointId) as Row | undefined;
    return row === undefined ? null : this.read('endpoint', row, decodeEndpoint);
  }

  listEndpoints(networkId: string): (EndpointRecord & Stamped)[] {
    const rows = this.db
      .prepare('SELECT endpoint_id AS id, record, created_at FROM endpoints WHERE network_id = ? ORDER BY endpoint_id')
      .all(networkId) as Row[];
    return rows.map((row) => this.read('endpoint', row, decodeEndpoint));
  }

  listAllEndpoints(): (EndpointRecord & Stamped)[] {
    const rows = this.db
      .prepare('SELECT endpoint_id AS id, record, created_at FROM endpoints ORDER BY network_id, endpoint_id')
      .all() as Row[];
    return rows.map((row) => this.read('endpoint', row, decodeEndpoint));
  }

  putEndpoint(record: EndpointRecord): void {
    // An endpoint written again (Docker retrying CreateEndpoint) keeps its first time.
    this.db
      .prepare(
        `INSERT INTO endpoints (network_id, endpoint_id, record, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (network_id, endpoint_id) DO UPDATE SET record = excluded.record`,
      )
      .run(record.networkId, record.endpointId, encodeEndpoint(record), Date.now());
  }

  deleteEndpoint(networkId: string, endpointId: string): void {
    this.db.prepare('DELETE FROM endpoints WHERE network_id = ? AND endpoint_id = ?').run(networkId, endpointId);
  }

  listLeftovers(): Leftover[] {
    const rows = this.db
      .prepare('SELECT name AS id, record, 0 AS created_at FROM leftovers ORDER BY name')
      .all() as Row[];
    return rows.map((row) => {
      const { createdAt: _unused, ...leftover } = this.read('leftover', row, decodeLeftover);
      return leftover;
    });
  }

  putLeftover(leftover: Leftover): void {
    this.db
      .prepare('INSERT OR REPLACE INTO leftovers (name, record) VALUES (?, ?)')
      .run(leftover.name, encodeLeftover(leftover));
  }

  deleteLeftover(name: string): void {
    this.db.prepare('DELETE FROM leftovers WHERE name = ?').run(name);
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** A row that does not decode is an error that names it: never an invisible network. */
  private read<T>(what: string, row: Row, decode: (text: string) => T): T & Stamped {
    try {
      return { ...decode(row.record), createdAt: row.created_at };
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new LanplugError(
        'Internal',
        `${this.path}: the ${what} row ${what === 'leftover' ? row.id : row.id.slice(0, 12)} cannot be read (${why}); ` +
          'it was written by another version of lanplug or damaged: lanplug will not guess what it meant',
      );
    }
  }
}

function openFile(path: string, options: Database.Options): Database.Database {
  try {
    return new Database(path, options);
  } catch (err) {
    throw explainOpenFailure(path, err);
  }
}

/** One line that names the file and says what to do. */
function explainOpenFailure(path: string, err: unknown): LanplugError {
  if (err instanceof LanplugError && err.message.startsWith(path)) return err;
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new LanplugError(
      'Internal',
      `${path} is not a readable lanplug database (${message}); lanplug leaves it as it is: move it aside (mv ${path} ${path}.broken) to start with no networks`,
      { cause: err },
    );
  }
  if (code === 'SQLITE_CANTOPEN') {
    return new LanplugError(
      'NotFound',
      `${path} does not exist or cannot be opened; the lanplug daemon creates it at its first start`,
      { cause: err },
    );
  }
  if (err instanceof LanplugError && err.code === 'Conflict') {
    return new LanplugError(
      'Conflict',
      `${path} ${message}; lanplug leaves it as it is: run the lanplug that wrote it, or move it aside (mv ${path} ${path}.newer)`,
      { cause: err },
    );
  }
  return new LanplugError('Internal', `${path}: ${message}`, { cause: err });
}
