// Shared fixtures for the ledger tests: both backends (SQLite file in a temp dir; a throwaway
// PostgreSQL with a fresh database per test), a keystore, a ticking clock, grants and receipts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { GateError } from '../../src/errors.ts';
import pg from 'pg';
import { sql } from 'kysely';
import { startPostgres, serviceSkipReason, type PostgresServer } from '../helpers/services.ts';
import { tempDir as sharedTempDir } from '../helpers/temp.ts';
import { openKeystore, type Keystore } from '../../src/keys/index.ts';
import { LedgerDatabase } from '../../src/ledger/db.ts';
import { WalSync } from '../../src/ledger/wal-sync.ts';
import { WriterThread } from '../../src/ledger/writer-thread.ts';
import {
  openDatabase, openLedger, buildReceipt, signGrant, newGrantId, APPEND_ONLY_TABLES,
  type DatabaseConfig, type Ledger, type LedgerOptions, type GrantClaims, type SignedGrant,
  type Receipt, type ReceiptInput,
} from '../../src/ledger/index.ts';

export interface TestContext {
  after(fn: () => unknown): void;
}

export interface Backend {
  name: 'sqlite' | 'sqlite-writer-thread' | 'postgres';
  /** Skip reason (undefined = run). In CI a missing PostgreSQL throws here, failing the file. */
  skip: string | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A fresh, empty database; closed after the test. */
  fresh(t: TestContext): Promise<FreshDb>;
}

export interface FreshDb {
  config: DatabaseConfig;
  /** Another independent connection (pool) to the same database, closed after the test. */
  open(options?: { poolSize?: number }): Promise<LedgerDatabase>;
}

export function tempDir(t: TestContext, prefix = 'portcullis-ledger-'): string {
  return sharedTempDir(t, prefix);
}

function opener(t: TestContext, config: DatabaseConfig): FreshDb {
  return {
    config,
    async open(options) {
      const cfg = config.kind === 'postgres' && options?.poolSize ? { ...config, poolSize: options.poolSize } : config;
      const db = await openDatabase(cfg);
      t.after(() => db.close());
      return db;
    },
  };
}

export const sqliteBackend: Backend = {
  name: 'sqlite',
  skip: undefined,
  async start() {},
  async stop() {},
  async fresh(t) {
    return opener(t, { kind: 'sqlite', path: join(tempDir(t), 'ledger.db') });
  },
};

/** SQLite with the ledger's write transactions on a writer thread, configured as the gate runs it. */
export const sqliteWriterThreadBackend: Backend = {
  name: 'sqlite-writer-thread',
  skip: undefined,
  async start() {},
  async stop() {},
  async fresh(t) {
    // As the gate runs it: receipt-only batches acknowledged before their fsync (receipt_fsync).
    return opener(t, { kind: 'sqlite', path: join(tempDir(t), 'ledger.db'), writerThread: true, receiptFsync: 'after_reply' });
  },
};

let pgServer: PostgresServer | undefined;
let dbCounter = 0;

export const postgresBackend: Backend = {
  name: 'postgres',
  skip: serviceSkipReason('postgres'),
  async start() {
    pgServer ??= await startPostgres();
  },
  async stop() {
    await pgServer?.stop();
    pgServer = undefined;
  },
  async fresh(t) {
    if (!pgServer) throw new Error('postgres backend not started');
    const name = `ledger_${process.pid}_${++dbCounter}`;
    const admin = new pg.Client({ connectionString: pgServer.url });
    await admin.connect();
    await admin.query(`create database ${name}`);
    await admin.end();
    const url = pgServer.url.replace(`/${pgServer.database}?`, `/${name}?`);
    return opener(t, { kind: 'postgres', connectionString: url, poolSize: 4 });
  },
};

export const BACKENDS: Backend[] = [sqliteBackend, sqliteWriterThreadBackend, postgresBackend];

/** The PostgreSQL server of this test file (for outage tests). */
export function currentPostgres(): PostgresServer | undefined {
  return pgServer;
}

/** A clock that advances 1 ms per reading (distinct, increasing timestamps), settable. */
export function tickingClock(startIso = '2026-11-22T13:00:00.000Z') {
  let t = Date.parse(startIso);
  return {
    now: () => t++,
    set(iso: string) {
      t = Date.parse(iso);
    },
  };
}

export async function testKeys(t: TestContext): Promise<Keystore> {
  return openKeystore({ dir: join(tempDir(t, 'portcullis-keys-'), 'keys'), clock: { now: () => Date.parse('2026-11-22T13:00:00Z') } });
}

export async function ledgerOn(db: LedgerDatabase, keys: Keystore, extra: Partial<LedgerOptions> = {}): Promise<Ledger> {
  return openLedger({ database: db, keys, clock: tickingClock(), ...extra });
}

/** Drops the append-only triggers: the tests play an attacker with write access to the database. */
export async function dropAppendOnly(db: LedgerDatabase): Promise<void> {
  for (const table of APPEND_ONLY_TABLES) {
    if (db.dialect === 'postgres') {
      await sql.raw(`drop trigger if exists ${table}_append_only on ${table}`).execute(db.db);
    } else {
      await sql.raw(`drop trigger if exists ${table}_no_update`).execute(db.db);
      await sql.raw(`drop trigger if exists ${table}_no_delete`).execute(db.db);
    }
  }
}

/** Makes every insert of an audit event whose type is `boom` fail inside the database. */
export async function failEventsOfTypeBoom(db: LedgerDatabase): Promise<void> {
  if (db.dialect === 'postgres') {
    await sql.raw(`create or replace function test_boom() returns trigger language plpgsql as $$
      begin if new.type = 'boom' then raise exception 'boom'; end if; return new; end $$`).execute(db.db);
    await sql.raw('create trigger test_boom before insert on audit_events for each row execute function test_boom()').execute(db.db);
  } else {
    await sql.raw(`create trigger test_boom before insert on audit_events when new.type = 'boom'
      begin select raise(abort, 'boom'); end`).execute(db.db);
  }
}

export async function exec(db: LedgerDatabase, text: string): Promise<void> {
  await sql.raw(text).execute(db.db);
}

export async function count(db: LedgerDatabase, table: string, where = ''): Promise<number> {
  const r = await sql<{ n: number | string }>`select count(*) as n from ${sql.raw(table)} ${sql.raw(where ? `where ${where}` : '')}`.execute(db.db);
  return Number(r.rows[0]!.n);
}

export function grantClaims(overrides: Partial<GrantClaims> = {}): GrantClaims {
  return {
    grant_id: newGrantId(),
    trace_id: 'trc_0001',
    action_id: 'http_fetch',
    action_version: '1.0.0',
    module_digest: `sha256:${'ab'.repeat(32)}`,
    request_hash: `sha256:${'cd'.repeat(32)}`,
    plan_hash: null,
    principal: 'agent-1',
    session_id: 'ses_0001',
    lease_jkt: 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs',
    epoch: 0,
    issued_at: '2026-11-22T13:00:00.000Z',
    expires_at: '2026-11-22T13:01:00.000Z',
    ...overrides,
  };
}

export function makeGrant(keys: Keystore, overrides: Partial<GrantClaims> = {}): SignedGrant {
  return signGrant(grantClaims(overrides), keys.grant);
}

export function receiptInput(grant: SignedGrant, overrides: Partial<ReceiptInput> = {}): ReceiptInput {
  return {
    grant_id: grant.grant_id,
    trace_id: grant.trace_id,
    action_id: grant.action_id,
    action_version: grant.action_version,
    provider_module_digest: grant.module_digest,
    request_hash: grant.request_hash,
    plan_hash: grant.plan_hash,
    principal: grant.principal,
    session_id: grant.session_id,
    provider_receipt: { status: 200, body: 'ok' },
    normalized_result: { kind: 'success', summary: 'HTTP 200 OK' },
    verification_outcome: { status: 'verified', evidence: { status_code: 200 } },
    effect_evidence: [],
    started_at: '2026-11-22T13:00:00.100Z',
    finished_at: '2026-11-22T13:00:00.250Z',
    failure_class: null,
    result: { status: 200, body: 'ok' },
    ...overrides,
  };
}

export function makeReceipt(keys: Keystore, grant: SignedGrant, overrides: Partial<ReceiptInput> = {}): Receipt {
  return buildReceipt(receiptInput(grant, overrides), keys.receipt);
}

type Seen = { kinds: string; fsync: string };

/** Records every batch the writer thread answers: its job kinds and when it was fsynced. */
export function spyBatches(t: TestContext): Seen[] {
  const seen: Seen[] = [];
  const original = WriterThread.prototype.run;
  WriterThread.prototype.run = async function (this: WriterThread, jobs) {
    const r = await original.call(this, jobs);
    seen.push({ kinds: jobs.map((j) => j.kind).join('+'), fsync: r.fsync });
    return r;
  };
  t.after(() => { WriterThread.prototype.run = original; });
  return seen;
}

type TxSeen = { synchronous: string };

/** Records each inline (gate-thread) SQLite transaction's synchronous level and each post-reply WAL fsync. */
export function spyInline(t: TestContext): { txs: TxSeen[]; syncs: () => number } {
  const txs: TxSeen[] = [];
  let syncs = 0;
  const tx = LedgerDatabase.prototype.sqliteTransaction;
  LedgerDatabase.prototype.sqliteTransaction = function (this: LedgerDatabase, fn, options = {}) {
    txs.push({ synchronous: options.synchronous ?? 'FULL' });
    return tx.call(this, fn, options) as never;
  };
  const sync = WalSync.prototype.sync;
  WalSync.prototype.sync = function (this: WalSync) {
    syncs++;
    return sync.call(this);
  };
  t.after(() => {
    LedgerDatabase.prototype.sqliteTransaction = tx;
    WalSync.prototype.sync = sync;
  });
  return { txs, syncs: () => syncs };
}

/** Waits up to 2 s for the ledger to report its fatal writer failure; returns the reason (or undefined). */
export async function writerFailure(ledger: Ledger): Promise<string | undefined> {
  for (let n = 0; n < 200 && ledger.writerFailed === undefined; n++) await new Promise((r) => setTimeout(r, 10));
  return ledger.writerFailed;
}

/** assert.rejects matcher: a GateError with this code. */
export function isCode(code: string) {
  return (err: unknown) => {
    assert.ok(err instanceof GateError, String(err));
    assert.equal(err.code, code);
    return true;
  };
}

/** Every row of a table, in `order` (migration tests compare evidence before and after). */
export async function tableRows(db: LedgerDatabase, table: string, order: string): Promise<unknown[]> {
  return (await sql.raw(`select * from ${table} order by ${order}`).execute(db.db)).rows;
}

/** The evidence tables' rows, each in its key order: what a migration must leave exactly as it was. */
export async function evidenceRows(db: LedgerDatabase): Promise<{ events: unknown[]; intents: unknown[]; receipts: unknown[] }> {
  return {
    events: await tableRows(db, 'audit_events', 'seq'),
    intents: await tableRows(db, 'execution_intents', 'intent_id'),
    receipts: await tableRows(db, 'receipts', 'receipt_id'),
  };
}

/** Names of the explicitly created indexes (not those constraints create), sorted. */
export async function indexNames(db: LedgerDatabase): Promise<string[]> {
  if (db.dialect === 'postgres') {
    const r = await sql<{ indexname: string }>`select i.indexname from pg_indexes i
      where i.schemaname = current_schema() and i.tablename in ('audit_events', 'execution_intents', 'receipts')
      and not exists (select 1 from pg_constraint c where c.conname = i.indexname) order by i.indexname`.execute(db.db);
    return r.rows.map((x) => x.indexname);
  }
  const r = await sql<{ name: string }>`select name from sqlite_master where type = 'index' and sql is not null order by name`.execute(db.db);
  return r.rows.map((x) => x.name);
}
