// The in-process policy engine: the committed policy.wasm evaluated with @open-policy-agent/opa-wasm.
// Guarantees: it never answers allow on a failure (load, evaluation, shape, time); a new wasm or
// new data is fully loaded and self-tested before one reference swap makes it active, so a failed
// load changes nothing and an evaluation always runs against one consistent (wasm, data) pair.
import { createHash } from 'node:crypto';
import * as opaWasm from '@open-policy-agent/opa-wasm';
import { GateError, sanitizeReason } from '../errors.ts';
import { describeSchemaErrors, validateDecision, validateInput } from './schemas.ts';
import type { DenyReasonCode, EvaluatedDecision, PolicyData, PolicyDecision, PolicyInput, Verdict } from './types.ts';

/** The Rego rule every evaluation queries. */
export const POLICY_ENTRYPOINT = 'portcullis/authz/decision';

/** Denies that no enforcement mode downgrades (mirrors `hard_codes` in policy/authz.rego). */
export const HARD_DENY_CODES: ReadonlySet<DenyReasonCode> = new Set(['invalid_input', 'untrusted_digest', 'budget_exhausted']);

// tsconfig's lib has no WebAssembly types (no DOM lib, @types/node 20): a minimal local view.
/** A compiled wasm module (opaque). */
export interface WasmModule {
  readonly [Symbol.toStringTag]?: string;
}
export interface WasmMemoryDescriptor {
  initial: number;
  maximum?: number;
}
const wasmApi = (globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<WasmModule> } }).WebAssembly;

/** The subset of opa-wasm's LoadedPolicy the engine uses. */
export interface LoadedPolicyLike {
  entrypoints: Record<string, number>;
  evaluate(input: unknown, entrypoint?: number | string): unknown;
  setData(data: object | ArrayBuffer): void;
}

/** Instantiates a compiled module (injected so tests can substitute a misbehaving policy). */
export type PolicyInstantiator = (module: WasmModule, memory: WasmMemoryDescriptor) => LoadedPolicyLike;

export interface PolicyEngineOptions {
  /** Wall-time limit of one evaluation in ms; an answer that took longer is discarded. Default 250. */
  evalTimeoutMs?: number;
  /** Cap on the serialized input in bytes. Default 64 KiB. */
  maxInputBytes?: number;
  /** Maximum wasm linear memory in 64 KiB pages. Default 1024 (64 MiB). */
  maxMemoryPages?: number;
  /** Monotonic milliseconds (default `performance.now`); injected by tests. */
  monotonicNow?: () => number;
  instantiate?: PolicyInstantiator;
}

/** A (wasm, data) pair loaded and self-tested but not yet active; see `PolicyEngine.activate`. */
export interface StagedPolicy {
  readonly policyVersion: string;
  readonly policyHash: string;
  /** @internal The activation count when staged: a pair staged before another activation is stale. */
  readonly baseActivation: number;
  /** @internal */
  readonly state: EngineState;
}

export interface PolicyEngineInfo {
  wasm_sha256: string;
  policy_version: string;
  policy_hash: string;
  /** How many times a new wasm was activated (initial load = 1). */
  wasm_generation: number;
}

interface EngineState {
  readonly module: WasmModule;
  readonly wasmSha256: string;
  readonly wasmGeneration: number;
  readonly policy: LoadedPolicyLike;
  readonly entrypointId: number;
  readonly data: PolicyData;
  readonly policyHash: string;
}

const DEFAULTS = { evalTimeoutMs: 250, maxInputBytes: 64 * 1024, maxMemoryPages: 1024 };

// The ESM entry names only `loadPolicy` (async); the synchronous loader is on the default export.
// Synchronous instantiation from an already compiled module keeps staging and recovery atomic.
const opaLoadPolicySync = (opaWasm as unknown as {
  default: { loadPolicySync(m: WasmModule, d: WasmMemoryDescriptor): LoadedPolicyLike };
}).default.loadPolicySync;

const defaultInstantiate: PolicyInstantiator = (module, memory) => opaLoadPolicySync(module, memory);

/** `sha256:` over the wasm digest and the data version: changes when either changes. */
export function policyHash(wasmSha256: string, policyVersion: string): string {
  return `sha256:${createHash('sha256').update(`${wasmSha256}\n${policyVersion}`).digest('hex')}`;
}

/** An empty data document: no grants, so every call is denied. */
export function emptyPolicyData(versionPrefix = 'portcullis'): PolicyData {
  return {
    policy_version: `${versionPrefix}-0`,
    revision: 0,
    acl: {},
    allowlist: {},
    risk_overrides: {},
    learned_domains: [],
    learned_paths: [],
    modes: { principals: {}, actions: {} },
  };
}

// The self-test input: well-formed, untrusted digest. Every correct build of the policy denies it
// with `untrusted_digest` in every mode, and echoes the data's policy_version.
const CANARY_INPUT: PolicyInput = {
  principal: 'portcullis-selftest',
  session_id: 'selftest',
  action: { id: 'portcullis.selftest', version: '0', risk_level: 'low', required_scopes: [], declared_side_effects: [], digest_trusted: false },
  scopes: ['tools:call'],
  budget: { exhausted: false, remaining_calls: null, cost: 0 },
  requested_sinks: [],
  egress: { unresolved_domains: [], unresolved_paths: [], sensitive_paths: [] },
};

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Checks the raw wasm answer: exactly one result, matching the decision schema, and internally
 * consistent (one verdict, codes where the verdict needs them, the data version we loaded).
 * Anything else -> policy_engine_invalid_response.
 */
export function parseDecision(raw: unknown, expectedVersion: string): PolicyDecision {
  const invalid = (why: string) => new GateError('policy_engine_invalid_response', `policy result ${why}`);
  if (!Array.isArray(raw) || raw.length !== 1) throw invalid('is not a single result');
  const entry: unknown = raw[0];
  if (!entry || typeof entry !== 'object' || !('result' in entry)) throw invalid('has no result');
  const d = (entry as { result: unknown }).result;
  if (!validateDecision(d)) throw invalid(`does not match the schema: ${describeSchemaErrors(validateDecision.errors)}`);
  if (d.policy_version !== expectedVersion) throw invalid('carries another policy_version than the loaded data');
  const last = d.matched_rules[d.matched_rules.length - 1];
  const denied = !d.allow && !d.requires_approval;
  if (d.allow && d.requires_approval) throw invalid('both allows and requires approval');
  if ((d.deny_reason_code === null) !== (d.deny_reason === null)) throw invalid('has a deny code without a reason or vice versa');
  if ((d.would_deny_reason_code === null) !== (d.would_deny_reason === null)) throw invalid('has a would-deny code without a reason');
  if (denied) {
    if (d.deny_reason_code === null) throw invalid('denies without a code');
    if (d.would_deny_reason_code !== null) throw invalid('denies and would-denies');
    if (d.approval_reasons.length > 0 || d.approved_sinks.length > 0) throw invalid('denies but approves');
    if (last !== `deny.${d.deny_reason_code}`) throw invalid('matched_rules do not end in the deny');
  } else {
    if (d.deny_reason_code !== null) throw invalid('carries a deny code without denying');
    if (d.requires_approval && d.approval_reasons.length === 0) throw invalid('requires approval without a reason');
    if (d.allow && d.approval_reasons.length > 0) throw invalid('allows with approval reasons');
    if (last !== (d.allow ? 'allow' : 'approval.required')) throw invalid('matched_rules do not end in the verdict');
  }
  if (d.would_deny_reason_code !== null) {
    if (d.enforcement_mode === 'enforce') throw invalid('would-denies in enforce mode');
    if (HARD_DENY_CODES.has(d.would_deny_reason_code)) throw invalid('downgraded a hard deny');
  }
  return d;
}

function verdictOf(d: PolicyDecision): Verdict {
  if (d.allow) return 'allow';
  return d.requires_approval ? 'require_approval' : 'deny';
}

/** A header-safe line (printable ASCII only, sanitized, capped). */
function warningLine(code: DenyReasonCode, reason: string): string {
  return sanitizeReason(`policy would deny (${code}): ${reason}`).replace(/[^\x20-\x7e]/g, '?');
}

/**
 * Holds the active (wasm, data) pair. `evaluate` is synchronous; `reload`/`stageData`+`activate`
 * prepare a complete new pair off to the side and swap one reference.
 */
export class PolicyEngine {
  #state: EngineState;
  #broken: Error | undefined;
  #activations = 0;
  readonly #opts: Required<Omit<PolicyEngineOptions, 'instantiate' | 'monotonicNow'>>;
  readonly #now: () => number;
  readonly #instantiate: PolicyInstantiator;

  private constructor(state: EngineState, opts: PolicyEngineOptions) {
    this.#state = state;
    this.#opts = {
      evalTimeoutMs: opts.evalTimeoutMs ?? DEFAULTS.evalTimeoutMs,
      maxInputBytes: opts.maxInputBytes ?? DEFAULTS.maxInputBytes,
      maxMemoryPages: opts.maxMemoryPages ?? DEFAULTS.maxMemoryPages,
    };
    this.#now = opts.monotonicNow ?? (() => performance.now());
    this.#instantiate = opts.instantiate ?? defaultInstantiate;
  }

  /**
   * Compiles `wasm`, loads `data` (default: empty, which denies everything), self-tests, and
   * returns a ready engine. Any failure -> GateError policy_engine_unavailable.
   */
  static async load(wasm: Uint8Array, data: PolicyData = emptyPolicyData(), opts: PolicyEngineOptions = {}): Promise<PolicyEngine> {
    const module = await compile(wasm);
    const instantiate = opts.instantiate ?? defaultInstantiate;
    const maxPages = opts.maxMemoryPages ?? DEFAULTS.maxMemoryPages;
    return new PolicyEngine(buildState(instantiate, maxPages, module, sha256Hex(wasm), 1, data), opts);
  }

  /** Which wasm and data are active. */
  info(): PolicyEngineInfo {
    const s = this.#state;
    return { wasm_sha256: s.wasmSha256, policy_version: s.data.policy_version, policy_hash: s.policyHash, wasm_generation: s.wasmGeneration };
  }

  /** False after an evaluation failure that could not be recovered from; every call then fails closed. */
  isHealthy(): boolean {
    return this.#broken === undefined;
  }

  /**
   * Evaluates one call. Throws GateError: invalid_input (input fails its schema or the size cap),
   * policy_engine_unavailable (evaluation threw, or the engine is broken), policy_engine_timeout
   * (took longer than evalTimeoutMs), policy_engine_invalid_response (answer fails validation).
   */
  evaluate(input: PolicyInput): EvaluatedDecision {
    // One reference for the whole call: a swap after this line does not affect this evaluation.
    const state = this.#state;
    if (this.#broken) throw new GateError('policy_engine_unavailable', 'policy engine is broken', { cause: this.#broken });
    if (!validateInput(input)) {
      throw new GateError('invalid_input', `policy input ${describeSchemaErrors(validateInput.errors)}`);
    }
    const bytes = new TextEncoder().encode(JSON.stringify(input));
    if (bytes.byteLength > this.#opts.maxInputBytes) throw new GateError('invalid_input', 'policy input too large');
    // opa-wasm takes an ArrayBuffer as already-serialized JSON: it must hold exactly these bytes.
    const buffer = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.byteLength
      ? bytes.buffer
      : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);

    // OPA-wasm evaluation is synchronous on this thread and cannot be interrupted. Rego without
    // recursion terminates in time bounded by input and data size, so the real guard is the caps
    // (input bytes here, item counts in the data schema, a memory maximum); the wall-time check
    // below turns a residual slow answer into a timeout instead of trusting it. A worker thread
    // with a hard kill would cost 0.15–0.9 ms per call (FINDINGS) against ~tens of µs here.
    const t0 = this.#now();
    let raw: unknown;
    try {
      raw = state.policy.evaluate(buffer, state.entrypointId);
    } catch (err) {
      this.#recover(state, err);
      throw new GateError('policy_engine_unavailable', 'policy evaluation failed', { cause: err });
    }
    const elapsedMs = this.#now() - t0;
    if (!(elapsedMs <= this.#opts.evalTimeoutMs)) {
      throw new GateError('policy_engine_timeout', `policy evaluation took ${elapsedMs.toFixed(1)} ms`);
    }
    const decision = parseDecision(raw, state.data.policy_version);
    const would_deny =
      decision.would_deny_reason_code !== null && decision.would_deny_reason !== null
        ? { code: decision.would_deny_reason_code, reason: decision.would_deny_reason }
        : null;
    return {
      verdict: verdictOf(decision),
      decision,
      would_deny,
      warning: would_deny && decision.enforcement_mode === 'warn' ? warningLine(would_deny.code, would_deny.reason) : null,
      policy_hash: state.policyHash,
      elapsed_us: Math.round(elapsedMs * 1000),
    };
  }

  /**
   * Loads `data` into a fresh instance of the active wasm and self-tests it, without activating.
   * Throws policy_engine_unavailable on failure (nothing changes).
   */
  stageData(data: PolicyData): StagedPolicy {
    const s = this.#state;
    return this.#staged(this.#build(s.module, s.wasmSha256, s.wasmGeneration, data));
  }

  /**
   * Compiles `wasm` and loads `data` into it, self-tested, without activating. Throws
   * policy_engine_unavailable on failure (nothing changes).
   */
  async stageReload(wasm: Uint8Array, data: PolicyData): Promise<StagedPolicy> {
    const baseActivation = this.#activations;
    const module = await compile(wasm);
    const state = this.#build(module, sha256Hex(wasm), this.#state.wasmGeneration + 1, data);
    return { policyVersion: state.data.policy_version, policyHash: state.policyHash, baseActivation, state };
  }

  /**
   * Makes a staged pair active (one reference swap). Refuses a pair staged before another
   * activation, so an older staging can never overwrite a newer wasm or newer data.
   */
  activate(staged: StagedPolicy): void {
    if (staged.baseActivation !== this.#activations) {
      throw new GateError('policy_engine_unavailable', 'staged policy is stale');
    }
    this.#state = staged.state;
    this.#activations++;
    this.#broken = undefined;
  }

  /** `stageData` + `activate`. */
  setData(data: PolicyData): void {
    this.activate(this.stageData(data));
  }

  /**
   * `stageReload` + `activate`: on any failure the previous pair stays active and GateError
   * policy_engine_unavailable is thrown.
   */
  async reload(wasm: Uint8Array, data: PolicyData): Promise<PolicyEngineInfo> {
    this.activate(await this.stageReload(wasm, data));
    return this.info();
  }

  #staged(state: EngineState): StagedPolicy {
    return { policyVersion: state.data.policy_version, policyHash: state.policyHash, baseActivation: this.#activations, state };
  }

  #build(module: WasmModule, wasmSha256: string, wasmGeneration: number, data: PolicyData): EngineState {
    return buildState(this.#instantiate, this.#opts.maxMemoryPages, module, wasmSha256, wasmGeneration, data);
  }

  // After a throw inside the wasm its heap may be inconsistent: replace the instance with a fresh
  // one (same wasm, same data). If even that fails, the engine stays broken until a reload.
  #recover(failed: EngineState, err: unknown): void {
    if (this.#state !== failed) return;
    try {
      this.#state = this.#build(failed.module, failed.wasmSha256, failed.wasmGeneration, failed.data);
    } catch (rebuildErr) {
      this.#broken = new Error('policy engine could not recover', { cause: [err, rebuildErr] });
    }
  }
}

function buildState(
  instantiate: PolicyInstantiator,
  maxMemoryPages: number,
  module: WasmModule,
  wasmSha256: string,
  wasmGeneration: number,
  data: PolicyData,
): EngineState {
  const frozen = deepFreeze(structuredClone(data));
  let policy: LoadedPolicyLike;
  try {
    policy = instantiate(module, { initial: 5, maximum: maxMemoryPages });
    policy.setData(frozen);
  } catch (err) {
    throw new GateError('policy_engine_unavailable', 'policy wasm could not be instantiated', { cause: err });
  }
  const entrypointId = policy.entrypoints?.[POLICY_ENTRYPOINT];
  if (typeof entrypointId !== 'number') {
    throw new GateError('policy_engine_unavailable', `policy wasm has no entrypoint ${POLICY_ENTRYPOINT}`);
  }
  const state: EngineState = {
    module, wasmSha256, wasmGeneration, policy, entrypointId, data: frozen,
    policyHash: policyHash(wasmSha256, frozen.policy_version),
  };
  selfTest(state);
  return state;
}

function selfTest(state: EngineState): void {
  let raw: unknown;
  try {
    raw = state.policy.evaluate(CANARY_INPUT, state.entrypointId);
  } catch (err) {
    throw new GateError('policy_engine_unavailable', 'policy self-test evaluation failed', { cause: err });
  }
  let d: PolicyDecision;
  try {
    d = parseDecision(raw, state.data.policy_version);
  } catch (err) {
    throw new GateError('policy_engine_unavailable', 'policy self-test answer is invalid', { cause: err });
  }
  if (d.allow || d.requires_approval || d.deny_reason_code !== 'untrusted_digest') {
    throw new GateError('policy_engine_unavailable', 'policy self-test did not deny an untrusted module');
  }
}

async function compile(wasm: Uint8Array): Promise<WasmModule> {
  try {
    return await wasmApi.compile(wasm);
  } catch (err) {
    throw new GateError('policy_engine_unavailable', 'policy wasm does not compile', { cause: err });
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Loads a policy engine; see `PolicyEngine.load`. */
export function loadPolicyEngine(wasm: Uint8Array, data?: PolicyData, opts?: PolicyEngineOptions): Promise<PolicyEngine> {
  return PolicyEngine.load(wasm, data, opts);
}
