// SQLite Idempotency-Key store (embedded): begin, finish and release are each one IMMEDIATE
// transaction on the state database, so exactly one request owns a key, across connections.
import type Database from 'better-sqlite3';
import { pingSqlite } from '../stores/ping.ts';
import { systemClock, type Clock } from '../contracts.ts';
import { checkArgs, checkResponse, conflict, inProgress, newToken, parseBody, storageKey, ttls, unavailable } from './common.ts';
import type { IdempotencyBegin, IdempotencyStore, IdempotencyStoreOptions, IdempotentResponse } from './types.ts';

export interface SqliteIdempotencyStoreOptions extends IdempotencyStoreOptions {
  clock?: Clock;
}

/** Creates the idempotency table if missing (idempotent). */
export function migrateSqliteIdempotency(db: Database.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS idempotency_keys (k TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
      token TEXT, status INTEGER, body TEXT, expires_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS idempotency_keys_exp ON idempotency_keys(expires_at);
  `);
}

interface Row { fingerprint: string; state: string; token: string | null; status: number | null; body: string | null }
type BeginResult = { kind: 'new' } | { kind: 'conflict' } | { kind: 'in_progress' } | { kind: 'replay'; status: number; body: string };

function prepare(db: Database.Database) {
  return {
    get: db.prepare('SELECT fingerprint, state, token, status, body FROM idempotency_keys WHERE k = ? AND expires_at > ?'),
    put: db.prepare(`INSERT INTO idempotency_keys (k, fingerprint, state, token, status, body, expires_at) VALUES (?, ?, 'running', ?, NULL, NULL, ?)
      ON CONFLICT(k) DO UPDATE SET fingerprint = excluded.fingerprint, state = 'running', token = excluded.token, status = NULL, body = NULL,
      expires_at = excluded.expires_at`),
    done: db.prepare("UPDATE idempotency_keys SET state = 'done', token = NULL, status = ?, body = ?, expires_at = ? WHERE k = ?"),
    del: db.prepare('DELETE FROM idempotency_keys WHERE k = ?'),
    purge: db.prepare('DELETE FROM idempotency_keys WHERE expires_at <= ?'),
  };
}

export class SqliteIdempotencyStore implements IdempotencyStore {
  private readonly clock: Clock;
  private readonly ttlMs: number;
  private readonly lockMs: number;
  private readonly beginTx: (k: string, fp: string, token: string) => BeginResult;
  private readonly finishTx: (k: string, fp: string, token: string | undefined, status: number, body: string) => boolean;
  private readonly releaseTx: (k: string, fp: string, token: string | undefined) => boolean;
  private lastPurge = 0;

  /** `db` is owned by the caller. */
  constructor(private readonly db: Database.Database, options: SqliteIdempotencyStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
    ({ ttlMs: this.ttlMs, lockMs: this.lockMs } = ttls(options));
    if (db.pragma('busy_timeout', { simple: true }) === 0) db.pragma('busy_timeout = 5000');
    migrateSqliteIdempotency(db);
    const st = prepare(db);
    const held = (k: string, fp: string, token: string | undefined, now: number): boolean => {
      const row = st.get.get(k, now) as Row | undefined;
      return !!row && row.state === 'running' && row.fingerprint === fp && (token === undefined || row.token === token);
    };
    const begin = db.transaction((k: string, fp: string, token: string): BeginResult => {
      const now = this.clock.now();
      if (now - this.lastPurge > 60_000) {
        st.purge.run(now);
        this.lastPurge = now;
      }
      const row = st.get.get(k, now) as Row | undefined;
      if (!row) {
        st.put.run(k, fp, token, now + this.lockMs);
        return { kind: 'new' };
      }
      if (row.fingerprint !== fp) return { kind: 'conflict' };
      if (row.state === 'running') return { kind: 'in_progress' };
      return { kind: 'replay', status: row.status ?? 0, body: row.body ?? '' };
    });
    this.beginTx = (k, fp, token) => begin.immediate(k, fp, token);
    const finish = db.transaction((k: string, fp: string, token: string | undefined, status: number, body: string): boolean => {
      const now = this.clock.now();
      if (!held(k, fp, token, now)) return false;
      st.done.run(status, body, now + this.ttlMs, k);
      return true;
    });
    this.finishTx = (...a) => finish.immediate(...a);
    const release = db.transaction((k: string, fp: string, token: string | undefined): boolean => {
      if (!held(k, fp, token, this.clock.now())) return false;
      st.del.run(k);
      return true;
    });
    this.releaseTx = (...a) => release.immediate(...a);
  }

  private run<T>(op: () => T): T {
    try {
      return op();
    } catch (e) {
      unavailable(e);
    }
  }

  async begin(scope: string, key: string, fingerprint: string): Promise<IdempotencyBegin> {
    checkArgs(scope, key, fingerprint);
    const token = newToken();
    const r = this.run(() => this.beginTx(storageKey(scope, key), fingerprint, token));
    switch (r.kind) {
      case 'new': return { state: 'new', token };
      case 'conflict': throw conflict();
      case 'in_progress': throw inProgress();
      case 'replay': return { state: 'replay', response: { status: r.status, body: this.run(() => parseBody(r.body)) } };
    }
  }

  async finish(scope: string, key: string, fingerprint: string, response: IdempotentResponse, token?: string): Promise<boolean> {
    checkArgs(scope, key, fingerprint);
    const body = checkResponse(response);
    return this.run(() => this.finishTx(storageKey(scope, key), fingerprint, token, response.status, body));
  }

  async release(scope: string, key: string, fingerprint: string, token?: string): Promise<boolean> {
    checkArgs(scope, key, fingerprint);
    return this.run(() => this.releaseTx(storageKey(scope, key), fingerprint, token));
  }

  async ping(): Promise<boolean> {
    return pingSqlite(this.db);
  }

  /** The database belongs to the caller. */
  async close(): Promise<void> {}
}
