// Approval store backends for the table-driven tests: SQLite (one file, a connection per instance)
// and PostgreSQL (a throwaway server, a pool per instance). Plus a plan fixture and a recording audit sink.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import type { AuditEventInput, AuditSink, Clock } from '../../src/contracts.ts';
import { GateError } from '../../src/errors.ts';
import { KyselyApprovalStore, migrateApprovals, type ApprovalPlanInput, type KyselyApprovalStoreOptions } from '../../src/approvals/index.ts';
import { serviceSkipReason, startPostgres, type PostgresServer } from '../helpers/services.ts';

export class ManualClock implements Clock {
  constructor(public t = Date.UTC(2026, 10, 22, 12, 0, 0)) {}
  now(): number { return this.t; }
  advance(ms: number): void { this.t += ms; }
}

export interface ApprovalBackend {
  /** A new Kysely instance with its own connection(s) over the shared database (migrated). */
  db(): Promise<Kysely<any>>;
  open(clock: Clock, options?: KyselyApprovalStoreOptions): Promise<KyselyApprovalStore>;
  /** The PostgreSQL server when there is one (for outage tests). */
  server?: PostgresServer;
  close(): Promise<void>;
}

async function sqliteBackend(): Promise<ApprovalBackend> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-approvals-'));
  const file = join(dir, 'state.db');
  const dbs: Kysely<any>[] = [];
  const db = async () => {
    const conn = new Database(file);
    conn.pragma('journal_mode = WAL');
    const k = new Kysely<any>({ dialect: new SqliteDialect({ database: conn }) });
    dbs.push(k);
    await migrateApprovals(k);
    return k;
  };
  return {
    db,
    async open(clock, options) { return new KyselyApprovalStore(await db(), { clock, ...options }); },
    async close() {
      for (const k of dbs) await k.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresBackend(): Promise<ApprovalBackend> {
  const server = await startPostgres();
  const dbs: Kysely<any>[] = [];
  const db = async () => {
    const pool = new pg.Pool({ connectionString: server.url, max: 8, connectionTimeoutMillis: 2000 });
    // Idle clients report errors on the pool; a checked-out client whose server dies emits 'error'
    // on itself, and without a listener that would crash the process (pg behaviour).
    pool.on('error', () => {});
    pool.on('connect', (client) => { client.on('error', () => {}); });
    const k = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
    dbs.push(k);
    await migrateApprovals(k);
    return k;
  };
  return {
    db,
    server,
    async open(clock, options) { return new KyselyApprovalStore(await db(), { clock, ...options }); },
    async close() {
      for (const k of dbs) await k.destroy().catch(() => {});
      await server.stop();
    },
  };
}

export const BACKENDS: { name: string; skip: string | undefined; make: () => Promise<ApprovalBackend> }[] = [
  { name: 'sqlite', skip: undefined, make: sqliteBackend },
  { name: 'postgres', skip: serviceSkipReason('postgres'), make: postgresBackend },
];

let n = 0;
/** A complete plan input; `over` replaces fields. */
export function planInput(over: Partial<ApprovalPlanInput> = {}): ApprovalPlanInput {
  n += 1;
  return {
    trace_id: `trc_${n}`,
    action_id: 'http_post',
    action_version: '1.2.0',
    risk_level: 'high',
    provider_module_digest: `sha256:${'ab'.repeat(32)}`,
    request_hash: `sha256:${'cd'.repeat(32)}`,
    request: { url: 'https://api.example.com/items', body: { name: 'x', n: 1.5, tags: ['a', 'b'] } },
    targets: ['https://api.example.com/items'],
    secret_names: ['example_token'],
    egress_profile: { allowed_domains: ['api.example.com'], allowed_methods: ['POST'] },
    verifier_kind: 'http_status',
    budget_snapshot: { exhausted: false, exhausted_by: null, remaining_calls: 9, cost: 1, remaining_cost: null, window_resets_at: null },
    principal: 'agent-ops',
    session_id: 'ses_A',
    lease_jkt: 'jkt-agent-A',
    ...over,
  };
}

/** Records audit events; `failNext` makes the next append fail like a dead ledger. */
export class RecordingAudit implements AuditSink {
  events: AuditEventInput[] = [];
  failNext = false;
  async append(event: AuditEventInput): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      throw new GateError('ledger_unavailable', 'ledger down');
    }
    this.events.push(event);
  }
}
