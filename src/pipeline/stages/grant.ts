// Budget debit (atomic, all counters or none), the signed grant (Ed25519, bound to request,
// plan, principal, session, lease key, epoch and approval), secret resolution, and the grant
// re-check just before the intent: signature, expiry, epoch, revocations and module digest.
import { GateError } from '../../errors.ts';
import { publish } from '../../observe.ts';
import type { Stage } from '../context.ts';
import { budgetQuery } from './policy.ts';
import { newGrantId, signGrant } from '../../ledger/grants.ts';

const iso = (ms: number) => new Date(ms).toISOString();

export const budgetDebit: Stage = async (ctx, deps) => {
  try {
    ctx.debit = await deps.budgets.debit({ ...budgetQuery(ctx), cost: ctx.budget?.cost });
  } catch (e) {
    if (e instanceof GateError && e.code === 'budget_exhausted') publish('budget_exhausted', { action_id: ctx.actionId });
    throw e;
  }
};

export const signedGrant: Stage = async (ctx, deps) => {
  const m = ctx.action!.manifest;
  const now = deps.clock.now();
  const a = ctx.approved;
  ctx.grant = signGrant({
    grant_id: newGrantId(),
    trace_id: ctx.traceId,
    action_id: m.action_id,
    action_version: m.version,
    module_digest: m.provider_module_digest,
    request_hash: ctx.requestHash!,
    plan_hash: ctx.planHash ?? null,
    principal: ctx.lease.principal,
    session_id: ctx.lease.sessionId,
    lease_jkt: ctx.lease.jkt,
    epoch: ctx.lease.epoch,
    ...(a ? { approval_id: a.approvalId, approved_by: a.operator, operator_binding: a.operatorJkt } : {}),
    issued_at: iso(now),
    expires_at: iso(now + deps.grantTtlSeconds * 1000),
  }, deps.keystore.grant);
};

export const resolveSecrets: Stage = async (ctx, deps) => {
  const decls = ctx.action!.manifest.secrets;
  if (decls.length === 0) return;
  const values = await deps.secrets.resolve(decls.map((d) => d.name));
  const missing = decls.filter((d) => d.required && !values.has(d.name)).map((d) => d.name);
  if (missing.length > 0) throw new GateError('secret_missing', `required secret not configured: ${missing.join(', ')}`, { extra: { secrets: missing } });
  ctx.secretValues = values;
};

export const grantRecheck: Stage = async (ctx, deps) => {
  const g = ctx.grant!;
  // The grant's signature is verified in the next stage, before anything is dispatched: by
  // Ledger.recordIntent, which consumes it, or (one-phase) by Ledger.checkGrant (one check, not two).
  if (Date.parse(g.expires_at) <= deps.clock.now()) throw new GateError('invalid_lease', 'grant expired before dispatch');
  // On the approved path a revoked requester is a stale approval (409), not an operator auth failure.
  const revoked = (why: string) => new GateError(ctx.approved ? 'approval_conflict' : 'invalid_lease', why);
  const rev = await deps.revocation.state(g.session_id, g.principal);
  if (rev.epoch !== g.epoch) throw revoked('grant from a revoked epoch');
  if (rev.sessionRevoked) throw revoked('session revoked');
  // A principal revocation covers every lease issued up to it. The lease was checked at auth; here
  // we catch one that landed since: after the call started, or (approved path) after the hold.
  const since = ctx.approved ? ctx.approved.heldAtMs : ctx.startedAt;
  if (!Number.isFinite(since) || rev.principalRevokedBefore >= since) throw revoked('principal revoked');
  if (ctx.config.sandbox.digestOf(g.action_id) !== g.module_digest) throw new GateError('action_digest_mismatch', 'module changed after the grant');
  if (g.request_hash !== ctx.requestHash) throw new GateError('internal_error', 'grant bound to another request');
};
