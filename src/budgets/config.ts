// Validation of operator-set principal budgets and of debit inputs. Budgets are integers only, so
// every counter is exact (no floating-point drift between the Redis and SQLite implementations).
import { GateError } from '../errors.ts';
import type { BudgetQuery, PrincipalBudget } from './types.ts';

/** One year: the longest window an operator may set. */
export const MAX_WINDOW_SECONDS = 31_536_000;
const MAX_ACTION_COSTS = 1000;
const ACTION_ID = /^[A-Za-z0-9_.-]{1,128}$/;
// eslint-disable-next-line no-control-regex -- matching control characters is the point (log injection)
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const FIELDS = new Set(['principal', 'window_seconds', 'max_calls', 'max_cost', 'action_costs', 'default_cost']);

function bad(message: string): never {
  throw new GateError('invalid_input', message, { extra: { reason: message } });
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Checks a principal name used as a budget key: 1..256 characters, no control characters. */
export function checkPrincipal(principal: unknown): string {
  if (typeof principal !== 'string' || principal.length === 0 || principal.length > 256 || CONTROL.test(principal)) {
    bad('principal must be 1..256 characters without control characters');
  }
  return principal;
}

/**
 * Validates an operator's principal budget (unknown fields rejected) and returns a normalised copy.
 * Throws `invalid_input` naming the offending field.
 */
export function validatePrincipalBudget(input: unknown): PrincipalBudget {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) bad('budget must be an object');
  const o = input as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!FIELDS.has(k)) bad(`unknown field: ${k}`);
  const principal = checkPrincipal(o.principal);
  const ws = o.window_seconds;
  if (typeof ws !== 'number' || !Number.isSafeInteger(ws) || ws < 1 || ws > MAX_WINDOW_SECONDS) {
    bad(`window_seconds must be an integer in 1..${MAX_WINDOW_SECONDS}`);
  }
  const out: PrincipalBudget = { principal, window_seconds: ws };
  for (const k of ['max_calls', 'max_cost', 'default_cost'] as const) {
    if (o[k] === undefined) continue;
    if (!isCount(o[k])) bad(`${k} must be a non-negative integer`);
    out[k] = o[k];
  }
  if (out.max_calls === undefined && out.max_cost === undefined) bad('at least one of max_calls, max_cost is required');
  if (o.action_costs !== undefined) {
    const ac = o.action_costs;
    if (typeof ac !== 'object' || ac === null || Array.isArray(ac)) bad('action_costs must be an object');
    const entries = Object.entries(ac as Record<string, unknown>);
    if (entries.length > MAX_ACTION_COSTS) bad(`action_costs may hold at most ${MAX_ACTION_COSTS} entries`);
    const costs: Record<string, number> = {};
    for (const [id, cost] of entries) {
      if (!ACTION_ID.test(id)) bad(`action_costs key is not an action id: ${JSON.stringify(id).slice(0, 140)}`);
      if (!isCount(cost)) bad(`action_costs.${id} must be a non-negative integer`);
      costs[id] = cost;
    }
    out.action_costs = costs;
  }
  return out;
}

/** Validates a snapshot/debit query; a malformed one is a programming error in the caller. */
export function checkQuery(q: BudgetQuery): void {
  if (typeof q.sessionId !== 'string' || q.sessionId.length === 0) throw new TypeError('sessionId is required');
  checkPrincipal(q.principal);
  if (typeof q.actionId !== 'string' || q.actionId.length === 0) throw new TypeError('actionId is required');
  if (q.cost !== undefined && !isCount(q.cost)) throw new TypeError('cost must be a non-negative safe integer');
  if (q.lease?.max_calls !== undefined && !isCount(q.lease.max_calls)) throw new TypeError('lease.max_calls must be a non-negative safe integer');
}

/** The cost charged for `actionId`: operator's per-action figure, else explicit, else default (1). */
export function resolveCost(budget: PrincipalBudget | undefined, actionId: string, explicit: number | undefined): number {
  const listed = budget?.action_costs && Object.hasOwn(budget.action_costs, actionId) ? budget.action_costs[actionId] : undefined;
  return listed ?? explicit ?? budget?.default_cost ?? 1;
}

/** Start (ms) of the fixed window containing `nowMs`. */
export function windowStart(nowMs: number, windowSeconds: number): number {
  const w = windowSeconds * 1000;
  return nowMs - (nowMs % w);
}

/** A principal budget read back from a store; one that no longer validates is corrupt: fail closed. */
export function parseStoredBudget(raw: string): PrincipalBudget {
  try {
    return validatePrincipalBudget(JSON.parse(raw));
  } catch (e) {
    throw new GateError('budget_store_unavailable', 'stored principal budget is corrupt', { cause: e });
  }
}
