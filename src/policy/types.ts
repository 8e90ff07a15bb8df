// The shapes that cross the policy boundary: the input the gate builds, the data document the
// store keeps, the decision the Rego entrypoint returns, and what the engine hands to callers.
// Types only; the JSON Schemas that enforce them live in schemas.ts and policy/data.schema.json.
import type { RiskLevel } from '../contracts.ts';

export type EnforcementMode = 'monitor' | 'warn' | 'enforce';

/** Input to `data.portcullis.authz.decision`, built by the execute pipeline for one call. */
export interface PolicyInput {
  principal: string;
  session_id: string;
  action: {
    id: string;
    version: string;
    risk_level: RiskLevel;
    /** Scopes the action needs on the lease, on top of `tools:call`. */
    required_scopes: string[];
    /** Sinks the action touches (e.g. `http_read`); always checked against the principal's sinks. */
    declared_side_effects: string[];
    /** Result of the trust stage: the provider module digest matches the pinned manifest digest. */
    digest_trusted: boolean;
  };
  /** The lease's scopes. */
  scopes: string[];
  budget: {
    exhausted: boolean;
    /** Calls left before this one; `null` when the lease has no call budget. */
    remaining_calls: number | null;
    /** What this call debits (>= 0). */
    cost: number;
  };
  /** Sinks the caller names for this call; united with `action.declared_side_effects`. */
  requested_sinks: string[];
  egress: {
    /** Target domains not covered by the manifest's allowlist (learned domains are applied by the policy). */
    unresolved_domains: string[];
    /** Filesystem paths not covered by the manifest (learned paths are applied by the policy). */
    unresolved_paths: string[];
    /** Paths that always need a human, learned or not. */
    sensitive_paths: string[];
  };
}

export interface AclEntry {
  actions: string[];
  /** Derived from the granted actions' `declared_side_effects`; never set by hand. */
  sinks: string[];
}

export type LearnedSource = 'approval' | 'cli';

export interface LearnedDomain {
  domain: string;
  action_id: string;
  source: LearnedSource;
  added_at: string;
}

export interface LearnedPath {
  path: string;
  action_id: string;
  source: LearnedSource;
  added_at: string;
}

/** The policy data document (`data` in Rego), validated by policy/data.schema.json. */
export interface PolicyData {
  policy_version: string;
  /** Bumped by every mutation; `policy_version` is derived from it. */
  revision: number;
  /** Principal (or `*`, defaults for every principal) -> granted actions and derived sinks. */
  acl: Record<string, AclEntry>;
  /** action id -> principal -> true: that pair skips the approval hold (and nothing else). */
  allowlist: Record<string, Record<string, true>>;
  risk_overrides: Record<string, RiskLevel>;
  learned_domains: LearnedDomain[];
  learned_paths: LearnedPath[];
  modes: { principals: Record<string, EnforcementMode>; actions: Record<string, EnforcementMode> };
}

export type DenyReasonCode =
  | 'invalid_input'
  | 'untrusted_digest'
  | 'not_in_acl'
  | 'missing_scope'
  | 'budget_exhausted'
  | 'sink_not_allowed';

export type ApprovalReason = 'risk_high' | 'risk_critical' | 'unresolved_domains' | 'unresolved_paths' | 'sensitive_paths';

/** Exactly what the Rego entrypoint returns (validated before use). */
export interface PolicyDecision {
  allow: boolean;
  requires_approval: boolean;
  deny_reason_code: DenyReasonCode | null;
  deny_reason: string | null;
  /** Set when monitor/warn turned a soft deny into a pass; `null` otherwise. */
  would_deny_reason_code: DenyReasonCode | null;
  would_deny_reason: string | null;
  approval_reasons: ApprovalReason[];
  budgets_after: { remaining_calls: number | null };
  approved_sinks: string[];
  policy_version: string;
  matched_rules: string[];
  enforcement_mode: EnforcementMode;
  /** The action's risk after `data.risk_overrides`. */
  risk_level: RiskLevel;
}

export type Verdict = 'allow' | 'deny' | 'require_approval';

/** What `PolicyEngine.evaluate` returns: the validated decision plus what the HTTP layer needs. */
export interface EvaluatedDecision {
  verdict: Verdict;
  decision: PolicyDecision;
  /** The soft deny monitor/warn let through, for the ledger and metrics; `null` when none. */
  would_deny: { code: DenyReasonCode; reason: string } | null;
  /** In warn mode with a would-deny: a client-safe line for a response header/body; else `null`. */
  warning: string | null;
  /** `sha256:` of the wasm digest and the data's policy_version (see policyHash). */
  policy_hash: string;
  /** Wall time of the evaluation in microseconds. */
  elapsed_us: number;
}

/** The preflight answer (reference/preflight-gateway-api.txt), built from an EvaluatedDecision. */
export interface PreflightAnswer {
  decision: Verdict;
  reason_code: string;
  risk_tier: RiskLevel;
  policy_hash: string;
  explain: { summary: string; matched_rules: string[]; next_steps: string[] };
}
