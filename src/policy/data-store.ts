// Policy data (ACL, allowlist, learned domains/paths, risk overrides, modes): validated against
// policy/data.schema.json plus strict semantic checks, persisted atomically as one JSON file, and
// pushed to the engine on every change. Mutations are serialized; a mutation that fails at any
// step (validation, engine staging, audit, persistence) leaves data, file and engine unchanged.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GateError, type GateErrorCode } from '../errors.ts';
import { systemClock, type Clock, type RiskLevel } from '../contracts.ts';
import { removeStaleTempFiles, writeFileAtomic } from './atomic-file.ts';
import { emptyPolicyData, type PolicyEngine, type StagedPolicy } from './engine.ts';
import { describeSchemaErrors, validateDataDocument } from './schemas.ts';
import { isValidId, isValidLearnedDomain, isValidLearnedPath, isValidPrincipalKey } from './validate.ts';
import type { AclEntry, EnforcementMode, LearnedDomain, LearnedPath, LearnedSource, PolicyData } from './types.ts';

/** What the store needs to know about a registered action. */
export interface ActionInfo {
  declared_side_effects: string[];
  risk_level: RiskLevel;
}

/** Looks an action up in the loaded registry (a function, so the registry can be swapped). */
export type LookupAction = (id: string) => ActionInfo | undefined;

export type PolicyChangeType =
  | 'admin_policy_grant'
  | 'admin_policy_revoke'
  | 'admin_policy_allowlist_add'
  | 'admin_policy_allowlist_remove'
  | 'admin_domain_add'
  | 'admin_domain_remove'
  | 'admin_domains_clear'
  | 'admin_path_add'
  | 'admin_path_remove'
  | 'admin_paths_clear'
  | 'admin_policy_mode'
  | 'admin_policy_risk_override'
  | 'admin_policy_sinks_resync';

/** A computed, validated change, handed to `beforeCommit` before it takes effect. */
export interface PolicyChange {
  type: PolicyChangeType;
  /** False when the request changed nothing (e.g. granting an already granted action). */
  changed: boolean;
  /** The version the data will have once committed (unchanged when `changed` is false). */
  policy_version: string;
  detail: Record<string, unknown>;
}

/** Learned domains and learned paths: the same operations on two lists (see #addLearned & co). */
const LEARNED = {
  domain: {
    key: 'domain', list: 'learned_domains', valid: isValidLearnedDomain,
    invalid: ['invalid_domain', 'domain format validation failed'],
    exists: ['domain_already_exists', 'domain already learned for this action'],
    missing: ['domain_not_found', 'domain not learned for this action'],
    audit: { add: 'admin_domain_add', remove: 'admin_domain_remove', clear: 'admin_domains_clear' },
  },
  path: {
    key: 'path', list: 'learned_paths', valid: isValidLearnedPath,
    invalid: ['invalid_path', 'path must be absolute and normalized'],
    exists: ['path_already_exists', 'path already learned for this action'],
    missing: ['path_not_found', 'path not learned for this action'],
    audit: { add: 'admin_path_add', remove: 'admin_path_remove', clear: 'admin_paths_clear' },
  },
} as const satisfies Record<string, {
  key: string; list: 'learned_domains' | 'learned_paths'; valid: (v: string) => boolean;
  invalid: readonly [GateErrorCode, string]; exists: readonly [GateErrorCode, string]; missing: readonly [GateErrorCode, string];
  audit: { add: PolicyChangeType; remove: PolicyChangeType; clear: PolicyChangeType };
}>;
type LearnedKind = (typeof LEARNED)[keyof typeof LEARNED];
type LearnedEntry = Record<string, string> & { action_id: string };

function learnedList(draft: PolicyData, k: LearnedKind): LearnedEntry[] {
  return draft[k.list] as unknown as LearnedEntry[];
}

export interface MutationOptions {
  /**
   * Awaited after the change is validated and staged in the engine, before it is persisted and
   * activated; throwing aborts the change. The admin routes append the audit event here, so no
   * change ever takes effect without its audit event.
   */
  beforeCommit?: (change: PolicyChange) => Promise<void>;
}

export interface PolicyDataStoreOptions {
  /** Directory holding the data file (created 0700 if missing). */
  stateDir: string;
  engine: PolicyEngine;
  lookupAction: LookupAction;
  clock?: Clock;
  /** Default `policy-data.json`. */
  fileName?: string;
  /** `policy_version` is `<prefix>-<revision>`. Default `portcullis`. */
  versionPrefix?: string;
  /** The document written on first start (no file yet). Default: empty, which denies every call. */
  initialData?: PolicyData;
  /** Replaces the atomic file writer (tests inject failures). */
  writeFile?: (file: string, contents: string) => Promise<void>;
}

export interface PrincipalAcl {
  principal: string;
  actions: string[];
  sinks: string[];
}

export type RiskBreakdown = Record<RiskLevel, string[]> & { unknown?: string[] };

/** Raised at start-up when the data file is unreadable or invalid: names the file, key and reason. */
export class PolicyDataError extends Error {
  constructor(
    readonly file: string,
    readonly key: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`policy data ${file}: ${key}: ${reason}`, options);
    this.name = 'PolicyDataError';
  }
}

/** A prepared reload: the file re-read and validated, the engine staged; `commit()` swaps both. */
export interface PreparedPolicyReload {
  readonly policyVersion: string;
  readonly policyHash: string;
  /** Synchronous; throws GateError reload_failed if the store or engine changed since prepare. */
  commit(): void;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Checks a whole document: the JSON Schema, then what a schema cannot say (domain and path
 * syntax, duplicate learned entries, empty allowlist maps). Returns [key, reason] or undefined.
 */
export function checkPolicyData(doc: unknown): [string, string] | undefined {
  if (!validateDataDocument(doc)) {
    const e = validateDataDocument.errors?.[0];
    return [e?.instancePath || '/', describeSchemaErrors(validateDataDocument.errors)];
  }
  const seenDomains = new Set<string>();
  for (const [i, d] of doc.learned_domains.entries()) {
    if (!isValidLearnedDomain(d.domain)) return [`/learned_domains/${i}/domain`, 'invalid domain'];
    const k = `${d.action_id}\u0000${d.domain}`;
    if (seenDomains.has(k)) return [`/learned_domains/${i}`, 'duplicate learned domain for this action'];
    seenDomains.add(k);
  }
  const seenPaths = new Set<string>();
  for (const [i, p] of doc.learned_paths.entries()) {
    if (!isValidLearnedPath(p.path)) return [`/learned_paths/${i}/path`, 'invalid path'];
    const k = `${p.action_id}\u0000${p.path}`;
    if (seenPaths.has(k)) return [`/learned_paths/${i}`, 'duplicate learned path for this action'];
    seenPaths.add(k);
  }
  return undefined;
}

type Computed<R> = { result: R; changed: boolean; detail: Record<string, unknown> };

/** The policy data document, its file and its engine, kept in step. Create with `openPolicyDataStore`. */
export class PolicyDataStore {
  #data: PolicyData;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #file: string;
  readonly #engine: PolicyEngine;
  readonly #lookup: LookupAction;
  readonly #clock: Clock;
  readonly #prefix: string;
  readonly #write: (file: string, contents: string) => Promise<void>;

  private constructor(data: PolicyData, file: string, opts: PolicyDataStoreOptions) {
    this.#data = data;
    this.#file = file;
    this.#engine = opts.engine;
    this.#lookup = opts.lookupAction;
    this.#clock = opts.clock ?? systemClock;
    this.#prefix = opts.versionPrefix ?? 'portcullis';
    this.#write = opts.writeFile ?? ((f, c) => writeFileAtomic(f, c));
  }

  /** @internal Use openPolicyDataStore. */
  static async open(opts: PolicyDataStoreOptions): Promise<PolicyDataStore> {
    await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
    const file = join(opts.stateDir, opts.fileName ?? 'policy-data.json');
    await removeStaleTempFiles(file);
    let data: PolicyData;
    let fresh = false;
    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new PolicyDataError(file, '/', 'unreadable', { cause: err });
    }
    if (text === undefined) {
      data = structuredClone(opts.initialData ?? emptyPolicyData(opts.versionPrefix ?? 'portcullis'));
      fresh = true;
    } else {
      data = parseDocument(file, text);
    }
    const problem = checkPolicyData(data);
    if (problem) throw new PolicyDataError(file, problem[0], problem[1]);
    const store = new PolicyDataStore(deepFreeze(data), file, opts);
    // The engine gets the data before the file is (re)written: a document the policy rejects never lands.
    opts.engine.setData(data);
    if (fresh) await store.#write(file, serialize(data));
    return store;
  }

  /** The data file's path. */
  get file(): string {
    return this.#file;
  }

  /** The current document (deeply frozen). */
  snapshot(): Readonly<PolicyData> {
    return this.#data;
  }

  get policyVersion(): string {
    return this.#data.policy_version;
  }

  // ---------------------------------------------------------------------------------------------
  // ACL
  // ---------------------------------------------------------------------------------------------

  /** Every principal with its actions and derived sinks. */
  listAcl(): { policy_version: string; principals: Record<string, AclEntry> } {
    const principals: Record<string, AclEntry> = {};
    for (const [p, e] of Object.entries(this.#data.acl)) principals[p] = { actions: [...e.actions], sinks: [...e.sinks] };
    return { policy_version: this.#data.policy_version, principals };
  }

  /** One principal's ACL with a risk breakdown (overrides applied). Throws principal_not_found. */
  describePrincipal(principal: string): PrincipalAcl & { risk_breakdown: RiskBreakdown } {
    if (!isValidPrincipalKey(principal)) throw new GateError('invalid_input', 'invalid principal');
    const entry = Object.hasOwn(this.#data.acl, principal) ? this.#data.acl[principal] : undefined;
    if (!entry) throw new GateError('principal_not_found', 'no ACL entry for this principal');
    const breakdown: RiskBreakdown = { low: [], medium: [], high: [], critical: [] };
    for (const a of entry.actions) {
      const level = (Object.hasOwn(this.#data.risk_overrides, a) ? this.#data.risk_overrides[a] : undefined) ?? this.#lookup(a)?.risk_level;
      if (level) breakdown[level].push(a);
      else (breakdown.unknown ??= []).push(a);
    }
    return { principal, actions: [...entry.actions], sinks: [...entry.sinks], risk_breakdown: breakdown };
  }

  /**
   * Adds actions to a principal (or `*`); sinks are recomputed from the manifests. Throws
   * invalid_input (bad ids) or unknown_action (ids not in the registry, listed in `unknown_actions`).
   */
  grant(principal: string, actions: string[], opts?: MutationOptions): Promise<PrincipalAcl> {
    return this.#mutate('admin_policy_grant', opts, (draft) => {
      if (!isValidPrincipalKey(principal)) throw new GateError('invalid_input', 'invalid principal');
      checkIds(actions, 'action');
      const unknown = [...new Set(actions.filter((a) => this.#lookup(a) === undefined))];
      if (unknown.length > 0) {
        throw new GateError('unknown_action', 'action ids not in the registry', { extra: { unknown_actions: unknown } });
      }
      const before = Object.hasOwn(draft.acl, principal) ? draft.acl[principal] : undefined;
      const merged = [...new Set([...(before?.actions ?? []), ...actions])];
      const entry = { actions: merged, sinks: this.#sinksFor(merged) };
      const changed = !before || !sameList(before.actions, entry.actions) || !sameList(before.sinks, entry.sinks);
      draft.acl[principal] = entry;
      return { result: { principal, ...entry }, changed, detail: { principal, granted: [...new Set(actions)], actions: entry.actions, sinks: entry.sinks } };
    });
  }

  /**
   * Removes actions from a principal; sinks are recomputed; revoking every action removes the
   * entry. Throws invalid_input or principal_not_found.
   */
  revoke(principal: string, actions: string[], opts?: MutationOptions): Promise<PrincipalAcl> {
    return this.#mutate('admin_policy_revoke', opts, (draft) => {
      if (!isValidPrincipalKey(principal)) throw new GateError('invalid_input', 'invalid principal');
      checkIds(actions, 'action');
      const before = Object.hasOwn(draft.acl, principal) ? draft.acl[principal] : undefined;
      if (!before) throw new GateError('principal_not_found', 'no ACL entry for this principal');
      const drop = new Set(actions);
      const remaining = before.actions.filter((a) => !drop.has(a));
      const entry = { actions: remaining, sinks: this.#sinksFor(remaining) };
      if (remaining.length === 0) delete draft.acl[principal];
      else draft.acl[principal] = entry;
      const changed = remaining.length !== before.actions.length || !sameList(before.sinks, entry.sinks);
      return {
        result: { principal, ...entry },
        changed,
        detail: { principal, revoked: [...drop], actions: entry.actions, sinks: entry.sinks, removed_principal: remaining.length === 0 },
      };
    });
  }

  /** Recomputes every entry's sinks from the current manifests (call after a registry reload). */
  resyncSinks(opts?: MutationOptions): Promise<{ updated: string[] }> {
    return this.#mutate('admin_policy_sinks_resync', opts, (draft) => {
      const updated: string[] = [];
      for (const [p, e] of Object.entries(draft.acl)) {
        const sinks = this.#sinksFor(e.actions);
        if (!sameList(sinks, e.sinks)) {
          e.sinks = sinks;
          updated.push(p);
        }
      }
      return { result: { updated }, changed: updated.length > 0, detail: { updated } };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Approval allowlist
  // ---------------------------------------------------------------------------------------------

  /** Lets (action, principal) skip the approval hold. Throws invalid_input or action_not_found. */
  allowlistAdd(actionId: string, principal: string, opts?: MutationOptions): Promise<{ added: boolean }> {
    return this.#mutate('admin_policy_allowlist_add', opts, (draft) => {
      if (!isValidId(actionId) || !isValidId(principal)) throw new GateError('invalid_input', 'invalid action or agent id');
      if (this.#lookup(actionId) === undefined) throw new GateError('action_not_found', 'action not in the registry');
      const map = (Object.hasOwn(draft.allowlist, actionId) ? draft.allowlist[actionId] : undefined) ?? {};
      const added = map[principal] !== true;
      map[principal] = true;
      draft.allowlist[actionId] = map;
      return { result: { added }, changed: added, detail: { action_id: actionId, agent_id: principal } };
    });
  }

  /** Removes an allowlist entry (and the action's map when it empties). Throws invalid_input or allowlist_entry_not_found. */
  allowlistRemove(actionId: string, principal: string, opts?: MutationOptions): Promise<{ removed: true }> {
    return this.#mutate('admin_policy_allowlist_remove', opts, (draft) => {
      if (!isValidId(actionId) || !isValidId(principal)) throw new GateError('invalid_input', 'invalid action or agent id');
      const map = Object.hasOwn(draft.allowlist, actionId) ? draft.allowlist[actionId] : undefined;
      if (!map || !Object.hasOwn(map, principal)) throw new GateError('allowlist_entry_not_found', 'no such allowlist entry');
      delete map[principal];
      if (Object.keys(map).length === 0) delete draft.allowlist[actionId];
      return { result: { removed: true as const }, changed: true, detail: { action_id: actionId, agent_id: principal } };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Learned domains and paths
  // ---------------------------------------------------------------------------------------------

  listDomains(): LearnedDomain[] {
    return this.#data.learned_domains.map((d) => ({ ...d }));
  }

  /** Throws invalid_input, invalid_domain, action_not_found or domain_already_exists. */
  addDomain(actionId: string, domain: string, source: LearnedSource, opts?: MutationOptions): Promise<LearnedDomain> {
    return this.#addLearned(LEARNED.domain, actionId, domain, source, opts) as Promise<LearnedDomain>;
  }

  /** Throws invalid_input, invalid_domain or domain_not_found. */
  removeDomain(actionId: string, domain: string, opts?: MutationOptions): Promise<{ removed: true }> {
    return this.#removeLearned(LEARNED.domain, actionId, domain, opts);
  }

  clearDomains(opts?: MutationOptions): Promise<{ removed: number }> {
    return this.#clearLearned(LEARNED.domain, opts);
  }

  listPaths(): LearnedPath[] {
    return this.#data.learned_paths.map((p) => ({ ...p }));
  }

  /** Throws invalid_input, invalid_path, action_not_found or path_already_exists. */
  addPath(actionId: string, path: string, source: LearnedSource, opts?: MutationOptions): Promise<LearnedPath> {
    return this.#addLearned(LEARNED.path, actionId, path, source, opts) as Promise<LearnedPath>;
  }

  /** Throws invalid_input, invalid_path or path_not_found. */
  removePath(actionId: string, path: string, opts?: MutationOptions): Promise<{ removed: true }> {
    return this.#removeLearned(LEARNED.path, actionId, path, opts);
  }

  clearPaths(opts?: MutationOptions): Promise<{ removed: number }> {
    return this.#clearLearned(LEARNED.path, opts);
  }

  #addLearned(k: LearnedKind, actionId: string, value: string, source: LearnedSource, opts?: MutationOptions): Promise<LearnedDomain | LearnedPath> {
    return this.#mutate(k.audit.add, opts, (draft) => {
      if (!isValidId(actionId)) throw new GateError('invalid_input', 'invalid action id');
      if (!k.valid(value)) throw new GateError(k.invalid[0], k.invalid[1]);
      if (this.#lookup(actionId) === undefined) throw new GateError('action_not_found', 'action not in the registry');
      const list = learnedList(draft, k);
      if (list.some((e) => e.action_id === actionId && e[k.key] === value)) throw new GateError(k.exists[0], k.exists[1]);
      const entry = { [k.key]: value, action_id: actionId, source, added_at: this.#nowIso() } as LearnedEntry;
      list.push(entry);
      return { result: entry as unknown as LearnedDomain | LearnedPath, changed: true, detail: { ...entry } };
    });
  }

  #removeLearned(k: LearnedKind, actionId: string, value: string, opts?: MutationOptions): Promise<{ removed: true }> {
    return this.#mutate(k.audit.remove, opts, (draft) => {
      if (!isValidId(actionId)) throw new GateError('invalid_input', 'invalid action id');
      if (!k.valid(value)) throw new GateError(k.invalid[0], k.invalid[1]);
      const list = learnedList(draft, k);
      const i = list.findIndex((e) => e.action_id === actionId && e[k.key] === value);
      if (i < 0) throw new GateError(k.missing[0], k.missing[1]);
      list.splice(i, 1);
      return { result: { removed: true as const }, changed: true, detail: { action_id: actionId, [k.key]: value } };
    });
  }

  #clearLearned(k: LearnedKind, opts?: MutationOptions): Promise<{ removed: number }> {
    return this.#mutate(k.audit.clear, opts, (draft) => {
      const removed = learnedList(draft, k).length;
      draft[k.list] = [];
      return { result: { removed }, changed: removed > 0, detail: { removed } };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Modes and risk overrides
  // ---------------------------------------------------------------------------------------------

  /** Sets (or with `null` clears) the enforcement mode of a principal or an action. */
  setMode(kind: 'principal' | 'action', id: string, mode: EnforcementMode | null, opts?: MutationOptions): Promise<void> {
    return this.#mutate('admin_policy_mode', opts, (draft) => {
      if (!isValidId(id)) throw new GateError('invalid_input', `invalid ${kind} id`);
      if (mode !== null && mode !== 'monitor' && mode !== 'warn' && mode !== 'enforce') throw new GateError('invalid_input', 'invalid mode');
      const table = kind === 'principal' ? draft.modes.principals : draft.modes.actions;
      const before = Object.hasOwn(table, id) ? table[id] : undefined;
      if (mode === null) delete table[id];
      else table[id] = mode;
      return { result: undefined, changed: before !== (mode ?? undefined), detail: { kind, id, mode } };
    });
  }

  /** Sets (or with `null` clears) an operator override of an action's risk level. */
  setRiskOverride(actionId: string, level: RiskLevel | null, opts?: MutationOptions): Promise<void> {
    return this.#mutate('admin_policy_risk_override', opts, (draft) => {
      if (!isValidId(actionId)) throw new GateError('invalid_input', 'invalid action id');
      if (level !== null && !['low', 'medium', 'high', 'critical'].includes(level)) throw new GateError('invalid_input', 'invalid risk level');
      const before = Object.hasOwn(draft.risk_overrides, actionId) ? draft.risk_overrides[actionId] : undefined;
      if (level === null) delete draft.risk_overrides[actionId];
      else draft.risk_overrides[actionId] = level;
      return { result: undefined, changed: before !== (level ?? undefined), detail: { action_id: actionId, risk_level: level } };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Reload
  // ---------------------------------------------------------------------------------------------

  /**
   * Re-reads and validates the data file and stages it in the engine (with a new wasm if given),
   * without activating. Throws GateError reload_failed; nothing changes on failure.
   */
  async prepareReload(wasm?: Uint8Array): Promise<PreparedPolicyReload> {
    const baseRevision = this.#data.revision;
    const baseData = this.#data;
    let data: PolicyData;
    let staged: StagedPolicy;
    try {
      data = parseDocument(this.#file, await readFile(this.#file, 'utf8'));
      const problem = checkPolicyData(data);
      if (problem) throw new PolicyDataError(this.#file, problem[0], problem[1]);
      staged = wasm ? await this.#engine.stageReload(wasm, data) : this.#engine.stageData(data);
    } catch (err) {
      throw new GateError('reload_failed', 'policy reload failed; the previous policy stays active', { cause: err });
    }
    const frozen = deepFreeze(data);
    return {
      policyVersion: staged.policyVersion,
      policyHash: staged.policyHash,
      commit: () => {
        if (this.#data !== baseData || this.#data.revision !== baseRevision) {
          throw new GateError('reload_failed', 'policy data changed during the reload');
        }
        try {
          this.#engine.activate(staged);
        } catch (err) {
          throw new GateError('reload_failed', 'policy engine changed during the reload', { cause: err });
        }
        this.#data = frozen;
      },
    };
  }

  /** `prepareReload` + `commit`, serialized with mutations. */
  reload(wasm?: Uint8Array): Promise<{ policy_version: string; policy_hash: string }> {
    return this.#serialize(async () => {
      const prepared = await this.prepareReload(wasm);
      prepared.commit();
      return { policy_version: prepared.policyVersion, policy_hash: prepared.policyHash };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Internals
  // ---------------------------------------------------------------------------------------------

  #sinksFor(actions: readonly string[]): string[] {
    const sinks = new Set<string>();
    for (const a of actions) for (const s of this.#lookup(a)?.declared_side_effects ?? []) sinks.add(s);
    return [...sinks].sort();
  }

  #nowIso(): string {
    return new Date(this.#clock.now()).toISOString();
  }

  #serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #mutate<R>(type: PolicyChangeType, opts: MutationOptions | undefined, compute: (draft: PolicyData) => Computed<R>): Promise<R> {
    return this.#serialize(async () => {
      const current = this.#data;
      const draft = structuredClone(current) as PolicyData;
      const { result, changed, detail } = compute(draft);
      if (!changed) {
        await opts?.beforeCommit?.({ type, changed: false, policy_version: current.policy_version, detail });
        return result;
      }
      draft.revision = current.revision + 1;
      draft.policy_version = `${this.#prefix}-${draft.revision}`;
      const problem = checkPolicyData(draft);
      if (problem) throw new GateError('invalid_input', `policy data would be invalid: ${problem[0]}: ${problem[1]}`);
      const staged = this.#engine.stageData(draft);
      await opts?.beforeCommit?.({ type, changed: true, policy_version: draft.policy_version, detail });
      try {
        await this.#write(this.#file, serialize(draft));
      } catch (err) {
        throw new GateError('internal_error', 'policy data could not be persisted', { cause: err });
      }
      try {
        this.#engine.activate(staged);
      } catch {
        // Only if the engine was driven around the store; load the committed document anew.
        this.#engine.setData(draft);
      }
      this.#data = deepFreeze(draft);
      return result;
    });
  }
}

/** Opens (or creates) the data file in `stateDir`, validates it and pushes it to the engine. */
export function openPolicyDataStore(opts: PolicyDataStoreOptions): Promise<PolicyDataStore> {
  return PolicyDataStore.open(opts);
}

function parseDocument(file: string, text: string): PolicyData {
  try {
    return JSON.parse(text) as PolicyData;
  } catch (err) {
    throw new PolicyDataError(file, '/', 'not valid JSON', { cause: err });
  }
}

function serialize(data: PolicyData): string {
  return `${JSON.stringify(data, null, 2)}\n`;
}

function checkIds(ids: unknown, what: string): asserts ids is string[] {
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > 1024 || !ids.every(isValidId)) {
    throw new GateError('invalid_input', `invalid ${what} ids`);
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
