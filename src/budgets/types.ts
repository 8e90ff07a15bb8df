// Budget store contract: lease budgets (max_calls per session, created at lease issuance) and
// operator-set per-principal window budgets (calls and cost per fixed window). A debit checks every
// applicable counter and debits all of them or none; any store failure is budget_store_unavailable.

/** The budgets a lease declared (the lease JWT's `budgets` claim). */
export interface LeaseBudgets {
  max_calls?: number;
}

/**
 * An operator-set budget for one principal: at most `max_calls` calls and/or `max_cost` cost units
 * per fixed window of `window_seconds` (windows are aligned to the Unix epoch). An action's cost is
 * `action_costs[action_id]`, else the caller's explicit cost, else `default_cost` (default 1).
 */
export interface PrincipalBudget {
  principal: string;
  window_seconds: number;
  max_calls?: number;
  max_cost?: number;
  action_costs?: Record<string, number>;
  default_cost?: number;
}

/** What a snapshot or a debit is about. */
export interface BudgetQuery {
  sessionId: string;
  principal: string;
  actionId: string;
  /**
   * The lease's declared budgets (pass `lease.budgets`). Required on purpose: when it declares
   * `max_calls`, a missing session counter is `budget_session_not_found`, never "unlimited".
   */
  lease: LeaseBudgets | undefined;
  /** Explicit cost of this call (e.g. from the manifest); an operator's `action_costs` entry wins. */
  cost?: number;
}

/** Which budget stopped a call. */
export type BudgetKind = 'lease' | 'principal_calls' | 'principal_cost';

/** Budget state for policy input and for the approval plan. `null` means unlimited. */
export interface BudgetSnapshot {
  /** True when a debit of this action's cost would be refused now. */
  exhausted: boolean;
  /** The first budget that would refuse it, or null. */
  exhausted_by: BudgetKind | null;
  /** Calls left: the smaller of the lease's and the principal window's; null when neither is set. */
  remaining_calls: number | null;
  /** The cost this action would be charged. */
  cost: number;
  /** Cost units left in the principal's window; null when no cost budget is set. */
  remaining_cost: number | null;
  /** When the principal window resets (ISO 8601), or null without a principal budget. */
  window_resets_at: string | null;
}

/** A successful debit. Keep it to refund the call if it never reached dispatch. */
export interface BudgetDebitResult {
  debit_id: string;
  cost: number;
  /** Calls left after this debit (null = unlimited). */
  remaining_calls: number | null;
  /** Cost left after this debit (null = no cost budget). */
  remaining_cost: number | null;
}

export interface BudgetStore {
  /** Creates the session's lease counter (at lease issuance). Never resets an existing counter. */
  initSession(sessionId: string, budgets: { max_calls: number }, ttlSeconds: number): Promise<void>;
  /**
   * Keeps a live session counter for at least `ttlSeconds` more (lease renewal). Never creates,
   * resets or shortens a counter; a counter already gone stays gone (budget_session_not_found).
   */
  extendSession(sessionId: string, ttlSeconds: number): Promise<void>;
  /** Read-only view for policy input; throws budget_session_not_found / budget_store_unavailable. */
  snapshot(query: BudgetQuery): Promise<BudgetSnapshot>;
  /** Atomically checks every applicable counter and debits all of them, or throws budget_exhausted. */
  debit(query: BudgetQuery): Promise<BudgetDebitResult>;
  /**
   * Gives a debit back exactly once (true), e.g. when the call was refused before dispatch.
   * False when the debit is unknown, already refunded or its record has expired. A principal
   * window that has since rolled over is not credited.
   */
  refund(debitId: string): Promise<boolean>;
  setPrincipalBudget(budget: PrincipalBudget): Promise<PrincipalBudget>;
  getPrincipalBudget(principal: string): Promise<PrincipalBudget | undefined>;
  listPrincipalBudgets(): Promise<PrincipalBudget[]>;
  /** True when a budget was removed. Its current window counter is dropped with it. */
  removePrincipalBudget(principal: string): Promise<boolean>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
