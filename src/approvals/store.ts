// Approval store on kysely: one implementation for PostgreSQL (several gate instances) and SQLite
// (embedded). Every state change is a conditional UPDATE ... WHERE state = <expected>, so exactly one
// concurrent caller wins a claim or a deny. Database failures are approval_store_unavailable.
import { randomBytes } from 'node:crypto';
import { PostgresAdapter, sql, type ColumnType, type Kysely, type Selectable } from 'kysely';
import { uuidv7 } from '../ids.ts';
import { systemClock, type Clock } from '../contracts.ts';
import { GateError } from '../errors.ts';
import { canonicalJson, computePlanHash, normalisePlanInput } from './plan.ts';
import type {
  ApprovalPlan, ApprovalPlanInput, ApprovalRecord, ApprovalState, ApprovalStore, ClaimOutcome, DenyOutcome,
  ListApprovalsOptions, ReapedApproval, StoredResult,
} from './types.ts';
import { APPROVAL_STATES } from './types.ts';

/** Milliseconds; PostgreSQL's bigint arrives as a string, SQLite's as a number. */
type Ms = ColumnType<number | string, number, number>;
type NullableMs = ColumnType<number | string | null, number | null, number | null>;

interface ApprovalsTable {
  approval_id: string;
  trace_id: string;
  action_id: string;
  principal: string;
  session_id: string;
  state: ApprovalState;
  plan: string;
  plan_hash: string;
  created_at: Ms;
  expires_at: Ms;
  claimed_by: string | null;
  claim_token: string | null;
  claimed_at: NullableMs;
  decided_by: string | null;
  decided_at: NullableMs;
  deny_reason: string | null;
  result: string | null;
  updated_at: Ms;
}

interface ApprovalDb {
  portcullis_approvals: ApprovalsTable;
}

type Row = Selectable<ApprovalsTable>;

export const APPROVALS_TABLE = 'portcullis_approvals';
export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 200;

/**
 * Creates the approvals table and its indexes if missing. Idempotent, and safe when several gate
 * instances start at once (PostgreSQL: under an advisory transaction lock).
 */
/**
 * The approvals table and indexes (idempotent DDL, no transaction of its own): for a migration
 * runner that already holds a lock inside a transaction, such as LedgerDatabase.migrate().
 */
export async function approvalsSchema(d: Kysely<any>): Promise<void> {
  await d.schema.createTable(APPROVALS_TABLE).ifNotExists()
    .addColumn('approval_id', 'varchar(64)', (c) => c.primaryKey())
    .addColumn('trace_id', 'text', (c) => c.notNull())
    .addColumn('action_id', 'text', (c) => c.notNull())
    .addColumn('principal', 'text', (c) => c.notNull())
    .addColumn('session_id', 'text', (c) => c.notNull())
    .addColumn('state', 'varchar(16)', (c) => c.notNull())
    .addColumn('plan', 'text', (c) => c.notNull())
    .addColumn('plan_hash', 'varchar(80)', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('claimed_by', 'text')
    .addColumn('claim_token', 'varchar(64)')
    .addColumn('claimed_at', 'bigint')
    .addColumn('decided_by', 'text')
    .addColumn('decided_at', 'bigint')
    .addColumn('deny_reason', 'text')
    .addColumn('result', 'text')
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await d.schema.createIndex(`${APPROVALS_TABLE}_state_exp`).ifNotExists().on(APPROVALS_TABLE).columns(['state', 'expires_at']).execute();
  await d.schema.createIndex(`${APPROVALS_TABLE}_created`).ifNotExists().on(APPROVALS_TABLE).columns(['created_at', 'approval_id']).execute();
}

export async function migrateApprovals(db: Kysely<any>): Promise<void> {
  const ddl = approvalsSchema;
  try {
    if (db.getExecutor().adapter instanceof PostgresAdapter) {
      await db.transaction().execute(async (trx) => {
        // A transaction-scoped lock of our own (kysely's migration lock is session-scoped and would
        // stay held by the pooled connection after commit).
        await sql`select pg_advisory_xact_lock(hashtext(${`${APPROVALS_TABLE}_migration`}))`.execute(trx);
        await ddl(trx);
      });
    } else {
      await ddl(db);
    }
  } catch (e) {
    throw new GateError('approval_store_unavailable', 'approval store migration failed', { cause: e });
  }
}

export interface KyselyApprovalStoreOptions {
  clock?: Clock;
  /** New approval ids (default `apr_<uuidv7>`). */
  newId?: () => string;
  /** A claim held longer than this is reaped to `failed` (default 900 s, longer than any execution). */
  claimTimeoutSeconds?: number;
}

/** Approval ids are `apr_<uuid>` (or test ids of the same alphabet); anything else cannot exist. */
const ID = /^[A-Za-z0-9_-]{1,64}$/;

const toMs = (v: number | string | bigint | null): number | null => (v === null ? null : Number(v));
const iso = (v: number | string | bigint | null): string | null => (v === null ? null : new Date(Number(v)).toISOString());

export class KyselyApprovalStore implements ApprovalStore {
  private readonly db: Kysely<ApprovalDb>;
  private readonly clock: Clock;
  private readonly newId: () => string;
  private readonly claimTimeoutMs: number;

  /** Call `migrateApprovals(db)` once before use. The Kysely instance belongs to the caller. */
  constructor(db: Kysely<any>, options: KyselyApprovalStoreOptions = {}) {
    this.db = db as Kysely<ApprovalDb>;
    this.clock = options.clock ?? systemClock;
    this.newId = options.newId ?? (() => `apr_${uuidv7()}`);
    this.claimTimeoutMs = (options.claimTimeoutSeconds ?? 900) * 1000;
    if (!Number.isSafeInteger(this.claimTimeoutMs) || this.claimTimeoutMs <= 0) throw new TypeError('claimTimeoutSeconds must be a positive integer');
  }

  private async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e) {
      if (e instanceof GateError) throw e;
      throw new GateError('approval_store_unavailable', 'approval store failed', { cause: e });
    }
  }

  private toRecord(row: Row, now: number): ApprovalRecord {
    let plan: ApprovalPlan;
    let result: StoredResult | null;
    try {
      plan = JSON.parse(row.plan) as ApprovalPlan;
      result = row.result === null ? null : (JSON.parse(row.result) as StoredResult);
    } catch (e) {
      throw new GateError('approval_store_unavailable', 'stored approval is corrupt', { cause: e });
    }
    const expired = row.state === 'pending' && Number(row.expires_at) <= now;
    return {
      approval_id: row.approval_id,
      plan,
      plan_hash: row.plan_hash,
      state: expired ? 'expired' : row.state,
      claimed_by: row.claimed_by,
      claimed_at: iso(row.claimed_at),
      decided_by: row.decided_by,
      decided_at: iso(row.decided_at),
      deny_reason: row.deny_reason,
      result,
    };
  }

  async create(input: ApprovalPlanInput, ttlSeconds: number): Promise<ApprovalRecord> {
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new TypeError('ttlSeconds must be positive');
    const now = this.clock.now();
    const expires = now + Math.ceil(ttlSeconds * 1000);
    const approvalId = this.newId();
    const plan: ApprovalPlan = {
      ...normalisePlanInput(input),
      approval_id: approvalId,
      created_at: new Date(now).toISOString(),
      expires_at: new Date(expires).toISOString(),
    };
    const planHash = computePlanHash(plan);
    await this.guard(() => this.db.insertInto(APPROVALS_TABLE).values({
      approval_id: approvalId,
      trace_id: plan.trace_id,
      action_id: plan.action_id,
      principal: plan.principal,
      session_id: plan.session_id,
      state: 'pending',
      plan: canonicalJson(plan),
      plan_hash: planHash,
      created_at: now,
      expires_at: expires,
      claimed_by: null,
      claim_token: null,
      claimed_at: null,
      decided_by: null,
      decided_at: null,
      deny_reason: null,
      result: null,
      updated_at: now,
    }).execute());
    return { approval_id: approvalId, plan, plan_hash: planHash, state: 'pending', claimed_by: null, claimed_at: null, decided_by: null, decided_at: null, deny_reason: null, result: null };
  }

  async find(id: string): Promise<ApprovalRecord | undefined> {
    if (typeof id !== 'string' || !ID.test(id)) return undefined;
    const row = await this.guard(() => this.db.selectFrom(APPROVALS_TABLE).selectAll().where('approval_id', '=', id).executeTakeFirst());
    return row ? this.toRecord(row, this.clock.now()) : undefined;
  }

  async get(id: string): Promise<ApprovalRecord> {
    const r = await this.find(id);
    if (!r || r.state === 'expired') throw new GateError('approval_not_found', 'approval not found or expired');
    return r;
  }

  async list(options: ListApprovalsOptions = {}): Promise<ApprovalRecord[]> {
    const limit = Math.min(options.limit ?? DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('limit must be a positive integer');
    const status = options.status;
    if (status !== undefined && !APPROVAL_STATES.includes(status)) throw new TypeError(`unknown status: ${String(status)}`);
    const now = this.clock.now();
    const rows = await this.guard(() => {
      let q = this.db.selectFrom(APPROVALS_TABLE).selectAll();
      if (status === 'pending') q = q.where('state', '=', 'pending').where('expires_at', '>', now);
      else if (status === 'expired') {
        q = q.where((eb) => eb.or([
          eb('state', '=', 'expired'),
          eb.and([eb('state', '=', 'pending'), eb('expires_at', '<=', now)]),
        ]));
      } else if (status !== undefined) q = q.where('state', '=', status);
      return q.orderBy('created_at', 'desc').orderBy('approval_id', 'desc').limit(limit).execute();
    });
    return rows.map((r) => this.toRecord(r, now));
  }

  async claim(id: string, operator: string): Promise<ClaimOutcome> {
    if (!ID.test(id)) return { won: false, current: undefined };
    const now = this.clock.now();
    const token = randomBytes(16).toString('hex');
    const row = await this.guard(() => this.db.updateTable(APPROVALS_TABLE)
      .set({ state: 'claimed', claimed_by: operator, claim_token: token, claimed_at: now, updated_at: now })
      .where('approval_id', '=', id).where('state', '=', 'pending').where('expires_at', '>', now)
      .returningAll().executeTakeFirst());
    if (row) return { won: true, claimed: { record: this.toRecord(row, now), claim_token: token } };
    return { won: false, current: await this.find(id) };
  }

  async complete(id: string, outcome: 'approved' | 'failed', result: StoredResult, claimToken: string): Promise<boolean> {
    if (outcome !== 'approved' && outcome !== 'failed') throw new TypeError('outcome must be approved or failed');
    const now = this.clock.now();
    const body = canonicalJson(result);
    const r = await this.guard(() => this.db.updateTable(APPROVALS_TABLE)
      .set((eb) => ({ state: outcome, result: body, decided_by: eb.ref('claimed_by'), decided_at: now, claim_token: null, updated_at: now }))
      .where('approval_id', '=', id).where('state', '=', 'claimed').where('claim_token', '=', claimToken)
      .executeTakeFirst());
    return r.numUpdatedRows === 1n;
  }

  async release(id: string, claimToken: string): Promise<boolean> {
    const now = this.clock.now();
    const r = await this.guard(() => this.db.updateTable(APPROVALS_TABLE)
      .set({ state: 'pending', claimed_by: null, claim_token: null, claimed_at: null, updated_at: now })
      .where('approval_id', '=', id).where('state', '=', 'claimed').where('claim_token', '=', claimToken)
      .executeTakeFirst());
    return r.numUpdatedRows === 1n;
  }

  async deny(id: string, operator: string, reason: string | null): Promise<DenyOutcome> {
    if (!ID.test(id)) return { denied: false, current: undefined };
    const now = this.clock.now();
    const row = await this.guard(() => this.db.updateTable(APPROVALS_TABLE)
      .set({ state: 'denied', decided_by: operator, decided_at: now, deny_reason: reason, updated_at: now })
      .where('approval_id', '=', id).where('state', '=', 'pending').where('expires_at', '>', now)
      .returningAll().executeTakeFirst());
    if (row) return { denied: true, record: this.toRecord(row, now) };
    return { denied: false, current: await this.find(id) };
  }

  async reapExpired(): Promise<ReapedApproval[]> {
    const now = this.clock.now();
    const cols = ['approval_id', 'trace_id', 'action_id', 'principal', 'session_id'] as const;
    return this.guard(async () => {
      const expired = await this.db.updateTable(APPROVALS_TABLE)
        .set({ state: 'expired', decided_at: now, updated_at: now })
        .where('state', '=', 'pending').where('expires_at', '<=', now)
        .returning(cols).execute();
      // A claim this old belongs to an executor that died; never re-run it (it may have executed).
      const abandoned = await this.db.updateTable(APPROVALS_TABLE)
        .set({ state: 'failed', decided_at: now, claim_token: null, updated_at: now })
        .where('state', '=', 'claimed').where('claimed_at', '<=', now - this.claimTimeoutMs)
        .returning(cols).execute();
      return [
        ...expired.map((r) => ({ ...r, state: 'expired' as const, reason: 'expired' as const })),
        ...abandoned.map((r) => ({ ...r, state: 'failed' as const, reason: 'claim_abandoned' as const })),
      ];
    });
  }

  async pollForSession(id: string, sessionId: string): Promise<{ approval_id: string; state: ApprovalState }> {
    const r = await this.get(id);
    if (r.plan.session_id !== sessionId) throw new GateError('session_mismatch', 'approval belongs to another session');
    return { approval_id: r.approval_id, state: r.state };
  }

  async pendingCount(): Promise<number> {
    const now = this.clock.now();
    const row = await this.guard(() => this.db.selectFrom(APPROVALS_TABLE)
      .select((eb) => eb.fn.countAll().as('n'))
      .where('state', '=', 'pending').where('expires_at', '>', now).executeTakeFirst());
    return Number(row?.n ?? 0);
  }

  async oldestPendingAgeSeconds(): Promise<number> {
    const now = this.clock.now();
    const row = await this.guard(() => this.db.selectFrom(APPROVALS_TABLE)
      .select((eb) => eb.fn.min('created_at').as('oldest'))
      .where('state', '=', 'pending').where('expires_at', '>', now).executeTakeFirst());
    const oldest = toMs((row?.oldest ?? null) as number | string | null);
    return oldest === null ? 0 : Math.max(0, Math.floor((now - oldest) / 1000));
  }
}
