/**
 * The database's size on disk (the file and its write-ahead log), the
 * prepared statements kept and the rows of each table: what the soak watches
 * for growth (Lanplug.Stats); and whether the disk still confirms writes
 * (`lanplug doctor`).
 */
import { statSync } from 'node:fs';
import type { SqliteConnection, SyncFailure } from './connection';

export interface StoreFigures {
  databaseBytes: number;
  /** 0 when there is no write-ahead log file (checkpointed and removed, or never written). */
  walBytes: number;
  /** Prepared statements the connection keeps (one per distinct query). */
  statements: number;
  rows: Record<string, number>;
  /** The fsyncs after a commit that failed since the daemon started (doctor's state directory check). */
  syncFailure: SyncFailure | null;
}

export function storeFigures(c: SqliteConnection): StoreFigures {
  const tables = c.stmt("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
    name: string;
  }[];
  const rows: Record<string, number> = {};
  // Table names come from the schema itself, not from a caller: quoted, they are safe in the query.
  for (const { name } of tables)
    rows[name] = (c.stmt(`SELECT count(*) AS n FROM "${name.replace(/"/g, '""')}"`).get() as { n: number }).n;
  return {
    databaseBytes: sizeOf(c.path),
    walBytes: sizeOf(`${c.path}-wal`),
    statements: c.statementCount,
    rows,
    syncFailure: c.syncFailure,
  };
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
