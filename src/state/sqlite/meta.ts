/**
 * Small facts about this state directory, by key: its link groups, the
 * Docker engine its networks came from, and its instance id (made once, the
 * same after every restart: a shared-pool host's registration names it).
 */
import { randomBytes } from 'node:crypto';
import type { SqliteConnection } from './connection';

export class MetaTable {
  constructor(private readonly c: SqliteConnection) {}

  getMeta(key: string): string | null {
    const row = this.c.stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value ?? null;
  }

  setMeta(key: string, value: string): void {
    this.c.write(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      key,
      value,
    );
    this.c.durable();
  }

  instanceId(): string {
    const read = (): string | undefined =>
      (this.c.stmt("SELECT value FROM meta WHERE key = 'instance'").get() as { value: string } | undefined)?.value;
    const found = read();
    if (found !== undefined) return found;
    this.c.write("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)", randomBytes(8).toString('hex'));
    this.c.durable();
    return read() ?? '';
  }
}
