// SQLite implementations of the core stores (embedded mode), on one better-sqlite3 database.
// The replay table is written without an fsync per jti (WAL, synchronous=NORMAL): a process crash
// loses nothing; for power loss the DPoP verifier's boot fence refuses proofs older than start-up.
import Database from 'better-sqlite3';
import { pingSqlite } from './ping.ts';
import { ensurePrivateDbFile } from './private-file.ts';
import { WAL_RESTART_PAGES, WAL_SIZE_LIMIT_BYTES } from './wal-checkpointer.ts';
import { GateError } from '../errors.ts';
import type { ReplayStore, RevocationState, RevocationStore } from './types.ts';
import { TurnBatch, type Settled } from './turn-batch.ts';

export type SqliteDb = Database.Database;

/**
 * Opens (creating if needed) the embedded state database with the pragmas the stores rely on.
 * `checkpointThread: true`: a WalCheckpointer thread checkpoints this file, and a COMMIT checkpoints
 * only past WAL_RESTART_PAGES (src/stores/wal-checkpointer.ts).
 */
export function openStateDb(path: string, opts: { checkpointThread?: boolean } = {}): SqliteDb {
  ensurePrivateDbFile(path);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  if (opts.checkpointThread) db.pragma(`wal_autocheckpoint = ${WAL_RESTART_PAGES}`);
  // A WAL that grew (a held snapshot) is cut back when it starts over (wal-checkpointer.ts).
  db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
  db.exec(`
    CREATE TABLE IF NOT EXISTS replay (k TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS replay_exp ON replay(expires_at);
    CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS revoked (k TEXT PRIMARY KEY, v INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
  `);
  return db;
}

interface ReplayMark {
  key: string;
  /** The clock reading the mark is judged on (the caller's, when it passes one): expiry counts from it. */
  now: number;
  ttlMs: number;
}

const replayRefusal = (e: unknown) => new GateError('replay_cache_unavailable', 'sqlite replay store failed', { cause: e });

/**
 * jti replay marks in the state database, judged on the caller's clock reading (the DPoP verifier
 * passes the one it checked freshness on). The marks asked for in one event-loop turn are written
 * together, in one transaction at the end of the turn (TurnBatch), and each caller is answered
 * only after that commit: a proof's jti is on disk (WAL, no fsync) before its request goes on,
 * exactly as with one transaction per mark, and a busy gate commits once for several proofs
 * (≈ 2.7 per turn at 16 concurrent calls). Marks are applied in arrival order, so the same jti
 * twice in one batch is fresh once and a replay once. A failed commit refuses every mark in it.
 */
export class SqliteReplayStore implements ReplayStore {
  private lastPurge = 0;
  readonly #batch: TurnBatch<ReplayMark, boolean>;

  /** `alone`: true when a mark may commit at once instead of with its turn's batch (TurnBatch). */
  constructor(private readonly db: SqliteDb, private readonly now: () => number = Date.now, alone?: () => boolean) {
    // An expired row is replaced (ON CONFLICT ... WHERE expired), a live one is not: changes = 0 means replay.
    const insert = db.prepare('INSERT INTO replay (k, expires_at) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET expires_at = excluded.expires_at WHERE replay.expires_at <= ?');
    const purge = db.prepare('DELETE FROM replay WHERE expires_at <= ?');
    const write = db.transaction((marks: readonly ReplayMark[]) => {
      const first = marks[0]!.now;
      if (first - this.lastPurge > 10_000) {
        purge.run(first);
        this.lastPurge = first;
      }
      return marks.map((m): Settled<boolean> => ({ ok: true, value: insert.run(m.key, m.now + m.ttlMs, m.now).changes === 1 }));
    });
    this.#batch = new TurnBatch((marks) => write.immediate(marks), replayRefusal, alone);
  }

  markUsed(key: string, ttlMs: number, nowMs?: number): Promise<boolean> {
    let now: number;
    try {
      now = nowMs ?? this.now();
    } catch (e) {
      return Promise.reject(replayRefusal(e));
    }
    // A reading that is not a finite time would expire (or purge) every mark: refuse it.
    if (!Number.isFinite(now) || !Number.isFinite(ttlMs) || ttlMs <= 0) return Promise.reject(replayRefusal(new RangeError('unusable clock reading or ttl')));
    return this.#batch.add({ key, now, ttlMs });
  }

  async close(): Promise<void> {}
}

export class SqliteRevocationStore implements RevocationStore {
  private readonly getKv: Database.Statement;
  private readonly getRevoked: Database.Statement;
  private readonly advance: () => [number, number];

  constructor(private readonly db: SqliteDb, private readonly now: () => number = Date.now) {
    this.getKv = db.prepare("SELECT v FROM kv WHERE k = 'epoch'");
    this.getRevoked = db.prepare('SELECT v FROM revoked WHERE k = ? AND expires_at > ?');
    const upsert = db.prepare("INSERT INTO kv (k, v) VALUES ('epoch', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v");
    this.advance = db.transaction(() => {
      const cur = Number((this.getKv.get() as { v: string } | undefined)?.v ?? 0);
      upsert.run(String(cur + 1));
      return [cur, cur + 1] as [number, number];
    }).immediate;
  }

  private fail(e: unknown): never {
    throw new GateError('epoch_store_unavailable', 'sqlite revocation store failed', { cause: e });
  }

  async currentEpoch(): Promise<number> {
    try { return Number((this.getKv.get() as { v: string } | undefined)?.v ?? 0); } catch (e) { this.fail(e); }
  }

  async advanceEpoch(): Promise<[number, number]> {
    try {
      // The kill switch must survive power loss: this one commit is fsynced (synchronous=FULL)
      // before it is acknowledged. (A forced checkpoint is no substitute: it answers busy, having
      // done nothing, while a WalCheckpointer thread is checkpointing the same file.)
      this.db.pragma('synchronous = FULL');
      try {
        return this.advance();
      } finally {
        this.db.pragma('synchronous = NORMAL');
      }
    } catch (e) { this.fail(e); }
  }

  async state(sessionId: string, principal: string): Promise<RevocationState> {
    try {
      const now = this.now();
      const ses = this.getRevoked.get(`session:${sessionId}`, now) as { v: number } | undefined;
      const pri = this.getRevoked.get(`principal:${principal}`, now) as { v: number } | undefined;
      return { epoch: await this.currentEpoch(), sessionRevoked: ses !== undefined, principalRevokedBefore: pri?.v ?? 0 };
    } catch (e) { this.fail(e); }
  }

  async revokeSession(sessionId: string, ttlMs: number): Promise<void> {
    try {
      this.db.prepare('INSERT INTO revoked (k, v, expires_at) VALUES (?, 1, ?) ON CONFLICT(k) DO UPDATE SET expires_at = excluded.expires_at')
        .run(`session:${sessionId}`, this.now() + ttlMs);
    } catch (e) { this.fail(e); }
  }

  async revokePrincipal(principal: string, atMs: number, ttlMs: number): Promise<void> {
    try {
      this.db.prepare('INSERT INTO revoked (k, v, expires_at) VALUES (?, ?, ?) ON CONFLICT(k) DO UPDATE SET v = max(revoked.v, excluded.v), expires_at = max(revoked.expires_at, excluded.expires_at)')
        .run(`principal:${principal}`, atMs, this.now() + ttlMs);
    } catch (e) { this.fail(e); }
  }

  async ping(): Promise<boolean> {
    return pingSqlite(this.db);
  }

  async close(): Promise<void> {}
}
