// Approval hold: a call the policy sends to a human is stored as an immutable plan (with its
// hash) and answered 202 pending_approval. Nothing is debited or executed on this path.
import { GateError } from '../../errors.ts';
import type { Stage } from '../context.ts';
import type { JsonValue } from '../../approvals/types.ts';

export const approvalHold: Stage = async (ctx, deps) => {
  if (ctx.decision!.verdict !== 'require_approval') return;
  const m = ctx.action!.manifest;
  const record = await deps.approvals.create({
    trace_id: ctx.traceId,
    action_id: m.action_id,
    action_version: m.version,
    risk_level: ctx.decision!.decision.risk_level,
    provider_module_digest: m.provider_module_digest,
    request_hash: ctx.requestHash!,
    request: JSON.parse(ctx.canonical!) as JsonValue,
    targets: (ctx.targets ?? []).map((t) => t.href),
    secret_names: m.secrets.map((s) => s.name),
    egress_profile: m.egress,
    verifier_kind: m.verifier.kind,
    budget_snapshot: ctx.budget ?? null,
    principal: ctx.lease.principal,
    session_id: ctx.lease.sessionId,
    lease_jkt: ctx.lease.jkt,
  }, deps.approvalTtlSeconds);
  // A kill switch that landed after this call's lease check has already denied the pending list;
  // a hold created since would escape it. Re-read the epoch now that the record exists.
  const epoch = await deps.revocation.currentEpoch();
  if (epoch !== ctx.lease.epoch) {
    const out = await deps.approvals.deny(record.approval_id, 'portcullis', 'revoked: revocation epoch advanced');
    if (out.denied) {
      await deps.audit.append({
        type: 'approval_deny', decision: 'admin', operator: 'portcullis', trace_id: ctx.traceId, action_id: ctx.actionId,
        principal: ctx.lease.principal, session_id: ctx.lease.sessionId, reason_code: 'epoch_revoked', detail: { approval_id: record.approval_id },
      });
    }
    throw new GateError('invalid_lease', 'lease from a revoked epoch (kill switch during the hold)');
  }
  ctx.planHash = record.plan_hash;
  ctx.response = {
    status: 202,
    body: { decision: 'pending_approval', approval_id: record.approval_id, request_hash: ctx.requestHash!, trace_id: ctx.traceId },
  };
  await holdAudited(deps, record.approval_id, () => deps.audit.append({
    type: 'execute', decision: 'pending_approval', trace_id: ctx.traceId, action_id: ctx.actionId,
    principal: ctx.lease.principal, session_id: ctx.lease.sessionId, reason_code: 'approval_required',
    detail: {
      approval_id: record.approval_id, request_hash: ctx.requestHash!, plan_hash: record.plan_hash,
      approval_reasons: ctx.decision!.decision.approval_reasons, unresolved_domains: ctx.unresolvedDomains ?? [],
      policy_version: ctx.decision!.decision.policy_version,
    },
  }));
  ctx.audited = true;
};

/**
 * The hold's audit event must be written, or the approval withdrawn: the agent gets a 5xx and
 * retries, and a pending approval the ledger never saw would sit beside the retry's (approving
 * both would run the call twice).
 */
async function holdAudited(deps: Parameters<Stage>[1], approvalId: string, write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (e) {
    await deps.approvals.deny(approvalId, 'portcullis', 'withdrawn: the hold could not be recorded in the ledger').catch(() => undefined);
    throw e;
  }
}
