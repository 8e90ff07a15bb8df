// Approval records: an immutable execution plan (bound by its plan hash) plus lifecycle state
// pending -> claimed -> approved | failed, pending -> denied | expired.
import type { BudgetSnapshot } from '../budgets/types.ts';
import type { EgressProfile, RiskLevel } from '../contracts.ts';

export type ApprovalState = 'pending' | 'claimed' | 'approved' | 'denied' | 'failed' | 'expired';
export const APPROVAL_STATES: readonly ApprovalState[] = ['pending', 'claimed', 'approved', 'denied', 'failed', 'expired'];

/** A JSON value (what a canonical request body may contain). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** What the pipeline supplies when it holds a call for approval. Everything needed to execute later. */
export interface ApprovalPlanInput {
  trace_id: string;
  action_id: string;
  action_version: string;
  risk_level: RiskLevel;
  provider_module_digest: string;
  /** The pipeline's hash of the canonical request (bound into grant and receipt). */
  request_hash: string;
  /** The validated request body; stored in canonical (RFC 8785) form. */
  request: JsonValue;
  /** Domains / URLs the call will reach. */
  targets: string[];
  /** Names of the secrets it will use (never values). */
  secret_names: string[];
  egress_profile: EgressProfile;
  verifier_kind: string;
  budget_snapshot: BudgetSnapshot | null;
  principal: string;
  session_id: string;
  lease_jkt: string;
}

/** The immutable plan: the input plus identity and timing. `plan_hash` is SHA-256 over its canonical form. */
export interface ApprovalPlan extends ApprovalPlanInput {
  approval_id: string;
  /** ISO 8601. */
  created_at: string;
  /** ISO 8601. */
  expires_at: string;
}

/** A stored execute outcome (HTTP status + body), replayed to later approve calls. */
export interface StoredResult {
  status: number;
  body: Record<string, unknown>;
}

export interface ApprovalRecord {
  approval_id: string;
  plan: ApprovalPlan;
  /** `sha256:<hex>` over the canonical plan, computed at creation. */
  plan_hash: string;
  /** Effective state: a pending record past `expires_at` reads as `expired` even before the reaper runs. */
  state: ApprovalState;
  claimed_by: string | null;
  claimed_at: string | null;
  decided_by: string | null;
  decided_at: string | null;
  deny_reason: string | null;
  result: StoredResult | null;
}

/** A record this caller has claimed; `claim_token` proves it when completing or releasing. */
export interface ClaimedApproval {
  record: ApprovalRecord;
  claim_token: string;
}

/** Outcome of an atomic claim: won, or lost with the record as it is now (undefined: missing). */
export type ClaimOutcome = { won: true; claimed: ClaimedApproval } | { won: false; current: ApprovalRecord | undefined };

/** Outcome of an atomic deny. */
export type DenyOutcome = { denied: true; record: ApprovalRecord } | { denied: false; current: ApprovalRecord | undefined };

/** A record moved by the reaper; the caller audits each one. */
export interface ReapedApproval {
  approval_id: string;
  trace_id: string;
  action_id: string;
  principal: string;
  session_id: string;
  state: 'expired' | 'failed';
  reason: 'expired' | 'claim_abandoned';
}

export interface ListApprovalsOptions {
  status?: ApprovalState;
  /** Default 50, capped at 200. */
  limit?: number;
}

export interface ApprovalStore {
  create(plan: ApprovalPlanInput, ttlSeconds: number): Promise<ApprovalRecord>;
  /** The record, or undefined when missing. Expired records are returned with state `expired`. */
  find(id: string): Promise<ApprovalRecord | undefined>;
  /** The record; throws approval_not_found when missing or expired. */
  get(id: string): Promise<ApprovalRecord>;
  list(options?: ListApprovalsOptions): Promise<ApprovalRecord[]>;
  /** Atomic pending -> claimed (only when not expired); exactly one concurrent caller wins. */
  claim(id: string, operator: string): Promise<ClaimOutcome>;
  /** Stores the outcome of a claimed record; false when the claim is no longer held. */
  complete(id: string, outcome: 'approved' | 'failed', result: StoredResult, claimToken: string): Promise<boolean>;
  /** Returns a claimed record to pending (nothing was executed); false when the claim is not held. */
  release(id: string, claimToken: string): Promise<boolean>;
  /** Atomic pending -> denied; the record is kept. */
  deny(id: string, operator: string, reason: string | null): Promise<DenyOutcome>;
  /** Pending past expiry -> expired; claimed longer than the claim timeout -> failed. */
  reapExpired(): Promise<ReapedApproval[]>;
  /** Agent poll: the state of an approval of this session; 404 missing/expired, 403 another session. */
  pollForSession(id: string, sessionId: string): Promise<{ approval_id: string; state: ApprovalState }>;
  pendingCount(): Promise<number>;
  /** Age in seconds of the oldest live pending approval; 0 when none. */
  oldestPendingAgeSeconds(): Promise<number>;
}
