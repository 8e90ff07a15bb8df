// Turns an engine decision into the preflight answer (reference/preflight-gateway-api.txt):
// a verdict, one stable dotted reason code, the risk tier, the policy hash and an explanation.
// Pure; nothing here can widen a verdict.
import { sanitizeReason } from '../errors.ts';
import type { ApprovalReason, DenyReasonCode, EvaluatedDecision, PreflightAnswer } from './types.ts';

const DENY_STEPS: Record<DenyReasonCode, string> = {
  invalid_input: 'Fix the request; the gate could not build a valid policy input.',
  untrusted_digest: 'The provider module does not match its pinned digest; an operator must rebuild or re-pin it.',
  not_in_acl: 'An operator can grant the action to this principal (POST /v1/admin/policy/grant).',
  missing_scope: 'Request a new lease that includes the missing scopes.',
  budget_exhausted: 'The call budget is spent; request a new lease with a budget.',
  sink_not_allowed: 'Grant the principal an action that declares these sinks, or stop requesting them.',
};

const APPROVAL_STEPS: Record<ApprovalReason, string> = {
  risk_high: 'A human operator must approve this high-risk action.',
  risk_critical: 'A human operator must approve this critical-risk action.',
  unresolved_domains: 'An operator must approve the call, or learn the domains (POST /v1/admin/domains).',
  unresolved_paths: 'An operator must approve the call, or learn the paths (POST /v1/admin/paths).',
  sensitive_paths: 'A human operator must approve access to sensitive paths.',
};

/**
 * Reason codes: `policy.<deny code>` for a deny, `approval.<first reason>` for a hold,
 * `policy.would_deny.<code>` for a deny that monitor/warn let through, `approval.allowlisted`
 * when the allowlist skipped a hold, `policy.allowed` otherwise.
 */
export function preflightReasonCode(ev: EvaluatedDecision): string {
  const d = ev.decision;
  if (ev.verdict === 'deny') return `policy.${d.deny_reason_code ?? 'invalid_input'}`;
  if (ev.verdict === 'require_approval') return `approval.${d.approval_reasons[0] ?? 'required'}`;
  if (ev.would_deny) return `policy.would_deny.${ev.would_deny.code}`;
  if (d.matched_rules.includes('allowlist.skip_approval')) return 'approval.allowlisted';
  return 'policy.allowed';
}

/** Builds the preflight answer shape from an evaluated decision. */
export function toPreflightAnswer(ev: EvaluatedDecision): PreflightAnswer {
  const d = ev.decision;
  const steps: string[] = [];
  let summary: string;
  if (ev.verdict === 'deny') {
    summary = `Policy ${d.policy_version}: deny (${d.deny_reason_code}): ${d.deny_reason ?? ''}`;
    if (d.deny_reason_code) steps.push(DENY_STEPS[d.deny_reason_code]);
  } else if (ev.verdict === 'require_approval') {
    summary = `Policy ${d.policy_version}: require_approval (${d.approval_reasons.join(', ')}).`;
    for (const r of d.approval_reasons) steps.push(APPROVAL_STEPS[r]);
  } else {
    summary = `Policy ${d.policy_version}: allow.`;
  }
  if (ev.would_deny) {
    summary += ` ${d.enforcement_mode} mode: would deny (${ev.would_deny.code}): ${ev.would_deny.reason}`;
    steps.push(DENY_STEPS[ev.would_deny.code]);
  }
  return {
    decision: ev.verdict,
    reason_code: preflightReasonCode(ev),
    risk_tier: d.risk_level,
    policy_hash: ev.policy_hash,
    explain: { summary: sanitizeReason(summary), matched_rules: [...d.matched_rules], next_steps: steps },
  };
}
