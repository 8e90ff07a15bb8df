// The execute pipeline's per-call context and the services its stages use. A stage is one
// function (ctx, deps) => Promise<void> that reads and fills the context, and rejects only by
// throwing GateError. The ordered lists live in pipeline.ts.
import type { AuditSink, Clock } from '../contracts.ts';
import type { LeaseContext, GateVariables } from '../http/env.ts';
import type { Registry, RegisteredAction } from '../registry/index.ts';
import type { Sandbox } from '../sandbox/sandbox.ts';
import type { EgressGuard, PrecheckResult } from '../egress/index.ts';
import type { EvaluatedDecision } from '../policy/types.ts';
import type { PolicyEngine } from '../policy/engine.ts';
import type { PolicyDataStore } from '../policy/data-store.ts';
import type { BudgetDebitResult, BudgetSnapshot, BudgetStore } from '../budgets/types.ts';
import type { ApprovalStore } from '../approvals/types.ts';
import type { SecretsStore } from '../secrets/store.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { SignedGrant } from '../ledger/grants.ts';
import type { Receipt } from '../ledger/receipts.ts';
import type { Keystore } from '../keys/index.ts';
import type { RevocationStore } from '../stores/types.ts';
import type { GateState } from '../gate.ts';

export type PipelineMode = 'execute' | 'preflight' | 'approved';

/** The registry and the sandbox that runs its modules, swapped together on reload. */
export interface ActiveConfig {
  registry: Registry;
  sandbox: Sandbox;
  loadedAt: string;
  /** Actions whose module failed verification at load: refused with this code until fixed and reloaded. */
  refused: ReadonlyMap<string, { code: 'action_digest_mismatch' | 'action_not_registered'; reason: string }>;
}

/** What the approved path carries into the shared tail. */
export interface ApprovedBy {
  approvalId: string;
  operator: string;
  operatorJkt: string;
  planHash: string;
  /** The plan's request hash: the re-canonicalized stored request must hash to it. */
  requestHash: string;
  /** Hosts the operator approved for this one execution (the plan's targets). */
  approvedHosts: string[];
  /** When the call was held (ms): a principal revocation at or after it voids the approval. */
  heldAtMs: number;
  learnDomain?: string;
}

export interface DispatchFailure {
  failureClass: 'fuel_exhausted' | 'memory' | 'timeout' | 'provider_error' | 'response_schema' | 'egress';
  reason: string;
  /** The error the agent receives (502 action_execution_failed, or the egress guard's 403). */
  code: string;
  extra?: Record<string, unknown>;
}

export interface DispatchResult {
  output?: unknown;
  failure?: DispatchFailure;
  runtime: { duration_ms: number; exit_code: number; fuel_consumed: number; io_calls: number };
  startedAt: string;
  finishedAt: string;
}

export interface VerificationResult {
  outcome: 'verified' | 'verification_failed' | 'unverifiable_declared' | 'provider_failed_before_verification' | 'skipped';
  evidence?: Record<string, unknown>;
  reason?: string;
}

export interface ExecContext {
  mode: PipelineMode;
  traceId: string;
  actionId: string;
  lease: Pick<LeaseContext, 'principal' | 'sessionId' | 'scopes' | 'budgets' | 'epoch' | 'jkt'>;
  body: unknown;
  idempotencyKey?: string;
  startedAt: number;
  /** Registry and sandbox taken at the start: a reload mid-call does not change this call. */
  config: ActiveConfig;
  action?: RegisteredAction;
  canonical?: string;
  requestHash?: string;
  targets?: PrecheckResult[];
  unresolvedDomains?: string[];
  /** Learned domains and approved hosts the egress guard may reach for this call (set by the pre-check). */
  extraDomains?: string[];
  budget?: BudgetSnapshot;
  decision?: EvaluatedDecision;
  approved?: ApprovedBy;
  planHash?: string | null;
  debit?: BudgetDebitResult;
  grant?: SignedGrant;
  secretValues?: Map<string, string>;
  /**
   * Set once the execution intent is durable (two-phase) or committed with its receipt (one-phase),
   * or may have been (a one-phase COMMIT of unknown outcome): the call then counts (no refund).
   */
  intentId?: string;
  /**
   * One-phase evidence: the provider may not do I/O (`max_io_calls` 0), so it cannot have an
   * effect, and its intent is written with its receipt in one transaction (Ledger.complete) by
   * receiptAndFinalize instead of before dispatch (src/pipeline/stages/dispatch.ts).
   */
  intentWithReceipt?: boolean;
  run?: DispatchResult;
  verification?: VerificationResult;
  receipt?: Receipt;
  /** Set by a stage that ends the call early (202 hold, preflight answer) or by the last stage. */
  response?: { status: number; body: Record<string, unknown> };
  /** True once the terminal audit event is written (finalization writes it with the receipt). */
  audited?: boolean;
  /** A soft deny let through by monitor/warn mode: recorded, and (warn) told to the caller. */
  warning?: string | null;
}

export interface PipelineDeps {
  clock: Clock;
  audit: AuditSink;
  ledger: Ledger;
  keystore: Keystore;
  active(): ActiveConfig;
  egress: EgressGuard;
  unsafeAllow: readonly string[];
  policy: PolicyEngine;
  policyData: PolicyDataStore;
  budgets: BudgetStore;
  approvals: ApprovalStore;
  approvalTtlSeconds: number;
  secrets: SecretsStore;
  revocation: RevocationStore;
  state: GateState;
  /** Seconds a grant stays valid between issuance and dispatch. */
  grantTtlSeconds: number;
}

export type Stage = (ctx: ExecContext, deps: PipelineDeps) => Promise<void>;

export type { GateVariables };
