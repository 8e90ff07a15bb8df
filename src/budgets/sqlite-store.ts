// SQLite budget store (embedded mode). Every debit reads the session counter, the principal's
// budget and window, and writes all of them or none, inside a BEGIN IMMEDIATE transaction: exact
// across connections and processes sharing the file. The debits asked for in one event-loop turn
// share that transaction (TurnBatch), applied one after the other in arrival order (each sees the
// counters the previous ones left), and each caller is answered after the commit. Any SQLite
// failure is budget_store_unavailable (for every debit of that batch).
import { randomUUID } from 'node:crypto';
import { pingSqlite } from '../stores/ping.ts';
import type Database from 'better-sqlite3';
import { systemClock, type Clock } from '../contracts.ts';
import { GateError } from '../errors.ts';
import { checkPrincipal, checkQuery, parseStoredBudget, resolveCost, validatePrincipalBudget, windowStart } from './config.ts';
import { debitFromRaw, failFromStatus, snapshotFromRaw, type RawBudgetState } from './result.ts';
import type { BudgetDebitResult, BudgetKind, BudgetQuery, BudgetSnapshot, BudgetStore, PrincipalBudget } from './types.ts';
import { TurnBatch, type Settled } from '../stores/turn-batch.ts';

export interface SqliteBudgetStoreOptions {
  clock?: Clock;
  /** How long a debit can still be refunded, in seconds (default 3600). */
  debitRecordTtlSeconds?: number;
  /** True when a debit may commit at once instead of with its turn's batch (TurnBatch `alone`). */
  alone?: () => boolean;
}

/** Creates the budget tables if missing (idempotent). */
export function migrateSqliteBudgets(db: Database.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS budget_sessions (session_id TEXT PRIMARY KEY, max_calls INTEGER NOT NULL,
      used INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS budget_sessions_exp ON budget_sessions(expires_at);
    CREATE TABLE IF NOT EXISTS budget_principals (principal TEXT PRIMARY KEY, config TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS budget_windows (principal TEXT PRIMARY KEY, window_seconds INTEGER NOT NULL,
      window_start INTEGER NOT NULL, calls INTEGER NOT NULL, cost INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS budget_debits (debit_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, principal TEXT NOT NULL,
      lease INTEGER NOT NULL, windowed INTEGER NOT NULL, window_seconds INTEGER NOT NULL, window_start INTEGER NOT NULL,
      cost INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS budget_debits_exp ON budget_debits(expires_at);
  `);
}

interface SessionRow { max_calls: number; used: number }
interface WindowRow { window_seconds: number; window_start: number; calls: number; cost: number }
interface DebitRow { session_id: string; principal: string; lease: number; windowed: number; window_seconds: number; window_start: number; cost: number }

interface Computed {
  raw: RawBudgetState;
  session: boolean;
  budget: PrincipalBudget | undefined;
  wstart: number;
  wcalls: number;
  wcost: number;
}

function prepare(db: Database.Database) {
  return {
    initSession: db.prepare(`INSERT INTO budget_sessions (session_id, max_calls, used, expires_at) VALUES (?, ?, 0, ?)
      ON CONFLICT(session_id) DO UPDATE SET max_calls = excluded.max_calls, used = 0, expires_at = excluded.expires_at
      WHERE budget_sessions.expires_at <= ?`),
    getSession: db.prepare('SELECT max_calls, used FROM budget_sessions WHERE session_id = ? AND expires_at > ?'),
    extendSession: db.prepare('UPDATE budget_sessions SET expires_at = max(expires_at, ?) WHERE session_id = ? AND expires_at > ?'),
    incSession: db.prepare('UPDATE budget_sessions SET used = used + 1 WHERE session_id = ?'),
    decSession: db.prepare('UPDATE budget_sessions SET used = used - 1 WHERE session_id = ? AND used > 0 AND expires_at > ?'),
    getConfig: db.prepare('SELECT config FROM budget_principals WHERE principal = ?'),
    listConfig: db.prepare('SELECT config FROM budget_principals ORDER BY principal'),
    putConfig: db.prepare('INSERT INTO budget_principals (principal, config) VALUES (?, ?) ON CONFLICT(principal) DO UPDATE SET config = excluded.config'),
    delConfig: db.prepare('DELETE FROM budget_principals WHERE principal = ?'),
    getWindow: db.prepare('SELECT window_seconds, window_start, calls, cost FROM budget_windows WHERE principal = ?'),
    putWindow: db.prepare(`INSERT INTO budget_windows (principal, window_seconds, window_start, calls, cost) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(principal) DO UPDATE SET window_seconds = excluded.window_seconds, window_start = excluded.window_start,
      calls = excluded.calls, cost = excluded.cost`),
    refundWindow: db.prepare(`UPDATE budget_windows SET calls = MAX(calls - 1, 0), cost = MAX(cost - ?, 0)
      WHERE principal = ? AND window_seconds = ? AND window_start = ?`),
    delWindow: db.prepare('DELETE FROM budget_windows WHERE principal = ?'),
    putDebit: db.prepare(`INSERT INTO budget_debits (debit_id, session_id, principal, lease, windowed, window_seconds, window_start, cost, expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    takeDebit: db.prepare(`DELETE FROM budget_debits WHERE debit_id = ? AND expires_at > ?
      RETURNING session_id, principal, lease, windowed, window_seconds, window_start, cost`),
    purgeSessions: db.prepare('DELETE FROM budget_sessions WHERE expires_at <= ?'),
    purgeDebits: db.prepare('DELETE FROM budget_debits WHERE expires_at <= ?'),
  };
}

type Statements = ReturnType<typeof prepare>;

/** What a failed store operation throws: a GateError as it is, anything else budget_store_unavailable. */
function unavailable(e: unknown): GateError {
  return e instanceof GateError ? e : new GateError('budget_store_unavailable', 'sqlite budget store failed', { cause: e });
}

export class SqliteBudgetStore implements BudgetStore {
  private readonly clock: Clock;
  private readonly debitTtlMs: number;
  private readonly st: Statements;
  readonly #debits: TurnBatch<{ q: BudgetQuery; debitId: string }, Computed>;
  private readonly snapshotTx: (q: BudgetQuery) => Computed;
  private readonly refundTx: (debitId: string) => boolean;
  private lastPurge = 0;

  /** `db` is owned by the caller (one connection per store; several may share the file). */
  constructor(private readonly db: Database.Database, options: SqliteBudgetStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.debitTtlMs = (options.debitRecordTtlSeconds ?? 3600) * 1000;
    if (!Number.isSafeInteger(this.debitTtlMs) || this.debitTtlMs <= 0) throw new TypeError('debitRecordTtlSeconds must be a positive integer');
    // Without a busy timeout a concurrent writer would fail at once instead of waiting its turn.
    if (db.pragma('busy_timeout', { simple: true }) === 0) db.pragma('busy_timeout = 5000');
    migrateSqliteBudgets(db);
    this.st = prepare(db);
    const compute = (q: BudgetQuery, now: number): Computed => this.compute(q, now);
    this.snapshotTx = db.transaction((q: BudgetQuery) => compute(q, this.clock.now()));
    const debitOne = (q: BudgetQuery, debitId: string): Computed => {
      const now = this.clock.now();
      const c = compute(q, now);
      if (c.raw.status !== 'ok') return c;
      const { raw, budget } = c;
      if (c.session) {
        this.st.incSession.run(q.sessionId);
        raw.leaseLeft = (raw.leaseLeft ?? 0) - 1;
      }
      if (budget) {
        this.st.putWindow.run(q.principal, budget.window_seconds, c.wstart, c.wcalls + 1, c.wcost + raw.cost);
        if (raw.callsLeft !== null) raw.callsLeft -= 1;
        if (raw.costLeft !== null) raw.costLeft -= raw.cost;
      }
      // The record a refund takes back; a call that debited nothing (no lease budget, no principal
      // budget) has nothing to give back, and its transaction then writes nothing at all.
      if (c.session || budget) {
        this.st.putDebit.run(debitId, q.sessionId, q.principal, c.session ? 1 : 0, budget ? 1 : 0,
          budget?.window_seconds ?? 0, c.wstart, raw.cost, now + this.debitTtlMs);
      }
      if (now - this.lastPurge > 10_000) {
        this.st.purgeSessions.run(now);
        this.st.purgeDebits.run(now);
        this.lastPurge = now;
      }
      return c;
    };
    // Each debit in its own savepoint: one that fails (a corrupt stored budget, a bad bind) rolls
    // back alone and answers its own caller; the others commit.
    const debitSaved = db.transaction(debitOne);
    const debitAll = db.transaction((batch: ReadonlyArray<{ q: BudgetQuery; debitId: string }>) => batch.map((d): Settled<Computed> => {
      try {
        return { ok: true, value: debitSaved(d.q, d.debitId) };
      } catch (e) {
        return { ok: false, error: unavailable(e) };
      }
    }));
    this.#debits = new TurnBatch((batch) => debitAll.immediate(batch), unavailable, options.alone);
    const refund = db.transaction((debitId: string): boolean => {
      const now = this.clock.now();
      const d = this.st.takeDebit.get(debitId, now) as DebitRow | undefined;
      if (!d) return false;
      if (d.lease === 1) this.st.decSession.run(d.session_id, now);
      if (d.windowed === 1) this.st.refundWindow.run(d.cost, d.principal, d.window_seconds, d.window_start);
      return true;
    });
    this.refundTx = (id) => refund.immediate(id);
  }

  private compute(q: BudgetQuery, now: number): Computed {
    const s = this.st.getSession.get(q.sessionId, now) as SessionRow | undefined;
    const empty = { session: false, budget: undefined, wstart: 0, wcalls: 0, wcost: 0 };
    if (!s && q.lease?.max_calls !== undefined) {
      return { ...empty, raw: { status: 'session_not_found', by: null, leaseLeft: null, callsLeft: null, costLeft: null, cost: 0, windowEnd: null } };
    }
    const cfgRow = this.st.getConfig.get(q.principal) as { config: string } | undefined;
    const budget = cfgRow ? this.parseConfig(cfgRow.config) : undefined;
    const cost = resolveCost(budget, q.actionId, q.cost);
    const leaseLeft = s ? s.max_calls - s.used : null;
    let callsLeft: number | null = null;
    let costLeft: number | null = null;
    let wstart = 0;
    let wcalls = 0;
    let wcost = 0;
    let windowEnd: number | null = null;
    if (budget) {
      wstart = windowStart(now, budget.window_seconds);
      const w = this.st.getWindow.get(q.principal) as WindowRow | undefined;
      // A window never moves backwards (same rule as the Redis store, where instance clocks may differ).
      if (w && w.window_seconds === budget.window_seconds && w.window_start >= wstart) {
        wstart = w.window_start;
        wcalls = w.calls;
        wcost = w.cost;
      }
      windowEnd = wstart + budget.window_seconds * 1000;
      if (budget.max_calls !== undefined) callsLeft = budget.max_calls - wcalls;
      if (budget.max_cost !== undefined) costLeft = budget.max_cost - wcost;
    }
    let by: BudgetKind | null = null;
    if (leaseLeft !== null && leaseLeft < 1) by = 'lease';
    else if (callsLeft !== null && callsLeft < 1) by = 'principal_calls';
    else if (costLeft !== null && costLeft < cost) by = 'principal_cost';
    return {
      session: s !== undefined,
      budget,
      wstart,
      wcalls,
      wcost,
      raw: { status: by === null ? 'ok' : 'exhausted', by, leaseLeft, callsLeft, costLeft, cost, windowEnd },
    };
  }

  private run<T>(op: () => T): T {
    try {
      return op();
    } catch (e) {
      throw unavailable(e);
    }
  }

  async initSession(sessionId: string, budgets: { max_calls: number }, ttlSeconds: number): Promise<void> {
    if (typeof sessionId !== 'string' || sessionId.length === 0) throw new TypeError('sessionId is required');
    if (!Number.isSafeInteger(budgets.max_calls) || budgets.max_calls < 0) throw new TypeError('max_calls must be a non-negative integer');
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new TypeError('ttlSeconds must be positive');
    const now = this.clock.now();
    this.run(() => this.st.initSession.run(sessionId, budgets.max_calls, now + Math.ceil(ttlSeconds * 1000), now));
  }

  async extendSession(sessionId: string, ttlSeconds: number): Promise<void> {
    if (typeof sessionId !== 'string' || sessionId.length === 0) throw new TypeError('sessionId is required');
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new TypeError('ttlSeconds must be positive');
    const now = this.clock.now();
    this.run(() => this.st.extendSession.run(now + Math.ceil(ttlSeconds * 1000), sessionId, now));
  }

  async snapshot(q: BudgetQuery): Promise<BudgetSnapshot> {
    checkQuery(q);
    const c = this.run(() => this.snapshotTx(q));
    return snapshotFromRaw(c.raw);
  }

  async debit(q: BudgetQuery): Promise<BudgetDebitResult> {
    checkQuery(q);
    const debitId = `dbt_${randomUUID()}`;
    // A copy: the query is read when the batch runs, later in this turn, and was checked now.
    const c = await this.#debits.add({ q: { ...q, lease: q.lease && { ...q.lease } }, debitId });
    if (c.raw.status !== 'ok') failFromStatus(c.raw, this.clock.now());
    return debitFromRaw(debitId, c.raw);
  }

  async refund(debitId: string): Promise<boolean> {
    if (typeof debitId !== 'string' || !debitId.startsWith('dbt_')) return false;
    return this.run(() => this.refundTx(debitId));
  }

  async setPrincipalBudget(budget: PrincipalBudget): Promise<PrincipalBudget> {
    const b = validatePrincipalBudget(budget);
    this.run(() => this.st.putConfig.run(b.principal, JSON.stringify(b)));
    return b;
  }

  async getPrincipalBudget(principal: string): Promise<PrincipalBudget | undefined> {
    checkPrincipal(principal);
    const row = this.run(() => this.st.getConfig.get(principal) as { config: string } | undefined);
    return row ? this.parseConfig(row.config) : undefined;
  }

  async listPrincipalBudgets(): Promise<PrincipalBudget[]> {
    const rows = this.run(() => this.st.listConfig.all() as { config: string }[]);
    return rows.map((r) => this.parseConfig(r.config));
  }

  async removePrincipalBudget(principal: string): Promise<boolean> {
    checkPrincipal(principal);
    return this.run(() => this.db.transaction(() => {
      this.st.delWindow.run(principal);
      return this.st.delConfig.run(principal).changes === 1;
    }).immediate());
  }

  private parseConfig(raw: string): PrincipalBudget {
    return parseStoredBudget(raw);
  }

  async ping(): Promise<boolean> {
    return pingSqlite(this.db);
  }

  /** The database belongs to the caller. */
  async close(): Promise<void> {}
}
