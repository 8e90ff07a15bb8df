// The execute pipeline as data: ordered stage lists, one runner. Every terminal outcome of an
// execute (deny, hold, success, failure) writes exactly one audit event; a debit is refunded when
// the call never reached its execution intent. Unexpected failures become 500 internal_error.
import { GateError, toGateError, errorBody } from '../errors.ts';
import { publish } from '../observe.ts';
import type { ExecContext, PipelineDeps, Stage } from './context.ts';
import { registryLookup, trust } from './stages/lookup.ts';
import { canonicalizeRequest, inputSchema } from './stages/input.ts';
import { egressPrecheck } from './stages/egress-precheck.ts';
import { evaluatePolicy, policy } from './stages/policy.ts';
import { approvalHold } from './stages/approval-hold.ts';
import { budgetDebit, grantRecheck, resolveSecrets, signedGrant } from './stages/grant.ts';
import { dispatch, executionIntent, responseSchema } from './stages/dispatch.ts';
import { receiptAndFinalize, respond, verification } from './stages/evidence.ts';
import { toPreflightAnswer } from '../policy/preflight.ts';

/** Everything from the debit on: shared by the auto-allow path and the approved path. */
export const TAIL: readonly Stage[] = [
  budgetDebit, signedGrant, resolveSecrets, grantRecheck, executionIntent,
  dispatch, responseSchema, verification, receiptAndFinalize, respond,
];

/** drain and auth run as middleware before these. */
export const EXECUTE: readonly Stage[] = [
  registryLookup, trust, inputSchema, canonicalizeRequest, egressPrecheck, policy, approvalHold, ...TAIL,
];

/** The stored request must still hash to the plan's request_hash (the plan hash covers both). */
export const planRecheck: Stage = async (ctx) => {
  if (!ctx.approved || ctx.requestHash !== ctx.approved.requestHash) {
    throw new GateError('approval_conflict', 'stored request no longer matches the approved plan');
  }
};

/** The approved path re-checks what may have changed since the hold, then joins the tail. */
export const APPROVED: readonly Stage[] = [registryLookup, trust, inputSchema, canonicalizeRequest, planRecheck, egressPrecheck, ...TAIL];

export const PREFLIGHT: readonly Stage[] = [registryLookup, trust, inputSchema, canonicalizeRequest, egressPrecheck, evaluatePolicy];

export interface Outcome {
  status: number;
  body: Record<string, unknown>;
  error?: GateError;
}

/** Runs `stages` on `ctx`; returns the response or the gate error, with the audit event written once. */
export async function runStages(stages: readonly Stage[], ctx: ExecContext, deps: PipelineDeps): Promise<Outcome> {
  try {
    for (const stage of stages) {
      await stage(ctx, deps);
      if (ctx.response && stage !== respond) break;
    }
    if (!ctx.response) throw new GateError('internal_error', 'pipeline ended without a response');
    publish('execute', { action_id: ctx.actionId, outcome: ctx.response.status === 202 ? 'pending_approval' : 'allow' });
    return ctx.response;
  } catch (e) {
    const err = toGateError(e);
    if (ctx.debit && !ctx.intentId) {
      // The call never reached its intent: give the budget back (exactly once).
      await deps.budgets.refund(ctx.debit.debit_id).catch(() => false);
    }
    publish('execute', { action_id: ctx.actionId, outcome: err.code });
    if (err.status >= 500 && err.code === 'internal_error') {
      publish('error', { trace_id: ctx.traceId, code: err.code, path: `execute:${ctx.actionId}`, message: err.message, cause: err.cause ?? e });
    }
    if (!ctx.audited && ctx.mode !== 'preflight') {
      try {
        await deps.audit.append({
          type: 'execute',
          decision: err.status >= 500 ? 'error' : 'deny',
          trace_id: ctx.traceId,
          action_id: ctx.actionId,
          principal: ctx.lease.principal,
          session_id: ctx.lease.sessionId,
          reason_code: err.code,
          ...(ctx.approved ? { operator: ctx.approved.operator } : {}),
          detail: {
            status: err.status,
            ...(ctx.requestHash ? { request_hash: ctx.requestHash } : {}),
            ...(err.code === 'policy_denied' ? { deny_reason: String(err.extra?.deny_reason ?? ''), deny_reason_code: String(err.extra?.reason_code ?? '') } : {}),
            ...(ctx.decision ? { policy_version: ctx.decision.decision.policy_version } : {}),
            ...(ctx.approved ? { approval_id: ctx.approved.approvalId } : {}),
          },
        });
        ctx.audited = true;
      } catch (auditErr) {
        publish('audit_write_error', { trace_id: ctx.traceId });
        // A deny we cannot record is still a deny; an unexpected failure stays internal_error.
        if (err.status < 500) return { status: 503, body: { error: 'ledger_unavailable' }, error: new GateError('ledger_unavailable', 'audit write failed', { cause: auditErr }) };
      }
    }
    return { status: err.status, body: errorBody(err), error: err };
  }
}

/** Preflight: the same checks as execute up to policy; never debits, never holds, never executes. */
export async function runPreflight(ctx: ExecContext, deps: PipelineDeps): Promise<Outcome> {
  const out = await runStages([...PREFLIGHT, async (c) => {
    const answer = toPreflightAnswer(c.decision!);
    const ev = await deps.ledger.append({
      type: 'preflight', decision: 'info', trace_id: c.traceId, action_id: c.actionId,
      principal: c.lease.principal, session_id: c.lease.sessionId, reason_code: answer.reason_code,
      detail: { decision: answer.decision, request_hash: c.requestHash!, policy_hash: answer.policy_hash },
    });
    c.response = { status: 200, body: { ...answer, request_hash: c.requestHash, trace_id: c.traceId, evidence_event_id: ev.event_id } };
  }], ctx, deps);
  return out;
}
