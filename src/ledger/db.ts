// The kysely database behind the ledger (and any other store that wants durable SQL): PostgreSQL
// through a pg Pool in production, embedded SQLite (better-sqlite3, WAL, synchronous=FULL) otherwise.
// One schema for both; migrations are registered by name and applied once, under a lock, in a transaction.
import { realpathSync } from 'node:fs';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import type { LedgerTables } from './schema.ts';
import { WAL_RESTART_PAGES, WAL_SIZE_LIMIT_BYTES } from '../stores/wal-checkpointer.ts';
import { ensurePrivateDbFile } from '../stores/private-file.ts';

export type Dialect = 'sqlite' | 'postgres';
export type ReceiptFsync = 'before_reply' | 'after_reply';

/** Where and how the SQLite writer thread (src/ledger/writer-thread.ts) opens the file. */
export interface WriterThreadConfig {
  path: string;
  busyTimeoutMs: number;
  receiptFsync: ReceiptFsync;
  /** @internal tests only: the post-reply WAL fsync throws. */
  faultWalSync?: boolean;
}

export type DatabaseConfig =
  | {
    kind: 'sqlite';
    /** Database file; created with mode 0600 when missing. */
    path: string;
    /** Milliseconds to wait for another process's write lock (default 5000). */
    busyTimeoutMs?: number;
    /**
     * Run the ledger's write transactions on a worker thread with its own connection, so their
     * SQLite work and fsync leave the event loop (default false; the gate turns it on).
     */
    writerThread?: boolean;
    /**
     * With the writer thread: when a batch holding only receipt finalizations is fsynced.
     * `before_reply` (default): before the gate learns it committed, like every other write.
     * `after_reply`: the commit is acknowledged once written (it survives a gate crash), and the
     * thread fsyncs it immediately after, before it runs anything else; a power loss within that
     * fsync can lose the finalization, which then shows as an unresolved intent (docs/ledger.md, "When a write is durable").
     * Intents, audit events and anything batched with them are always fsynced before the reply.
     */
    receiptFsync?: ReceiptFsync;
    /** @internal tests only: the writer thread's post-reply WAL fsync throws. */
    faultWalSync?: boolean;
  }
  | {
    kind: 'postgres';
    /** libpq-style URL, e.g. `postgresql://gate@/portcullis?host=/run/postgresql`. */
    connectionString: string;
    /** Pool size (default 10). */
    poolSize?: number;
    /** Server-side statement_timeout and lock_timeout in ms (default 15000): a stuck DB fails closed. */
    statementTimeoutMs?: number;
    /** Milliseconds to wait for a connection (default 5000). */
    connectTimeoutMs?: number;
  };

// A migration touches tables owned by many modules, so it is typed loosely on purpose.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type MigrationDb = Kysely<any>;

/** One schema change. `up` runs inside the migration transaction; it must work on both dialects. */
export interface Migration {
  up(db: MigrationDb, dialect: Dialect): Promise<void>;
}

/** COMMIT itself failed: the outcome is unknown (it may have been applied). Never retried. */
export class CommitError extends Error {
  constructor(cause: unknown) {
    super('commit failed; outcome unknown', { cause });
    this.name = 'CommitError';
  }
}

const MIGRATION_NAME = /^[a-z][a-z0-9_-]*\/[0-9]{4}_[a-z0-9_]+$/;

/** Advisory-lock keys (PostgreSQL): fixed 63-bit constants derived from their names. */
export const ADVISORY_LOCK = {
  /** Serializes every hash-chain append across all gate instances sharing one database. */
  ledgerAppend: 0x706f_7274_6c65_6467n, // "portledg"
  migrations: 0x706f_7274_6d69_6772n, // "portmigr"
} as const;

/** Cached prepared statements on the raw SQLite connection (see {@link LedgerDatabase.sqliteTransaction}). */
export interface RawSqlite {
  prepare(sql: string): Database.Statement;
}

export interface TransactionOptions {
  /** PostgreSQL: take `pg_advisory_xact_lock(key)` right after BEGIN (released at commit/rollback). */
  advisoryLock?: bigint;
}

/**
 * An open database. `db` is the kysely instance other modules share (extend its type with
 * `db.withTables<YourTables>()`); register your tables with {@link registerMigration} + {@link migrate}.
 */
export class LedgerDatabase {
  readonly db: Kysely<LedgerTables>;
  readonly dialect: Dialect;
  readonly #migrations = new Map<string, Migration>();
  readonly #closers: Array<() => Promise<void> | void> = [];
  readonly #onClose: () => void;
  readonly #raw: RawSqlite | undefined;
  /** SQLite with a writer thread: where that thread opens the file. */
  readonly writerThread: WriterThreadConfig | undefined;
  #closed = false;

  /** @internal use {@link openDatabase}. */
  constructor(
    db: Kysely<LedgerTables>, dialect: Dialect, onClose: () => void = () => undefined, raw?: RawSqlite,
    writerThread?: WriterThreadConfig,
  ) {
    this.db = db;
    this.dialect = dialect;
    this.#onClose = onClose;
    this.#raw = raw;
    this.writerThread = writerThread;
  }

  /** True once {@link close} ran: every query and transaction fails. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True when {@link sqliteTransaction} is available (an SQLite database opened by {@link openDatabase}). */
  get hasRawSqlite(): boolean {
    return this.#raw !== undefined;
  }

  /**
   * SQLite only: runs `fn` between `BEGIN IMMEDIATE` and `COMMIT` on the raw connection with cached
   * prepared statements (no query building on the hot path). kysely's connection is held for the
   * whole transaction, so no other query of this process can interleave with it. Rolls back on
   * any error; a failed COMMIT is a {@link CommitError}. `synchronous: 'NORMAL'`: this commit is
   * not fsynced (the caller fsyncs the WAL after it).
   */
  async sqliteTransaction<T>(fn: (raw: RawSqlite) => Promise<T>, options: { synchronous?: 'NORMAL' } = {}): Promise<T> {
    if (this.#closed) throw new Error('database is closed');
    const raw = this.#raw;
    if (!raw) throw new TypeError('sqliteTransaction needs an SQLite database');
    if (options.synchronous !== 'NORMAL') return this.db.connection().execute(() => rawTransaction(raw, fn));
    // This one commit is not fsynced (SQLite refuses to change the level inside a transaction, so
    // it is set around it); the caller syncs the WAL itself. The connection's FULL comes back after.
    return this.db.connection().execute(async () => {
      raw.prepare('pragma synchronous = NORMAL').run();
      try {
        return await rawTransaction(raw, fn);
      } finally {
        raw.prepare('pragma synchronous = FULL').run();
      }
    });
  }

  /**
   * Registers a migration under a unique name `<owner>/<nnnn>_<what>` (e.g. `approvals/0001_init`).
   * Pending migrations run in name order. Registering a name twice with a different object is a bug.
   */
  registerMigration(name: string, migration: Migration): void {
    if (!MIGRATION_NAME.test(name)) throw new TypeError(`migration name must match <owner>/<nnnn>_<what>: ${name}`);
    const existing = this.#migrations.get(name);
    if (existing && existing !== migration) throw new TypeError(`migration ${name} registered twice`);
    this.#migrations.set(name, migration);
  }

  /**
   * Applies every registered migration not yet recorded, all in one transaction under a lock
   * (PostgreSQL advisory lock; SQLite IMMEDIATE), so concurrent gate start-ups apply each once.
   * Returns the names applied. Migrations recorded but not registered here are left alone.
   */
  async migrate(): Promise<string[]> {
    if (this.dialect !== 'sqlite') return this.db.connection().execute((conn) => this.#migrate(conn));
    // SQLite's procedure for a change that rebuilds tables (sqlite.org/lang_altertable.html, "other
    // kinds of table schema changes"): foreign keys off around the transaction (the pragma is a
    // no-op inside one), and every foreign key checked before it commits. The one connection is
    // held from pragma to pragma, so no other query can run while foreign keys are off.
    return this.db.connection().execute(async (conn) => {
      await sql`pragma foreign_keys = off`.execute(conn);
      try {
        return await this.#migrate(conn);
      } finally {
        await sql`pragma foreign_keys = on`.execute(conn);
      }
    });
  }

  async #migrate(conn: Kysely<LedgerTables>): Promise<string[]> {
    return this.#transactionOn(conn, async (trx) => {
      await sql`create table if not exists portcullis_migrations (name text primary key, applied_at text not null)`.execute(trx);
      const done = await sql<{ name: string }>`select name from portcullis_migrations`.execute(trx);
      const applied = new Set(done.rows.map((r) => r.name));
      const pending = [...this.#migrations.keys()].filter((n) => !applied.has(n)).sort();
      for (const name of pending) {
        await this.#migrations.get(name)!.up(trx, this.dialect);
        await sql`insert into portcullis_migrations (name, applied_at) values (${name}, ${new Date().toISOString()})`.execute(trx);
      }
      if (this.dialect === 'sqlite' && pending.length > 0) {
        const broken = await sql<{ table: string }>`pragma foreign_key_check`.execute(trx);
        if (broken.rows.length > 0) throw new Error(`migration left ${broken.rows.length} rows violating a foreign key (first in ${broken.rows[0]!.table})`);
      }
      return pending;
    }, { advisoryLock: ADVISORY_LOCK.migrations });
  }

  /**
   * Runs `fn` in one transaction on one connection: SQLite `BEGIN IMMEDIATE` (the write lock up
   * front, so two writers never deadlock on upgrade), PostgreSQL `BEGIN` plus an optional
   * transaction-scoped advisory lock. Rolls back on any error; a failed COMMIT is a {@link CommitError}.
   */
  async transaction<T>(fn: (trx: Kysely<LedgerTables>) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return this.db.connection().execute((conn) => this.#transactionOn(conn, fn, options));
  }

  /** {@link transaction} on a connection the caller already holds. */
  async #transactionOn<T>(conn: Kysely<LedgerTables>, fn: (trx: Kysely<LedgerTables>) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    if (this.#closed) throw new Error('database is closed');
    await sql.raw(this.dialect === 'sqlite' ? 'begin immediate' : 'begin').execute(conn);
    let result: T;
    try {
      if (options.advisoryLock !== undefined && this.dialect === 'postgres') {
        await sql`select pg_advisory_xact_lock(${sql.raw(options.advisoryLock.toString())})`.execute(conn);
      }
      result = await fn(conn);
    } catch (err) {
      await sql.raw('rollback').execute(conn).catch(() => undefined);
      throw err;
    }
    try {
      await sql.raw('commit').execute(conn);
    } catch (err) {
      await sql.raw('rollback').execute(conn).catch(() => undefined);
      throw new CommitError(err);
    }
    return result;
  }

  /** True when a trivial query answers (for readiness). Never throws. */
  async ping(): Promise<boolean> {
    try {
      await sql`select 1`.execute(this.db);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Registers work to run when this database closes, before its connections do (a ledger stops its
   * writer, checkpoint and WAL checkpointer threads here: they hold their own connections).
   */
  onClose(fn: () => Promise<void> | void): void {
    this.#closers.push(fn);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      for (const fn of this.#closers.splice(0)) await Promise.resolve(fn()).catch(() => undefined);
      await this.db.destroy();
    } finally {
      this.#onClose();
    }
  }
}

/**
 * `BEGIN IMMEDIATE` … `COMMIT` on a raw connection nobody else uses meanwhile. Rolls back on any
 * error; a failed COMMIT is a {@link CommitError}.
 */
export async function rawTransaction<T>(raw: RawSqlite, fn: (raw: RawSqlite) => Promise<T>): Promise<T> {
  raw.prepare('begin immediate').run();
  let result: T;
  try {
    result = await fn(raw);
  } catch (err) {
    rollback(raw);
    throw err;
  }
  try {
    raw.prepare('commit').run();
  } catch (err) {
    rollback(raw);
    throw new CommitError(err);
  }
  return result;
}

function rollback(raw: RawSqlite): void {
  try {
    raw.prepare('rollback').run();
  } catch {
    // no transaction left to roll back (SQLite may already have rolled it back)
  }
}

/** pg returns int8 as strings by default; our counters and sequence numbers fit a double exactly. */
function parseInt8(value: string): number {
  return Number(value);
}

/**
 * SQLite files open in this process. A second connection to the same file in one process would
 * deadlock: better-sqlite3 waits for the write lock synchronously (busy_timeout), blocking the
 * event loop, while the other connection's transaction needs that loop to reach COMMIT. Share the
 * one LedgerDatabase instead (its kysely connection serializes transactions without blocking).
 */
const openSqliteFiles = new Set<string>();

/**
 * Opens the database with the pragmas/pool settings the ledger relies on. Does not migrate:
 * register migrations (the ledger's via `openLedger`) and call `migrate()`.
 */
/**
 * kysely prepares every query again on every call; the ledger's queries are a small fixed set, so
 * prepared statements are cached by SQL text (better-sqlite3 statements are reusable, and SQLite
 * re-prepares one itself after a schema change).
 */
export function withStatementCache(db: Database.Database, max = 512): { close(): void; prepare(sql: string): Database.Statement } {
  const cache = new Map<string, Database.Statement>();
  return {
    close: () => db.close(),
    prepare(sql: string) {
      let st = cache.get(sql);
      if (!st) {
        st = db.prepare(sql);
        if (cache.size >= max) cache.clear();
        cache.set(sql, st);
      }
      return st;
    },
  };
}

/**
 * A better-sqlite3 connection with the pragmas the ledger relies on (WAL, synchronous=FULL).
 * `checkpointThread: true`: a WalCheckpointer thread checkpoints this file, and a COMMIT
 * checkpoints only past WAL_RESTART_PAGES (src/stores/wal-checkpointer.ts).
 */
export function openSqliteConnection(path: string, busyTimeoutMs: number, opts: { checkpointThread?: boolean } = {}): Database.Database {
  const sqlite = new Database(path);
  try {
    const mode = sqlite.pragma('journal_mode = WAL', { simple: true }) as string;
    if (path !== ':memory:' && mode !== 'wal') throw new Error(`SQLite refused WAL mode (got ${mode})`);
    // FULL: every commit of the evidence ledger is fsynced before it is acknowledged.
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma(`busy_timeout = ${busyTimeoutMs}`);
    sqlite.pragma('foreign_keys = ON');
    if (opts.checkpointThread) sqlite.pragma(`wal_autocheckpoint = ${WAL_RESTART_PAGES}`);
    // A WAL that grew (a held snapshot) is cut back when it starts over (wal-checkpointer.ts).
    sqlite.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
  } catch (err) {
    sqlite.close();
    throw err;
  }
  return sqlite;
}

export async function openDatabase(config: DatabaseConfig): Promise<LedgerDatabase> {
  if (config.kind === 'sqlite') {
    ensurePrivateDbFile(config.path);
    const key = config.path === ':memory:' ? undefined : realpathSync(config.path);
    if (key !== undefined && openSqliteFiles.has(key)) {
      throw new Error(`SQLite ledger ${config.path} is already open in this process; share its LedgerDatabase`);
    }
    const busyTimeoutMs = Math.trunc(config.busyTimeoutMs ?? 5000);
    const writerThread = config.writerThread === true && key !== undefined;
    const sqlite = openSqliteConnection(config.path, busyTimeoutMs, { checkpointThread: writerThread });
    if (key !== undefined) openSqliteFiles.add(key);
    const release = () => {
      if (key !== undefined) openSqliteFiles.delete(key);
    };
    const cached = withStatementCache(sqlite);
    // The writer thread opens its own connection: it never waits on this thread's event loop, so the
    // one-connection-per-process rule above (a deadlock within one thread) does not apply to it.
    const writer = writerThread
      ? { path: key, busyTimeoutMs, receiptFsync: config.receiptFsync ?? 'before_reply', ...(config.faultWalSync ? { faultWalSync: true } : {}) }
      : undefined;
    return new LedgerDatabase(new Kysely<LedgerTables>({ dialect: new SqliteDialect({ database: cached }) }), 'sqlite', release, cached, writer);
  }
  if (config.kind !== 'postgres') throw new TypeError('database kind must be sqlite or postgres');
  const timeout = Math.trunc(config.statementTimeoutMs ?? 15000);
  const pool = new pg.Pool({
    connectionString: config.connectionString,
    max: config.poolSize ?? 10,
    connectionTimeoutMillis: config.connectTimeoutMs ?? 5000,
    statement_timeout: timeout,
    lock_timeout: timeout,
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === pg.types.builtins.INT8 ? parseInt8 : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // A connection error must never crash the gate: idle clients report on the pool, checked-out
  // clients on themselves (e.g. EPIPE writing ROLLBACK to a dead server). The failing query still
  // rejects (-> ledger_unavailable), and pg-pool discards the dead client on release.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  return new LedgerDatabase(new Kysely<LedgerTables>({ dialect: new PostgresDialect({ pool }) }), 'postgres');
}
