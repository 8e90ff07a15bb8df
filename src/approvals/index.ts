// Approvals: immutable execution plans held for a human, claimed atomically, executed once.
export type {
  ApprovalPlan, ApprovalPlanInput, ApprovalRecord, ApprovalState, ApprovalStore, ClaimedApproval, ClaimOutcome,
  DenyOutcome, JsonValue, ListApprovalsOptions, ReapedApproval, StoredResult,
} from './types.ts';
export { APPROVAL_STATES } from './types.ts';
export { canonicalJson, computePlanHash, verifyPlanHash } from './plan.ts';
export { KyselyApprovalStore, migrateApprovals, approvalsSchema, APPROVALS_TABLE, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, type KyselyApprovalStoreOptions } from './store.ts';
export { startApprovalReaper, type ApprovalReaper, type ApprovalReaperOptions } from './reaper.ts';
export {
  approvalAdminRoutes, approvalPollRoutes, approvalDetail, approvalSummary, parseLearnDomain,
  type ApprovalAdminRoutesDeps, type ApprovalPollRoutesDeps, type ExecuteApproved, type ExecuteResponseBody,
} from './routes.ts';
