// The policy stage: Rego compiled to wasm, evaluated in-process; its data store and admin routes.
export {
  PolicyEngine, loadPolicyEngine, emptyPolicyData, policyHash, parseDecision, POLICY_ENTRYPOINT, HARD_DENY_CODES,
  type PolicyEngineOptions, type PolicyEngineInfo, type StagedPolicy, type LoadedPolicyLike, type PolicyInstantiator,
  type WasmModule, type WasmMemoryDescriptor,
} from './engine.ts';
export {
  PolicyDataStore, PolicyDataError, openPolicyDataStore, checkPolicyData,
  type ActionInfo, type LookupAction, type MutationOptions, type PolicyChange, type PolicyChangeType,
  type PolicyDataStoreOptions, type PrincipalAcl, type RiskBreakdown, type PreparedPolicyReload,
} from './data-store.ts';
export { policyAdminRoutes, type PolicyAdminDeps } from './routes.ts';
export { toPreflightAnswer, preflightReasonCode } from './preflight.ts';
export { isValidId, isValidPrincipalKey, isValidLearnedDomain, isValidLearnedPath } from './validate.ts';
export { DEFAULT_POLICY_WASM_URL, readPolicyWasm } from './wasm-file.ts';
export type * from './types.ts';
