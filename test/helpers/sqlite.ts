// One temp SQLite file opened by several connections (WAL), as separate store instances or
// processes would; close() closes every connection and removes the file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export function sharedSqliteFile(prefix: string): { file: string; connect(): Database.Database; close(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const file = join(dir, 'state.db');
  const dbs: Database.Database[] = [];
  return {
    file,
    connect() {
      const db = new Database(file);
      db.pragma('journal_mode = WAL');
      dbs.push(db);
      return db;
    },
    close() {
      for (const db of dbs) if (db.open) db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
