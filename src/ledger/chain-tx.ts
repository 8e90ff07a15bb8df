// The few statements a ledger write transaction runs, behind one interface with two backends:
// kysely (PostgreSQL) and cached prepared statements on the raw SQLite connection (embedded).
// The SQLite form exists for speed: an execute's two ledger transactions ran ~1.3 ms of query
// building and compiling through kysely against ~0.4 ms of SQLite work (docs/benchmarks.md).
import type { Kysely } from 'kysely';
import type { RawSqlite } from './db.ts';
import type { AuditEventsTable, ExecutionIntentsTable, LedgerTables, ReceiptsTable } from './schema.ts';

export interface ChainHead {
  seq: number;
  hash: string;
  ts: string;
}

/** What one ledger write transaction may do (all under the chain lock). */
export interface ChainTx {
  /** The last event of the chain, or undefined when it is empty. */
  head(): Promise<ChainHead | undefined>;
  /** An intent that already uses this grant id or this intent id. */
  intentConflict(grantId: string, intentId: string): Promise<{ intent_id: string; grant_id: string } | undefined>;
  insertIntent(row: ExecutionIntentsTable): Promise<void>;
  intent(intentId: string): Promise<ExecutionIntentsTable | undefined>;
  receiptExists(receiptId: string): Promise<boolean>;
  /** Marks an unresolved intent resolved; returns the number of rows changed (0 or 1). */
  resolveIntent(intentId: string, resolvedAt: string, receiptId: string): Promise<number>;
  insertReceipt(row: ReceiptsTable): Promise<void>;
  insertEvents(rows: readonly AuditEventsTable[]): Promise<void>;
}

/** Rows per multi-row INSERT of audit events (PostgreSQL). */
const INSERT_CHUNK = 200;

export class KyselyChainTx implements ChainTx {
  constructor(private readonly tx: Kysely<LedgerTables>) {}

  async head(): Promise<ChainHead | undefined> {
    const h = await this.tx.selectFrom('audit_events').select(['seq', 'hash', 'ts']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return h ? { seq: Number(h.seq), hash: h.hash, ts: h.ts } : undefined;
  }

  intentConflict(grantId: string, intentId: string) {
    return this.tx.selectFrom('execution_intents').select(['intent_id', 'grant_id'])
      .where((eb) => eb.or([eb('grant_id', '=', grantId), eb('intent_id', '=', intentId)]))
      .executeTakeFirst();
  }

  async insertIntent(row: ExecutionIntentsTable): Promise<void> {
    await this.tx.insertInto('execution_intents').values(row).execute();
  }

  intent(intentId: string) {
    return this.tx.selectFrom('execution_intents').selectAll().where('intent_id', '=', intentId).executeTakeFirst();
  }

  async receiptExists(receiptId: string): Promise<boolean> {
    return (await this.tx.selectFrom('receipts').select('receipt_id').where('receipt_id', '=', receiptId).executeTakeFirst()) !== undefined;
  }

  async resolveIntent(intentId: string, resolvedAt: string, receiptId: string): Promise<number> {
    const r = await this.tx.updateTable('execution_intents').set({ resolved_at: resolvedAt, receipt_id: receiptId })
      .where('intent_id', '=', intentId).where('resolved_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  async insertReceipt(row: ReceiptsTable): Promise<void> {
    await this.tx.insertInto('receipts').values(row).execute();
  }

  async insertEvents(rows: readonly AuditEventsTable[]): Promise<void> {
    for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
      await this.tx.insertInto('audit_events').values(rows.slice(i, i + INSERT_CHUNK)).execute();
    }
  }
}

export const EVENT_COLUMNS = ['seq', 'event_id', 'ts', 'type', 'decision', 'trace_id', 'action_id', 'principal', 'session_id', 'operator', 'reason_code', 'detail', 'prev_hash', 'hash'] as const;
export const INTENT_COLUMNS = ['intent_id', 'trace_id', 'grant_id', 'grant_json', 'grant_signature', 'action_id', 'action_version', 'principal', 'session_id', 'request_hash', 'plan_hash', 'created_at', 'resolved_at', 'receipt_id'] as const;
export const RECEIPT_COLUMNS = ['receipt_id', 'intent_id', 'grant_id', 'trace_id', 'action_id', 'principal', 'session_id', 'event_seq', 'receipt_json', 'created_at'] as const;

const insertSql = (table: string, cols: readonly string[]) => `insert into ${table} (${cols.join(', ')}) values (${cols.map((c) => `@${c}`).join(', ')})`;

const SQL = {
  head: 'select seq, hash, ts from audit_events order by seq desc limit 1',
  intentConflict: 'select intent_id, grant_id from execution_intents where grant_id = ? or intent_id = ? limit 1',
  insertIntent: insertSql('execution_intents', INTENT_COLUMNS),
  intent: 'select * from execution_intents where intent_id = ?',
  receiptExists: 'select 1 as one from receipts where receipt_id = ?',
  resolveIntent: 'update execution_intents set resolved_at = ?, receipt_id = ? where intent_id = ? and resolved_at is null',
  insertReceipt: insertSql('receipts', RECEIPT_COLUMNS),
  insertEvent: insertSql('audit_events', EVENT_COLUMNS),
} as const;

/** Picks exactly `cols` from a row (better-sqlite3 refuses named parameters the SQL does not use). */
function bind<T extends object>(row: T, cols: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of cols) out[c] = (row as Record<string, unknown>)[c] ?? null;
  return out;
}

/** Same statements on the raw better-sqlite3 connection (synchronous; the promises are already settled). */
export class SqliteChainTx implements ChainTx {
  constructor(private readonly raw: RawSqlite) {}

  async head(): Promise<ChainHead | undefined> {
    const h = this.raw.prepare(SQL.head).get() as ChainHead | undefined;
    return h ? { seq: Number(h.seq), hash: h.hash, ts: h.ts } : undefined;
  }

  async intentConflict(grantId: string, intentId: string) {
    return this.raw.prepare(SQL.intentConflict).get(grantId, intentId) as { intent_id: string; grant_id: string } | undefined;
  }

  async insertIntent(row: ExecutionIntentsTable): Promise<void> {
    this.raw.prepare(SQL.insertIntent).run(bind(row, INTENT_COLUMNS));
  }

  async intent(intentId: string) {
    return this.raw.prepare(SQL.intent).get(intentId) as ExecutionIntentsTable | undefined;
  }

  async receiptExists(receiptId: string): Promise<boolean> {
    return this.raw.prepare(SQL.receiptExists).get(receiptId) !== undefined;
  }

  async resolveIntent(intentId: string, resolvedAt: string, receiptId: string): Promise<number> {
    return this.raw.prepare(SQL.resolveIntent).run(resolvedAt, receiptId, intentId).changes;
  }

  async insertReceipt(row: ReceiptsTable): Promise<void> {
    this.raw.prepare(SQL.insertReceipt).run(bind(row, RECEIPT_COLUMNS));
  }

  async insertEvents(rows: readonly AuditEventsTable[]): Promise<void> {
    const st = this.raw.prepare(SQL.insertEvent);
    for (const r of rows) st.run(bind(r, EVENT_COLUMNS));
  }
}
