// Turns the raw counters both stores compute into snapshots, debit results and the gate errors.
// Shared so the Redis and SQLite stores answer identically.
import { GateError } from '../errors.ts';
import type { BudgetDebitResult, BudgetKind, BudgetSnapshot } from './types.ts';

/** Counters as computed inside the atomic step; null = no such budget (unlimited). */
export interface RawBudgetState {
  status: 'ok' | 'exhausted' | 'session_not_found';
  by: BudgetKind | null;
  leaseLeft: number | null;
  callsLeft: number | null;
  costLeft: number | null;
  cost: number;
  /** End of the principal window (ms), or null without a principal budget. */
  windowEnd: number | null;
}

const clamp = (n: number | null) => (n === null ? null : Math.max(0, n));

function minCalls(a: number | null, b: number | null): number | null {
  if (a === null) return clamp(b);
  if (b === null) return clamp(a);
  return clamp(Math.min(a, b));
}

export function snapshotFromRaw(raw: RawBudgetState): BudgetSnapshot {
  if (raw.status === 'session_not_found') throw sessionNotFound();
  return {
    exhausted: raw.by !== null,
    exhausted_by: raw.by,
    remaining_calls: minCalls(raw.leaseLeft, raw.callsLeft),
    cost: raw.cost,
    remaining_cost: clamp(raw.costLeft),
    window_resets_at: raw.windowEnd === null ? null : new Date(raw.windowEnd).toISOString(),
  };
}

export function debitFromRaw(debitId: string, raw: RawBudgetState): BudgetDebitResult {
  return {
    debit_id: debitId,
    cost: raw.cost,
    remaining_calls: minCalls(raw.leaseLeft, raw.callsLeft),
    remaining_cost: clamp(raw.costLeft),
  };
}

export function sessionNotFound(): GateError {
  return new GateError('budget_session_not_found', 'lease declared budgets but its session counter is missing');
}

const WHICH: Record<BudgetKind, string> = {
  lease: 'lease max_calls',
  principal_calls: 'principal window max_calls',
  principal_cost: 'principal window max_cost',
};

/** Throws the gate error for a refused debit (`budget` names the budget that refused it). */
export function failFromStatus(raw: RawBudgetState, nowMs: number): never {
  if (raw.status === 'session_not_found') throw sessionNotFound();
  const by: BudgetKind = raw.by ?? 'lease';
  const extra: Record<string, unknown> = { budget: by };
  if (by !== 'lease' && raw.windowEnd !== null) extra.retry_after_seconds = Math.max(1, Math.ceil((raw.windowEnd - nowMs) / 1000));
  throw new GateError('budget_exhausted', `${WHICH[by]} budget exhausted`, { extra });
}
