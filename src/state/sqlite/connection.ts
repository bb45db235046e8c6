/**
 * The SQLite connection every table of the store shares (better-sqlite3:
 * synchronous, so one request's reads and writes never interleave with
 * another's): opening the file and moving its schema forward, prepared
 * statements, transactions, and the fsync of the WAL after writes that
 * must outlive the machine.
 *
 * Opening moves the schema forward (schema.ts); a file that is newer,
 * foreign or damaged stops the daemon with one line naming it, and is never
 * rewritten; one its file system has no inode or no room left to open is
 * one line saying what to free. A write its file system has no room for is
 * one line that names the state directory (isNoRoom); nothing of it is
 * recorded. A write SQLite committed is done, even when the fsync lanplug
 * adds after it fails (syncCommitted).
 */
import Database from 'better-sqlite3';
import { closeSync, fsyncSync, openSync, statfsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LanplugError, NO_ROOM_ERRNO } from '../../errors';
import { createLogger, type Logger } from '../../log';
import { shortId, type Stamped } from '../../model/network';
import { checkMigratable, migrate, SCHEMA_VERSION, schemaVersion } from '../schema';
import { checkStateDir, prepareStateDir } from '../state-dir';

export const DATABASE_FILE = 'lanplug.db';

/**
 * The fsyncs after a commit that failed (syncCommitted), kept until the daemon stops: a later
 * fsync that succeeds proves nothing for the pages the failed one lost (Linux reports a writeback
 * error once). Kept for `lanplug doctor` (the control socket's Lanplug.SyncFailure), since the one
 * error line is easily missed and the disk is what the operator must look at: since when it has
 * been failing, how often, and the last failure. Times are ms since the epoch (for the operator,
 * compared with nothing).
 */
export interface SyncFailure {
  /** When the first failed: since when the disk has been failing. */
  since: number;
  /** How many failed since the daemon started, the first included. */
  count: number;
  /** When the last failed (the field older daemons answered alone). */
  at: number;
  /** The last one's errno name (EIO, ENOSPC, ...), or its message when there is none. */
  code: string;
  /** The file whose last failed fsync was: the database's write-ahead log. */
  path: string;
}

/** The kernel's words for a process (EMFILE) or the system (ENFILE) out of file descriptors. */
const NO_DESCRIPTOR_CODES = new Set(['EMFILE', 'ENFILE']);

/** What the connection fsyncs with: the real fsync but where a test makes the disk fail. */
export type Fsync = (fd: number) => void;

/** A row of a table that keeps each record as JSON, with its id and creation time. */
export interface Row {
  id: string;
  record: string;
  created_at: number;
}

export class SqliteConnection {
  private readonly statements = new Map<string, Database.Statement>();
  /** A durable write happened inside the transaction that is open: fsync the WAL when it commits. */
  private syncOnCommit = false;
  private walFd: number | null = null;
  /** What a table cached from reads inside a transaction that rolled back must forget. */
  private readonly rollbackHooks: (() => void)[] = [];
  private failedSyncs: SyncFailure | null = null;

  private constructor(
    private readonly db: Database.Database,
    /** For messages: the database file. */
    readonly path: string,
    /** The schema version the file had before it was opened (0: new). */
    readonly foundVersion: number,
    private readonly log: Logger,
    private readonly fsync: Fsync = fsyncSync,
  ) {}

  /**
   * Opens `<stateDir>/lanplug.db` for the daemon: the directory is created
   * 0700 when missing and refused when others could write to it; the schema
   * is brought to the current version. `log`: where a commit the disk did not confirm is reported;
   * `fsync`: what confirms it (tests make it fail).
   */
  static open(stateDir: string, log: Logger = createLogger('error'), fsync: Fsync = fsyncSync): SqliteConnection {
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
      return new SqliteConnection(db, path, found, log, fsync);
    } catch (err) {
      db.close();
      throw explainOpenFailure(path, err);
    }
  }

  /** Opens an existing database without creating or migrating anything (status, doctor). */
  static openReadOnly(stateDir: string): SqliteConnection {
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
      return new SqliteConnection(db, path, version, createLogger('error'));
    } catch (err) {
      db.close();
      throw explainOpenFailure(path, err);
    }
  }

  /** The fsyncs after a commit that failed since the daemon opened the store (syncCommitted). */
  get syncFailure(): SyncFailure | null {
    return this.failedSyncs;
  }

  get inTransaction(): boolean {
    return this.db.inTransaction;
  }

  get readonly(): boolean {
    return this.db.readonly;
  }

  /** Prepared statements kept (one per distinct query): a figure the soak watches. */
  get statementCount(): number {
    return this.statements.size;
  }

  /** Prepared once per connection: preparing costs more than running most of these. */
  stmt(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** Runs a statement that writes; a file system with no room left for it is one line naming the state directory. */
  write(sql: string, ...params: unknown[]): Database.RunResult {
    try {
      return this.stmt(sql).run(...params);
    } catch (err) {
      throw explainWriteFailure(this.path, err);
    }
  }

  /** The write just made must be on disk before the caller answers (at commit, inside a transaction). */
  durable(): void {
    if (this.db.inTransaction) this.syncOnCommit = true;
    else this.syncCommitted();
  }

  /** A row that does not decode is an error that names it: never an invisible network. */
  read<T>(what: string, row: Row, decode: (text: string) => T): T & Stamped {
    try {
      return { ...decode(row.record), createdAt: row.created_at };
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new LanplugError(
        'Internal',
        `${this.path}: the ${what} row ${what === 'leftover' ? row.id : shortId(row.id)} cannot be read (${why}); ` +
          'it was written by another version of lanplug or damaged: lanplug will not guess what it meant',
      );
    }
  }

  /** `forget` runs when the outermost transaction rolls back: what was read or written inside may not be on disk. */
  onRollback(forget: () => void): void {
    this.rollbackHooks.push(forget);
  }

  transaction<T>(fn: () => T): T {
    const outermost = !this.db.inTransaction;
    let result: T;
    let sync = false;
    try {
      result = this.db.transaction(fn)();
      sync = outermost && this.syncOnCommit;
    } catch (err) {
      if (outermost) for (const forget of this.rollbackHooks) forget();
      // The commit itself can meet a full file system too.
      throw explainWriteFailure(this.path, err);
    } finally {
      if (outermost) this.syncOnCommit = false;
    }
    // Committed: from here on, nothing undoes it (syncCommitted).
    if (sync) this.syncCommitted();
    return result;
  }

  close(): void {
    if (this.walFd !== null) closeSync(this.walFd);
    this.walFd = null;
    if (this.db.open) this.db.close();
  }

  /**
   * What synchronous=FULL does at each commit, for the commits that need it: fsync the WAL; but
   * after the commit, not inside it. When that fsync fails (EIO from a failing disk; ENOSPC from a
   * thin-provisioned one that ran out), the write is done all the same and the request is answered
   * as done, with one error line for the operator. SQLite committed it before lanplug's fsync:
   * every read from now on sees it (this connection's, `lanplug status`'s), and a crash of the
   * daemon keeps it (the WAL's pages stay in the kernel's cache); a power loss may take it.
   * Answered as failed, it would be undone nowhere: Docker forgets an endpoint or network whose
   * create failed while lanplug kept its row (the periodic check dropped it minutes later, and
   * meanwhile its address and MAC were refused to the next container), and a DHCP endpoint gave
   * its lease back to the server while its lease row stayed, to be renewed after a restart.
   * Trying the fsync again would prove nothing: Linux reports a writeback error to each open file
   * once, and the next fsync succeeds without the pages it lost.
   * (synchronous=FULL would move the doubt, not remove it: its commit fails at SQLite's own fsync,
   * SQLITE_IOERR_FSYNC, with the frames already written to the WAL, and after an I/O error SQLite
   * says a transaction may or may not have been rolled back. Here it is certain: committed, then
   * synced. SQLite's other fsyncs: a WAL started anew syncs its header inside the commit, which
   * then fails as a whole (nothing recorded, the request fails: they agree); an automatic
   * checkpoint's failure is ignored by SQLite after the commit.)
   * A daemon out of file descriptors cannot open the WAL to fsync it: that is no disk failure (the
   * pages wait in the kernel's cache, and the next fsync that opens the file confirms them), and
   * is said as what it is, not recorded as a SyncFailure.
   */
  private syncCommitted(): void {
    this.syncOnCommit = false;
    const wal = `${this.path}-wal`;
    try {
      this.walFd ??= openSync(wal, 'r');
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      const error = err instanceof Error ? err.message : String(err);
      if (typeof code === 'string' && NO_DESCRIPTOR_CODES.has(code)) {
        this.log.error(
          `lanplug is out of file descriptors (${code}): it could not open the database's write-ahead log to confirm a write; the database has it and the next confirmed write confirms it too, but until then a power loss may take it; raise the daemon's descriptor limit (LimitNOFILE=) or find what holds its descriptors (ls -l /proc/<the daemon's pid>/fd)`,
          { path: wal, error },
        );
        return;
      }
      this.recordSyncFailure(wal, err);
      return;
    }
    try {
      // A success after a failure clears nothing (see SyncFailure): the warning lasts until a restart.
      this.fsync(this.walFd);
    } catch (err) {
      this.recordSyncFailure(wal, err);
    }
  }

  /** A failed fsync after a commit (or open of the file to fsync): counted, kept (the first's time too), and logged. */
  private recordSyncFailure(wal: string, err: unknown): void {
    const error = err instanceof Error ? err.message : String(err);
    const code = (err as { code?: unknown } | null)?.code;
    const at = Date.now();
    this.failedSyncs = {
      since: this.failedSyncs?.since ?? at,
      count: (this.failedSyncs?.count ?? 0) + 1,
      at,
      code: typeof code === 'string' ? code : error,
      path: wal,
    };
    this.log.error(
      "the state directory's disk did not confirm a write: lanplug keeps it (the database has it) and answered as done, but a power loss may take it; check the disk (dmesg)",
      { path: this.path, error },
    );
  }
}

function openFile(path: string, options: Database.Options): Database.Database {
  try {
    return new Database(path, options);
  } catch (err) {
    throw explainOpenFailure(path, err);
  }
}

/** SQLite's and the kernel's words for a file system with no room left. */
const NO_ROOM_CODES = new Set(['SQLITE_FULL', 'ENOSPC', 'EDQUOT']);

/**
 * A write the state directory's file system had no room for, as one line that names the directory and
 * what to do (SQLite's own "database or disk is full" named neither); other failures unchanged. SQLite
 * rolled the statement back: nothing of it was recorded. Its errno marks it for isNoRoom (errors.ts).
 */
function explainWriteFailure(databasePath: string, err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !NO_ROOM_CODES.has(code)) return err;
  const dir = dirname(databasePath);
  const message = err instanceof Error ? err.message : String(err);
  return new LanplugError(
    'Environment',
    `lanplug could not write to its state directory ${dir}: its file system is full (${message}); free space there (df ${dir}), then try again`,
    { errno: NO_ROOM_ERRNO, cause: err },
  );
}

/** One line that names the file and says what to do. */
function explainOpenFailure(path: string, err: unknown): LanplugError {
  if (err instanceof LanplugError && err.message.startsWith(path)) return err;
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  const noRoom = typeof code === 'string' && /^SQLITE_(CANTOPEN|IOERR|FULL)/.test(code) ? noRoomToOpen(path) : null;
  if (noRoom !== null)
    return new LanplugError('Environment', `${path} cannot be opened (${message}): ${noRoom}`, {
      errno: NO_ROOM_ERRNO,
      cause: err,
    });
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

/** Below this much room, an open that failed is put down to it (the -shm file alone takes 32 KiB). */
const OPEN_ROOM_BYTES = 256 << 10;

/**
 * What the database's file system lacks to open it, as advice, or null. SQLite makes its -wal and
 * -shm files beside the database when it opens it (the daemon's clean stop removed them): with no
 * inode left that fails as "unable to open database file", with no room as "disk I/O error".
 */
function noRoomToOpen(path: string): string | null {
  const dir = dirname(path);
  let fs;
  try {
    fs = statfsSync(dir);
  } catch {
    return null;
  }
  // files 0: a file system that does not count inodes (btrfs).
  if (fs.files > 0 && fs.ffree === 0)
    return `its file system has no free inode left, and SQLite makes its -wal and -shm files beside it; remove files there to free some (df -i ${dir}), then try again`;
  if (fs.bfree * fs.bsize < OPEN_ROOM_BYTES)
    return `its file system is full, and SQLite makes its -wal and -shm files beside it; free space there (df ${dir}), then try again`;
  return null;
}
