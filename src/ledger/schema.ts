// The ledger's tables (kysely types) and its migration, identical on SQLite and PostgreSQL.
// Every value that is hashed or signed is stored as TEXT exactly as it was hashed (timestamps as
// ISO 8601 UTC with milliseconds, JSON as its RFC 8785 form), so no backend can re-format evidence.
import { sql } from 'kysely';
import type { Migration, MigrationDb, Dialect } from './db.ts';
import { EVENT_COLUMNS, INTENT_COLUMNS, RECEIPT_COLUMNS } from './chain-tx.ts';

export interface AuditEventsTable {
  seq: number;
  event_id: string;
  ts: string;
  type: string;
  decision: string;
  trace_id: string | null;
  action_id: string | null;
  principal: string | null;
  session_id: string | null;
  operator: string | null;
  reason_code: string | null;
  /** RFC 8785 JSON text of the detail object, or null. */
  detail: string | null;
  prev_hash: string;
  hash: string;
}

export interface ExecutionIntentsTable {
  intent_id: string;
  trace_id: string;
  grant_id: string;
  /** RFC 8785 JSON of the whole signed grant (claims + signing_key_id + grant_signature). */
  grant_json: string;
  grant_signature: string;
  action_id: string;
  action_version: string;
  principal: string;
  session_id: string;
  request_hash: string;
  plan_hash: string | null;
  created_at: string;
  resolved_at: string | null;
  receipt_id: string | null;
}

export interface ReceiptsTable {
  receipt_id: string;
  intent_id: string;
  grant_id: string;
  trace_id: string;
  action_id: string;
  principal: string;
  session_id: string;
  /** Sequence number of the audit event that finalized this receipt (binds it into the chain). */
  event_seq: number;
  /** RFC 8785 JSON of the signed receipt, exactly as returned by GET /v1/receipts/{id} (minus signature_status). */
  receipt_json: string;
  created_at: string;
}

export interface CheckpointsTable {
  seq: number;
  head_hash: string;
  count: number;
  ts: string;
  kid: string;
  /** Hex Ed25519 signature over UTF-8("portcullis-checkpoint-v1\n" + JCS({count, head_hash, kid, seq, ts})). */
  signature: string;
}

export interface LedgerTables {
  audit_events: AuditEventsTable;
  execution_intents: ExecutionIntentsTable;
  receipts: ReceiptsTable;
  checkpoints: CheckpointsTable;
}

/** Tables whose rows may never be updated or deleted by the application. */
export const APPEND_ONLY_TABLES = ['audit_events', 'receipts', 'checkpoints'] as const;

async function appendOnlyTriggers(db: MigrationDb, dialect: Dialect): Promise<void> {
  // Defence in depth against a buggy or compromised application path, not against a DB owner
  // (who can drop triggers): the hash chain and signed checkpoints are what detect that.
  if (dialect === 'postgres') {
    await sql`create or replace function portcullis_append_only() returns trigger language plpgsql as $$
      begin raise exception 'append-only table %', tg_table_name using errcode = 'P0001'; end $$`.execute(db);
    for (const t of APPEND_ONLY_TABLES) {
      await sql.raw(`drop trigger if exists ${t}_append_only on ${t}`).execute(db);
      await sql.raw(`create trigger ${t}_append_only before update or delete on ${t} for each row execute function portcullis_append_only()`).execute(db);
      await sql.raw(`drop trigger if exists ${t}_no_truncate on ${t}`).execute(db);
      await sql.raw(`create trigger ${t}_no_truncate before truncate on ${t} for each statement execute function portcullis_append_only()`).execute(db);
    }
    return;
  }
  for (const t of APPEND_ONLY_TABLES) {
    await sql.raw(`create trigger if not exists ${t}_no_update before update on ${t} begin select raise(abort, 'append-only table ${t}'); end`).execute(db);
    await sql.raw(`create trigger if not exists ${t}_no_delete before delete on ${t} begin select raise(abort, 'append-only table ${t}'); end`).execute(db);
  }
}

/** The query indexes: the audit filters (each with `seq`), unresolved intents, receipts by trace (dropped by 0003). */
async function secondaryIndexes(db: MigrationDb): Promise<void> {
  for (const col of ['trace_id', 'action_id', 'principal', 'session_id', 'decision', 'ts'] as const) {
    await db.schema.createIndex(`audit_events_${col}_idx`).ifNotExists().on('audit_events').columns([col, 'seq']).execute();
  }
  await db.schema.createIndex('execution_intents_unresolved_idx').ifNotExists().on('execution_intents')
    .column('created_at').where(sql.ref('resolved_at'), 'is', null).execute();
  await db.schema.createIndex('receipts_trace_id_idx').ifNotExists().on('receipts').column('trace_id').execute();
}

/** `ledger/0001_init`: the four ledger tables, their indexes and the append-only triggers. */
export const ledgerInitMigration: Migration = {
  async up(db, dialect) {
    await db.schema.createTable('audit_events').ifNotExists()
      .addColumn('seq', 'bigint', (c) => c.primaryKey().check(sql`seq > 0`))
      .addColumn('event_id', 'text', (c) => c.notNull().unique())
      .addColumn('ts', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('decision', 'text', (c) => c.notNull())
      .addColumn('trace_id', 'text')
      .addColumn('action_id', 'text')
      .addColumn('principal', 'text')
      .addColumn('session_id', 'text')
      .addColumn('operator', 'text')
      .addColumn('reason_code', 'text')
      .addColumn('detail', 'text')
      // UNIQUE(prev_hash): the database itself refuses a fork (two events claiming one predecessor).
      .addColumn('prev_hash', 'text', (c) => c.notNull().unique())
      .addColumn('hash', 'text', (c) => c.notNull().unique())
      .execute();

    await db.schema.createTable('execution_intents').ifNotExists()
      .addColumn('intent_id', 'text', (c) => c.primaryKey())
      .addColumn('trace_id', 'text', (c) => c.notNull())
      // UNIQUE(grant_id): a grant is consumed by exactly one intent.
      .addColumn('grant_id', 'text', (c) => c.notNull().unique())
      .addColumn('grant_json', 'text', (c) => c.notNull())
      .addColumn('grant_signature', 'text', (c) => c.notNull())
      .addColumn('action_id', 'text', (c) => c.notNull())
      .addColumn('action_version', 'text', (c) => c.notNull())
      .addColumn('principal', 'text', (c) => c.notNull())
      .addColumn('session_id', 'text', (c) => c.notNull())
      .addColumn('request_hash', 'text', (c) => c.notNull())
      .addColumn('plan_hash', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('resolved_at', 'text')
      .addColumn('receipt_id', 'text', (c) => c.unique())
      .execute();

    await db.schema.createTable('receipts').ifNotExists()
      .addColumn('receipt_id', 'text', (c) => c.primaryKey())
      .addColumn('intent_id', 'text', (c) => c.notNull().unique().references('execution_intents.intent_id'))
      .addColumn('grant_id', 'text', (c) => c.notNull().unique())
      .addColumn('trace_id', 'text', (c) => c.notNull())
      .addColumn('action_id', 'text', (c) => c.notNull())
      .addColumn('principal', 'text', (c) => c.notNull())
      .addColumn('session_id', 'text', (c) => c.notNull())
      .addColumn('event_seq', 'bigint', (c) => c.notNull().unique())
      .addColumn('receipt_json', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      // Deferred: the finalizing event is inserted later in the same transaction (one batched insert).
      .addForeignKeyConstraint('receipts_event_seq_fk', ['event_seq'], 'audit_events', ['seq'],
        (fk) => fk.deferrable().initiallyDeferred())
      .execute();

    await db.schema.createTable('checkpoints').ifNotExists()
      .addColumn('seq', 'bigint', (c) => c.primaryKey().check(sql`seq > 0`))
      .addColumn('head_hash', 'text', (c) => c.notNull())
      .addColumn('count', 'bigint', (c) => c.notNull())
      .addColumn('ts', 'text', (c) => c.notNull())
      .addColumn('kid', 'text', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .execute();

    await secondaryIndexes(db);
    await appendOnlyTriggers(db, dialect);
  },
};

/** The three tables as `ledger/0002_lean` leaves them on SQLite (the checkpoints table is unchanged). */
const LEAN_SQLITE_TABLES = {
  audit_events: `create table audit_events (
    seq integer not null primary key check (seq > 0), event_id text not null, ts text not null,
    type text not null, decision text not null, trace_id text, action_id text, principal text,
    session_id text, operator text, reason_code text, detail text,
    prev_hash text not null unique, hash text not null)`,
  execution_intents: `create table execution_intents (
    intent_id text not null primary key, trace_id text not null, grant_id text not null unique,
    grant_json text not null, grant_signature text not null, action_id text not null,
    action_version text not null, principal text not null, session_id text not null,
    request_hash text not null, plan_hash text, created_at text not null, resolved_at text, receipt_id text)`,
  receipts: `create table receipts (
    receipt_id text not null primary key,
    intent_id text not null unique references execution_intents (intent_id),
    grant_id text not null, trace_id text not null, action_id text not null, principal text not null,
    session_id text not null, event_seq bigint not null unique, receipt_json text not null, created_at text not null,
    constraint receipts_event_seq_fk foreign key (event_seq) references audit_events (seq) deferrable initially deferred)`,
} as const;

const COLUMNS = { audit_events: EVENT_COLUMNS, execution_intents: INTENT_COLUMNS, receipts: RECEIPT_COLUMNS } as const;

/**
 * `ledger/0002_lean`: fewer b-trees written per execute (46 → 34 WAL frames over its two commits,
 * a quarter less SQLite work: docs/ledger.md, "Schema"). Drops four uniqueness checks, keeping
 * every one that guards evidence on its own:
 * - `audit_events.hash`: two events with one hash would share content and predecessor, which
 *   UNIQUE(prev_hash) already refuses; `event_id` is minted by the gate (uuidv7) and covered by the
 *   event's hash. UNIQUE(prev_hash) (no fork) and the `seq` key (no gap, no duplicate) stay.
 * - `execution_intents.receipt_id` and `receipts.grant_id`: enforced by finalize in the same
 *   transaction (the receipt's grant must be its intent's; `receipts.intent_id` and
 *   `execution_intents.grant_id` stay UNIQUE), so the gate cannot store two receipts for one grant.
 * On SQLite `seq` also becomes the table's rowid (INTEGER PRIMARY KEY): no separate key index.
 * A UNIQUE column constraint cannot be dropped there, so the three tables are rebuilt (copied in
 * this transaction; foreign keys are checked before it commits: LedgerDatabase.migrate).
 */
export const ledgerLeanMigration: Migration = {
  async up(db, dialect) {
    if (dialect === 'postgres') {
      // Found by column in the catalog, not by the name PostgreSQL usually gives them: a constraint
      // that is not dropped would only cost speed, but the migration must do what it says.
      for (const [table, column] of [
        ['audit_events', 'event_id'], ['audit_events', 'hash'], ['execution_intents', 'receipt_id'], ['receipts', 'grant_id'],
      ] as const) {
        const found = await sql<{ conname: string }>`select c.conname from pg_constraint c
          join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
          where c.conrelid = ${table}::regclass and c.contype = 'u' and cardinality(c.conkey) = 1 and a.attname = ${column}`.execute(db);
        if (found.rows.length === 0) throw new Error(`ledger/0002_lean: no unique constraint on ${table}.${column}`);
        for (const r of found.rows) await sql`alter table ${sql.table(table)} drop constraint ${sql.ref(r.conname)}`.execute(db);
      }
      return;
    }
    // Copying into an INTEGER PRIMARY KEY would give a NULL seq (which the old table accepted) a
    // number instead of refusing it: evidence must come out exactly as it went in, or not at all.
    const odd = await sql<{ n: number }>`select count(*) as n from audit_events where typeof(seq) <> 'integer'`.execute(db);
    if (Number(odd.rows[0]!.n) > 0) throw new Error(`ledger/0002_lean: ${odd.rows[0]!.n} audit events have no integer seq; the ledger needs repair first`);
    const tables = Object.keys(LEAN_SQLITE_TABLES) as Array<keyof typeof LEAN_SQLITE_TABLES>;
    for (const t of tables) {
      await sql.raw(LEAN_SQLITE_TABLES[t].replace(`create table ${t} (`, `create table ${t}_lean (`)).execute(db);
      const cols = COLUMNS[t].join(', ');
      await sql.raw(`insert into ${t}_lean (${cols}) select ${cols} from ${t}`).execute(db);
    }
    // Children first; the rebuilt receipts table already names its parents by their final names.
    for (const t of [...tables].reverse()) await sql.raw(`drop table ${t}`).execute(db);
    for (const t of tables) await sql.raw(`alter table ${t}_lean rename to ${t}`).execute(db);
    await secondaryIndexes(db);
    await appendOnlyTriggers(db, dialect);
  },
};

/**
 * `ledger/0003_no_receipt_trace_index`: drops `receipts_trace_id_idx`, which no query uses (receipts
 * are read by `receipt_id` and, for a bundle, by `event_seq`; a trace's evidence is found through
 * `audit_events_trace_id_idx`). One b-tree fewer per execute: 19.4 → 18.3 WAL frames per one-phase
 * commit (docs/benchmarks.md, "Ninth session"). Earlier migrations still create it, so a ledger
 * at any version ends in the same schema.
 */
export const ledgerNoReceiptTraceIndexMigration: Migration = {
  async up(db) {
    await db.schema.dropIndex('receipts_trace_id_idx').ifExists().execute();
  },
};

export const LEDGER_MIGRATIONS: Readonly<Record<string, Migration>> = {
  'ledger/0001_init': ledgerInitMigration,
  'ledger/0002_lean': ledgerLeanMigration,
  'ledger/0003_no_receipt_trace_index': ledgerNoReceiptTraceIndexMigration,
};
