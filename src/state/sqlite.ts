/**
 * The Store on an embedded SQLite database (better-sqlite3: synchronous, so
 * one request's reads and writes never interleave with another's).
 *
 * Durability, chosen per record (WAL, synchronous=NORMAL, and an fsync of
 * the WAL after writes that must outlive the machine): networks and pools,
 * which describe what the user configured, are on disk before Docker hears
 * "created"; endpoints, addresses and leftovers, which describe links and
 * containers a power loss takes with it, survive any crash of the daemon
 * (the WAL is written before the answer) but may lose their last changes to
 * a power loss, after which reconcile and Docker's own clean-up at boot
 * agree again. That takes an fsync (0.1-3 ms here) off every attach and
 * detach. Opening it
 * moves its schema forward (schema.ts); a file that is newer, foreign or
 * damaged stops the daemon with one line naming it, and is never rewritten.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LanplugError } from '../errors';
import type { AddressKind, PoolRecord } from '../model/ipam';
import type { EndpointRecord, Leftover, NetworkRecord, Stamped } from '../model/network';
import { parseAddress, type IpAddress } from '../net/address';
import {
  decodeEndpoint,
  decodeLease,
  decodeLeftover,
  decodeNetwork,
  decodePool,
  encodeEndpoint,
  encodeLease,
  encodeLeftover,
  encodeNetwork,
  encodePool,
} from './records';
import { checkMigratable, migrate, SCHEMA_VERSION, schemaVersion } from './schema';
import { checkStateDir, prepareStateDir } from './state-dir';
import type { IpamStore } from './ipam-store';
import type { LeaseStore } from './lease-store';
import type { LeaseRecord } from '../model/lease';
import type { LanSighting, LanSightings, Store } from './store';
import type { LostAddress, PendingPoolRelease, SharedPoolState } from './shared-state';

export const DATABASE_FILE = 'lanplug.db';

interface Row {
  id: string;
  record: string;
  created_at: number;
}

/** SqliteStore.figures. */
export interface StoreFigures {
  databaseBytes: number;
  /** 0 when there is no write-ahead log file (checkpointed and removed, or never written). */
  walBytes: number;
  /** Prepared statements the connection keeps (one per distinct query). */
  statements: number;
  rows: Record<string, number>;
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export class SqliteStore implements Store, IpamStore, LanSightings, LeaseStore, SharedPoolState {
  private readonly statements = new Map<string, Database.Statement>();
  /** A durable write happened inside the transaction that is open: fsync the WAL when it commits. */
  private syncOnCommit = false;
  private walFd: number | null = null;

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
      db.pragma('synchronous = NORMAL');
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

  /**
   * Networks as decoded, kept until a network is written: every request reads
   * its network, and only this daemon writes the file (the state lock).
   */
  private networkCache: Map<string, NetworkRecord & Stamped> | null = null;
  /** Counts writes to endpoints, so that readers can tell whether anything changed since they last looked. */
  private endpointWrites = 0;

  get endpointGeneration(): number {
    return this.endpointWrites;
  }

  getNetwork(networkId: string): (NetworkRecord & Stamped) | null {
    if (this.networkCache === null && !this.db.inTransaction && !this.db.readonly) this.listNetworks();
    if (this.networkCache !== null) return this.networkCache.get(networkId) ?? null;
    const row = this.stmt('SELECT id, record, created_at FROM networks WHERE id = ?').get(networkId) as Row | undefined;
    return row === undefined ? null : this.read('network', row, decodeNetwork);
  }

  listNetworks(): (NetworkRecord & Stamped)[] {
    if (this.networkCache !== null) return [...this.networkCache.values()];
    const rows = this.stmt('SELECT id, record, created_at FROM networks ORDER BY id').all() as Row[];
    const networks = rows.map((row) => this.read('network', row, decodeNetwork));
    // Cached only once every row decoded (a row that does not is an error at every read, never skipped),
    // and only outside a transaction (which may still roll back).
    if (!this.db.readonly && !this.db.inTransaction)
      this.networkCache = new Map(networks.map((n) => [n.spec.networkId, n]));
    return networks;
  }

  insertNetwork(record: NetworkRecord): void {
    const result = this.stmt('INSERT OR IGNORE INTO networks (id, record, created_at) VALUES (?, ?, ?)').run(
      record.spec.networkId,
      encodeNetwork(record),
      Date.now(),
    );
    if (result.changes === 0)
      throw new LanplugError('Conflict', `network ${record.spec.networkId} is already recorded`);
    this.networkCache = null;
    this.durable();
  }

  deleteNetwork(networkId: string): void {
    this.transaction(() => {
      this.stmt('DELETE FROM endpoints WHERE network_id = ?').run(networkId);
      this.stmt('DELETE FROM networks WHERE id = ?').run(networkId);
      this.networkCache = null;
      this.endpointWrites++;
      this.durable();
    });
  }

  /** Network id -> the Docker engine (its /info ID) seen to know it; networks no engine was seen to know are absent. */
  networkEngines(): Map<string, string> {
    const rows = this.stmt('SELECT id, docker_engine FROM networks WHERE docker_engine IS NOT NULL').all() as {
      id: string;
      docker_engine: string;
    }[];
    return new Map(rows.map((row) => [row.id, row.docker_engine]));
  }

  setNetworkEngine(networkId: string, engineId: string): void {
    this.stmt('UPDATE networks SET docker_engine = ? WHERE id = ?').run(engineId, networkId);
    this.durable();
  }

  getMeta(key: string): string | null {
    const row = this.stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value ?? null;
  }

  setMeta(key: string, value: string): void {
    this.stmt('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(
      key,
      value,
    );
    this.durable();
  }

  getEndpoint(networkId: string, endpointId: string): (EndpointRecord & Stamped) | null {
    const row = this.stmt(
      'SELECT endpoint_id AS id, record, created_at FROM endpoints WHERE network_id = ? AND endpoint_id = ?',
    ).get(networkId, endpointId) as Row | undefined;
    return row === undefined ? null : this.read('endpoint', row, decodeEndpoint);
  }

  listEndpoints(networkId: string): (EndpointRecord & Stamped)[] {
    const rows = this.stmt(
      'SELECT endpoint_id AS id, record, created_at FROM endpoints WHERE network_id = ? ORDER BY endpoint_id',
    ).all(networkId) as Row[];
    return rows.map((row) => this.read('endpoint', row, decodeEndpoint));
  }

  listAllEndpoints(): (EndpointRecord & Stamped)[] {
    const rows = this.stmt(
      'SELECT endpoint_id AS id, record, created_at FROM endpoints ORDER BY network_id, endpoint_id',
    ).all() as Row[];
    return rows.map((row) => this.read('endpoint', row, decodeEndpoint));
  }

  putEndpoint(record: EndpointRecord): void {
    try {
      // An endpoint written again (Docker retrying CreateEndpoint) keeps its first time.
      this.stmt(
        `INSERT INTO endpoints (network_id, endpoint_id, record, created_at, mac) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (network_id, endpoint_id) DO UPDATE SET record = excluded.record, mac = excluded.mac`,
      ).run(record.networkId, record.endpointId, encodeEndpoint(record), Date.now(), record.mac);
      this.endpointWrites++;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SQLITE_CONSTRAINT_UNIQUE' || record.mac === null) throw err;
      const holder = this.stmt('SELECT endpoint_id AS id FROM endpoints WHERE mac = ?').get(record.mac) as
        { id: string } | undefined;
      throw new LanplugError(
        'Conflict',
        `MAC address ${record.mac} is already used by endpoint ${(holder?.id ?? '?').slice(0, 12)}; give each container its own --mac-address`,
      );
    }
  }

  deleteEndpoint(networkId: string, endpointId: string): void {
    this.stmt('DELETE FROM endpoints WHERE network_id = ? AND endpoint_id = ?').run(networkId, endpointId);
    this.endpointWrites++;
  }

  listLeftovers(): Leftover[] {
    const rows = this.stmt('SELECT name AS id, record, 0 AS created_at FROM leftovers ORDER BY name').all() as Row[];
    return rows.map((row) => {
      const { createdAt: _unused, ...leftover } = this.read('leftover', row, decodeLeftover);
      return leftover;
    });
  }

  putLeftover(leftover: Leftover): void {
    this.stmt('INSERT OR REPLACE INTO leftovers (name, record) VALUES (?, ?)').run(
      leftover.name,
      encodeLeftover(leftover),
    );
  }

  deleteLeftover(name: string): void {
    this.stmt('DELETE FROM leftovers WHERE name = ?').run(name);
  }

  insertPool(pool: PoolRecord): void {
    const result = this.stmt('INSERT OR IGNORE INTO pools (id, record, created_at) VALUES (?, ?, ?)').run(
      pool.poolId,
      encodePool(pool),
      Date.now(),
    );
    if (result.changes === 0) throw new LanplugError('Conflict', `pool ${pool.poolId} is already recorded`);
    this.durable();
  }

  getPool(poolId: string): (PoolRecord & Stamped) | null {
    const row = this.stmt('SELECT id, record, created_at FROM pools WHERE id = ?').get(poolId) as Row | undefined;
    return row === undefined ? null : this.read('pool', row, decodePool);
  }

  listPools(): (PoolRecord & Stamped)[] {
    const rows = this.stmt('SELECT id, record, created_at FROM pools ORDER BY id').all() as Row[];
    return rows.map((row) => this.read('pool', row, decodePool));
  }

  deletePool(poolId: string): void {
    this.transaction(() => {
      this.stmt('DELETE FROM addresses WHERE pool_id = ?').run(poolId);
      this.stmt('DELETE FROM pools WHERE id = ?').run(poolId);
      this.durable();
    });
  }

  claimAddress(poolId: string, address: IpAddress, kind: AddressKind, owner?: string): boolean {
    const result = this.stmt(
      'INSERT OR IGNORE INTO addresses (pool_id, address, kind, created_at, owner) VALUES (?, ?, ?, ?, ?)',
    ).run(poolId, address.text, kind, Date.now(), owner ?? null);
    return result.changes === 1;
  }

  claimsOf(owner: string): { poolId: string; address: IpAddress }[] {
    const rows = this.stmt('SELECT pool_id, address FROM addresses WHERE owner = ?').all(owner) as {
      pool_id: string;
      address: string;
    }[];
    return rows.map((row) => ({ poolId: row.pool_id, address: parseAddress(row.address) }));
  }

  ownedClaims(prefix: string): { poolId: string; address: IpAddress; owner: string }[] {
    const rows = this.stmt(
      'SELECT pool_id, address, owner FROM addresses WHERE owner IS NOT NULL AND substr(owner, 1, ?) = ?',
    ).all(prefix.length, prefix) as { pool_id: string; address: string; owner: string }[];
    return rows.map((row) => ({ poolId: row.pool_id, address: parseAddress(row.address), owner: row.owner }));
  }

  poolsClaiming(address: IpAddress): string[] {
    const rows = this.stmt('SELECT pool_id FROM addresses WHERE address = ?').all(address.text) as {
      pool_id: string;
    }[];
    return rows.map((row) => row.pool_id);
  }

  releaseAddress(poolId: string, address: IpAddress): boolean {
    return this.stmt('DELETE FROM addresses WHERE pool_id = ? AND address = ?').run(poolId, address.text).changes === 1;
  }

  claimedAddresses(poolId: string): { address: IpAddress; kind: AddressKind }[] {
    const rows = this.stmt('SELECT address, kind FROM addresses WHERE pool_id = ?').all(poolId) as {
      address: string;
      kind: string;
    }[];
    return rows.map((row) => {
      const kind = row.kind;
      if (kind !== 'gateway' && kind !== 'requested' && kind !== 'aux' && kind !== 'allocated') {
        throw new LanplugError(
          'Internal',
          `${this.path}: address ${row.address} of pool ${poolId} has an unknown kind '${kind}'`,
        );
      }
      return { address: parseAddress(row.address), kind };
    });
  }

  dockerEndpointClaims(): { poolId: string; address: IpAddress; createdAt: number }[] {
    const rows = this.stmt(
      "SELECT pool_id, address, created_at FROM addresses WHERE owner IS NULL AND kind IN ('requested', 'allocated')",
    ).all() as { pool_id: string; address: string; created_at: number }[];
    return rows.map((row) => ({ poolId: row.pool_id, address: parseAddress(row.address), createdAt: row.created_at }));
  }

  getLease(networkId: string, endpointId: string): (LeaseRecord & Stamped) | null {
    const row = this.stmt(
      'SELECT endpoint_id AS id, record, created_at FROM leases WHERE network_id = ? AND endpoint_id = ?',
    ).get(networkId, endpointId) as Row | undefined;
    return row === undefined ? null : this.read('lease', row, decodeLease);
  }

  listLeases(): (LeaseRecord & Stamped)[] {
    const rows = this.stmt(
      'SELECT endpoint_id AS id, record, created_at FROM leases ORDER BY created_at',
    ).all() as Row[];
    return rows.map((row) => this.read('lease', row, decodeLease));
  }

  putLease(record: LeaseRecord, durable: boolean): void {
    this.transaction(() => {
      // A lease written again (renewed) keeps its first time.
      this.stmt(
        `INSERT INTO leases (network_id, endpoint_id, record, created_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (network_id, endpoint_id) DO UPDATE SET record = excluded.record`,
      ).run(record.networkId, record.endpointId, encodeLease(record), Date.now());
      if (durable) this.durable();
    });
  }

  moveLease(record: LeaseRecord, from: string): void {
    this.transaction(() => {
      this.deleteLease(record.networkId, from);
      this.putLease(record, true);
    });
  }

  deleteLease(networkId: string, endpointId: string): void {
    this.stmt('DELETE FROM leases WHERE network_id = ? AND endpoint_id = ?').run(networkId, endpointId);
  }

  rememberAddress(clientId: string, address: IpAddress): void {
    this.stmt(
      `INSERT INTO dhcp_last (client_id, address, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (client_id) DO UPDATE SET address = excluded.address, updated_at = excluded.updated_at`,
    ).run(clientId, address.text, Date.now());
  }

  lastAddress(clientId: string): IpAddress | null {
    const row = this.stmt('SELECT address FROM dhcp_last WHERE client_id = ?').get(clientId) as
      { address: string } | undefined;
    return row === undefined ? null : parseAddress(row.address);
  }

  recordSighting(s: Omit<LanSighting, 'firstSeen' | 'lastSeen'>, at: number): void {
    this.stmt(
      `INSERT INTO lan_seen (address, mac, how, network_id, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (address) DO UPDATE SET mac = excluded.mac, how = excluded.how, network_id = excluded.network_id,
           last_seen = excluded.last_seen, first_seen = CASE WHEN lan_seen.mac = excluded.mac THEN lan_seen.first_seen ELSE excluded.first_seen END`,
    ).run(s.address, s.mac, s.how, s.networkId, at, at);
  }

  listSightings(): LanSighting[] {
    const rows = this.stmt('SELECT * FROM lan_seen ORDER BY address').all() as {
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

  instanceId(): string {
    const read = (): string | undefined =>
      (this.stmt("SELECT value FROM meta WHERE key = 'instance'").get() as { value: string } | undefined)?.value;
    const found = read();
    if (found !== undefined) return found;
    this.stmt("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)").run(randomBytes(8).toString('hex'));
    this.durable();
    return read() ?? '';
  }

  listPoolReleases(): PendingPoolRelease[] {
    const rows = this.stmt('SELECT pool_id, error, failed_at FROM pool_releases ORDER BY pool_id').all() as {
      pool_id: string;
      error: string;
      failed_at: number;
    }[];
    return rows.map((r) => ({ poolId: r.pool_id, error: r.error, failedAt: r.failed_at }));
  }

  putPoolRelease(poolId: string, error: string, at: number): void {
    this.stmt(
      `INSERT INTO pool_releases (pool_id, error, failed_at) VALUES (?, ?, ?)
         ON CONFLICT (pool_id) DO UPDATE SET error = excluded.error`,
    ).run(poolId, error, at);
    this.durable();
  }

  deletePoolRelease(poolId: string): void {
    this.stmt('DELETE FROM pool_releases WHERE pool_id = ?').run(poolId);
  }

  listLostAddresses(): LostAddress[] {
    const rows = this.stmt('SELECT address AS id, record, noticed_at AS created_at FROM lost_addresses').all() as Row[];
    return rows.map((row) => {
      const { createdAt, ...lost } = this.read('lost address', row, decodeLostAddress);
      return { ...lost, noticedAt: createdAt };
    });
  }

  putLostAddress(lost: LostAddress): void {
    const { noticedAt, ...record } = lost;
    this.stmt('INSERT OR REPLACE INTO lost_addresses (address, record, noticed_at) VALUES (?, ?, ?)').run(
      lost.address,
      JSON.stringify(record),
      noticedAt,
    );
    // On disk before etcd's record of the reclaim is forgotten: the record is read once.
    this.durable();
  }

  deleteLostAddress(address: string): void {
    this.stmt('DELETE FROM lost_addresses WHERE address = ?').run(address);
  }

  isAddressLost(networkId: string, address: string): boolean {
    return (
      this.stmt("SELECT 1 FROM lost_addresses WHERE address = ? AND json_extract(record, '$.networkId') = ?").get(
        address,
        networkId,
      ) !== undefined
    );
  }

  transaction<T>(fn: () => T): T {
    const outermost = !this.db.inTransaction;
    try {
      const result = this.db.transaction(fn)();
      if (outermost && this.syncOnCommit) this.syncWal();
      return result;
    } catch (err) {
      // Rolled back: what was read or written inside may not be what is on disk.
      if (outermost) this.networkCache = null;
      throw err;
    } finally {
      if (outermost) this.syncOnCommit = false;
    }
  }

  /**
   * The database's size on disk (the file and its write-ahead log) and the rows of each table:
   * what the soak watches for growth (Lanplug.Stats).
   */
  figures(): StoreFigures {
    const tables = this.stmt("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
      name: string;
    }[];
    const rows: Record<string, number> = {};
    // Table names come from the schema itself, not from a caller: quoted, they are safe to put in the query.
    for (const { name } of tables)
      rows[name] = (this.stmt(`SELECT count(*) AS n FROM "${name.replace(/"/g, '""')}"`).get() as { n: number }).n;
    return {
      databaseBytes: sizeOf(this.path),
      walBytes: sizeOf(`${this.path}-wal`),
      statements: this.statements.size,
      rows,
    };
  }

  close(): void {
    if (this.walFd !== null) closeSync(this.walFd);
    this.walFd = null;
    if (this.db.open) this.db.close();
  }

  /** Prepared once per connection: preparing costs more than running most of these. */
  private stmt(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** The write just made must be on disk before the caller answers (at commit, inside a transaction). */
  private durable(): void {
    if (this.db.inTransaction) this.syncOnCommit = true;
    else this.syncWal();
  }

  /** What synchronous=FULL does at each commit, for the commits that need it: fsync the WAL. */
  private syncWal(): void {
    this.syncOnCommit = false;
    this.walFd ??= openSync(`${this.path}-wal`, 'r');
    fsyncSync(this.walFd);
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
