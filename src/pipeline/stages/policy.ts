// Budget snapshot + policy: builds the policy input from the lease, the manifest, the budget
// snapshot and the egress pre-check; evaluates the compiled Rego in-process. Deny -> 403
// policy_denied with a sanitized deny_reason; monitor/warn let a soft deny through, recorded.
import { GateError } from '../../errors.ts';
import { publish } from '../../observe.ts';
import type { Stage, ExecContext, PipelineDeps } from '../context.ts';
import type { PolicyInput } from '../../policy/types.ts';

export function budgetQuery(ctx: ExecContext) {
  return { sessionId: ctx.lease.sessionId, principal: ctx.lease.principal, actionId: ctx.actionId, lease: ctx.lease.budgets };
}

export function policyInput(ctx: ExecContext): PolicyInput {
  const m = ctx.action!.manifest;
  return {
    principal: ctx.lease.principal,
    session_id: ctx.lease.sessionId,
    action: {
      id: m.action_id,
      version: m.version,
      risk_level: m.risk_level,
      required_scopes: m.required_scopes,
      declared_side_effects: m.declared_side_effects,
      digest_trusted: true,
    },
    scopes: ctx.lease.scopes,
    budget: { exhausted: ctx.budget!.exhausted, remaining_calls: ctx.budget!.remaining_calls, cost: ctx.budget!.cost },
    requested_sinks: [],
    egress: { unresolved_domains: ctx.unresolvedDomains ?? [], unresolved_paths: [], sensitive_paths: [] },
  };
}

export async function evaluatePolicy(ctx: ExecContext, deps: PipelineDeps): Promise<void> {
  ctx.budget = await deps.budgets.snapshot(budgetQuery(ctx));
  const evaluated = deps.policy.evaluate(policyInput(ctx));
  ctx.decision = evaluated;
  publish('policy_decision', { verdict: evaluated.verdict, mode: evaluated.decision.enforcement_mode, action_id: ctx.actionId });
  if (evaluated.would_deny) ctx.warning = evaluated.warning;
}

export const policy: Stage = async (ctx, deps) => {
  await evaluatePolicy(ctx, deps);
  const d = ctx.decision!;
  if (d.verdict === 'deny') {
    if (d.decision.deny_reason_code === 'budget_exhausted') {
      publish('budget_exhausted', { action_id: ctx.actionId });
      throw new GateError('budget_exhausted', d.decision.deny_reason ?? 'budget exhausted');
    }
    throw new GateError('policy_denied', d.decision.deny_reason ?? 'denied by policy', {
      extra: { deny_reason: d.decision.deny_reason ?? 'denied by policy', reason_code: d.decision.deny_reason_code },
    });
  }
};
