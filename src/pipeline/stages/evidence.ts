// Effect verification, the signed receipt and evidence finalization (receipt + final audit event
// + intent resolution in one ledger transaction), then the response. A failed finalization after
// the provider ran is 500 evidence_persistence_failed: the intent stays unresolved and is surfaced.
// A one-phase run (a provider without I/O: intent, receipt and event in one transaction) that
// could not be recorded had no effect: 503 ledger_unavailable and a refund. When its COMMIT's
// outcome is unknown the receipt is looked up: found, the call succeeded; not found, nothing was
// recorded; the lookup failing, it is treated as a failed finalization (500, no refund, the
// Idempotency-Key keeps that outcome), since the call may be on record.
import { GateError } from '../../errors.ts';
import { publish } from '../../observe.ts';
import type { Stage, VerificationResult, ExecContext } from '../context.ts';
import { buildReceipt, type FailureClass, type NormalizedResult, type VerificationOutcome } from '../../ledger/receipts.ts';
import type { JsonValue } from '../../ledger/canonical.ts';
import { prepareSecrets, scrubSecrets, SecretScrubber } from '../../egress/index.ts';
import type { AuditEventInput } from '../../contracts.ts';
import { uuidv7 } from '../../ids.ts';

export const verification: Stage = async (ctx) => {
  const run = ctx.run!;
  const v = ctx.action!.manifest.verifier;
  let result: VerificationResult;
  if (run.failure) result = { outcome: 'provider_failed_before_verification', reason: run.failure.failureClass };
  else if (v.kind === 'none') result = { outcome: 'unverifiable_declared' };
  else {
    const out = (run.output ?? {}) as Record<string, unknown>;
    const status = out.status;
    const missing = v.required_fields.filter((f) => out[f] === undefined || out[f] === null);
    if (typeof status !== 'number' || !v.expected_status.includes(status)) {
      result = { outcome: 'verification_failed', reason: `status ${String(status)} not in ${v.expected_status.join(',')}`, evidence: { status_code: status ?? null } };
    } else if (missing.length > 0) {
      result = { outcome: 'verification_failed', reason: `missing fields: ${missing.join(', ')}`, evidence: { status_code: status } };
    } else {
      const fields: Record<string, unknown> = {};
      for (const f of v.required_fields) fields[f] = out[f];
      result = { outcome: 'verified', evidence: { status_code: status, ...fields } };
    }
  }
  ctx.verification = result;
};

function normalized(ctx: ExecContext): NormalizedResult {
  const f = ctx.run!.failure;
  if (!f) {
    const status = (ctx.run!.output as { status?: unknown } | undefined)?.status;
    return { kind: 'success', summary: typeof status === 'number' ? `HTTP ${status}` : 'completed' };
  }
  if (f.failureClass === 'timeout') return { kind: 'timeout', reason: f.reason };
  return { kind: 'provider_failure', reason: `${f.failureClass}: ${f.reason}` };
}

function failureClass(ctx: ExecContext): FailureClass | null {
  const f = ctx.run!.failure;
  if (f) {
    if (f.failureClass === 'timeout') return 'timeout';
    if (f.failureClass === 'egress') return 'policy_violation';
    return 'provider_error';
  }
  return ctx.verification!.outcome === 'verification_failed' ? 'verification_failed' : null;
}

function outcome(v: VerificationResult): VerificationOutcome {
  switch (v.outcome) {
    case 'verified': return { status: 'verified', evidence: (v.evidence ?? {}) as { [k: string]: JsonValue } };
    case 'verification_failed': return { status: 'verification_failed', reason: v.reason ?? 'verification failed' };
    default: return v.reason ? { status: v.outcome, reason: v.reason } : { status: v.outcome };
  }
}

/** Secret values never reach the agent, whatever the provider or upstream did with them. */
function scrubbed(ctx: ExecContext, value: unknown): unknown {
  if (!ctx.secretValues || ctx.secretValues.size === 0) return value;
  const prepared = prepareSecrets({ declarations: ctx.action!.manifest.secrets, values: ctx.secretValues });
  return scrubSecrets(value, new SecretScrubber(prepared.values, prepared.literals));
}

export const receiptAndFinalize: Stage = async (ctx, deps) => {
  const m = ctx.action!.manifest;
  const run = ctx.run!;
  const v = ctx.verification!;
  const output = run.failure ? null : scrubbed(ctx, run.output);
  const receipt = buildReceipt({
    grant_id: ctx.grant!.grant_id,
    trace_id: ctx.traceId,
    action_id: m.action_id,
    action_version: m.version,
    provider_module_digest: m.provider_module_digest,
    request_hash: ctx.requestHash!,
    plan_hash: ctx.planHash ?? null,
    principal: ctx.lease.principal,
    session_id: ctx.lease.sessionId,
    provider_receipt: (output ?? null) as JsonValue,
    normalized_result: normalized(ctx),
    verification_outcome: outcome(v),
    effect_evidence: v.evidence ? [v.evidence as JsonValue] : [],
    started_at: run.startedAt,
    finished_at: run.finishedAt,
    failure_class: failureClass(ctx),
    result: output,
  }, deps.keystore.receipt);
  ctx.receipt = receipt;
  const ok = !run.failure;
  const auditEvent: AuditEventInput = {
    type: 'execute',
    decision: ok ? 'allow' : 'error',
    trace_id: ctx.traceId,
    action_id: m.action_id,
    principal: ctx.lease.principal,
    session_id: ctx.lease.sessionId,
    reason_code: ok ? v.outcome : run.failure!.code,
    ...(ctx.approved ? { operator: ctx.approved.operator } : {}),
    detail: {
      receipt_id: receipt.receipt_id, grant_id: ctx.grant!.grant_id, request_hash: ctx.requestHash!,
      verification_outcome: v.outcome, failure_class: receipt.failure_class,
      duration_ms: run.runtime.duration_ms, fuel_consumed: run.runtime.fuel_consumed, io_calls: run.runtime.io_calls,
      ...(ctx.approved ? { approval_id: ctx.approved.approvalId } : {}),
      ...(ctx.decision?.would_deny ? { would_deny: ctx.decision.would_deny.code } : {}),
    },
  };
  if (ctx.intentWithReceipt) {
    const intentId = `int_${uuidv7()}`;
    try {
      ctx.intentId = (await deps.ledger.complete({ grant: ctx.grant!, intent_id: intentId, receipt, auditEvent })).intent_id;
    } catch (e) {
      const err = e instanceof GateError ? e : new GateError('ledger_unavailable', 'evidence write failed', { cause: e });
      if (err.code !== 'internal_error') publish('audit_write_error', { trace_id: ctx.traceId });
      if (err.extra?.outcome !== 'unknown') throw err;
      // The COMMIT may have been applied: the stored receipt says which.
      let stored: unknown;
      try {
        stored = await deps.ledger.getReceipt(receipt.receipt_id);
      } catch {
        stored = undefined;
      }
      if (stored === null) throw err;
      // On record (or it may be): the call counts. Found, it succeeded; unknown, it answers as a
      // finalization that failed after the provider ran, and its key keeps that answer.
      ctx.intentId = intentId;
      if (stored === undefined) throw new GateError('evidence_persistence_failed', 'evidence write outcome unknown after execution', { cause: e });
    }
  } else {
    try {
      await deps.ledger.finalize({ intentId: ctx.intentId!, receipt, auditEvent });
    } catch (e) {
      publish('audit_write_error', { trace_id: ctx.traceId });
      throw new GateError('evidence_persistence_failed', 'receipt/audit write failed after execution', { cause: e });
    }
  }
  ctx.audited = true;
};

export const respond: Stage = async (ctx) => {
  const run = ctx.run!;
  if (run.failure) {
    // Evidence is written; the agent gets the stable code (502, or the egress guard's 403).
    const code = run.failure.code as ConstructorParameters<typeof GateError>[0];
    throw new GateError(code, `provider failed: ${run.failure.failureClass}`, {
      extra: { failure_class: run.failure.failureClass, receipt_id: ctx.receipt!.receipt_id, ...(run.failure.extra ?? {}) },
    });
  }
  const v = ctx.verification!;
  const body: Record<string, unknown> = {
    trace_id: ctx.traceId,
    action_id: ctx.actionId,
    grant_id: ctx.grant!.grant_id,
    receipt_id: ctx.receipt!.receipt_id,
    output: ctx.receipt!.provider_receipt,
    verification_outcome: v.outcome,
    verification: { outcome: v.outcome, is_fully_successful: v.outcome === 'verified' || v.outcome === 'unverifiable_declared' },
    runtime: { duration_ms: run.runtime.duration_ms, exit_code: run.runtime.exit_code, fuel_consumed: run.runtime.fuel_consumed },
  };
  if (ctx.approved) {
    body.approval = { approval_id: ctx.approved.approvalId, approved_by: ctx.approved.operator };
    if (ctx.approved.learnDomain) body.learned_domain = ctx.approved.learnDomain;
  }
  if (ctx.warning) body.warning = ctx.warning;
  ctx.response = { status: 200, body };
};
