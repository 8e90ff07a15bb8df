// The immutable approval plan: validation, canonical (RFC 8785) form and plan hash. The hash binds
// everything an operator reviews and everything the approved execution uses; any change is detected.
import { createHash, timingSafeEqual } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { ApprovalPlan, ApprovalPlanInput, ApprovalRecord } from './types.ts';

const RISK = new Set(['low', 'medium', 'high', 'critical']);

/** RFC 8785 canonical JSON; throws TypeError for values JSON cannot represent exactly. */
export function canonicalJson(value: unknown): string {
  let out: string | undefined;
  try {
    out = canonicalize(value);
  } catch (e) {
    throw new TypeError(`value is not canonicalizable JSON: ${(e as Error).message}`);
  }
  if (out === undefined) throw new TypeError('value is not canonicalizable JSON');
  // Functions, symbols and the like serialise to invalid text; a round trip proves it is JSON.
  try {
    JSON.parse(out);
  } catch {
    throw new TypeError('value is not canonicalizable JSON');
  }
  return out;
}

/** `sha256:<hex>` of the canonical plan. */
export function computePlanHash(plan: ApprovalPlan): string {
  return `sha256:${createHash('sha256').update(canonicalJson(plan)).digest('hex')}`;
}

/** True when the record's plan still hashes to its stored plan hash and names the same approval. */
export function verifyPlanHash(record: Pick<ApprovalRecord, 'approval_id' | 'plan' | 'plan_hash'>): boolean {
  let actual: string;
  try {
    actual = computePlanHash(record.plan);
  } catch {
    return false;
  }
  const a = Buffer.from(actual);
  const b = Buffer.from(String(record.plan_hash));
  return a.length === b.length && timingSafeEqual(a, b) && record.plan.approval_id === record.approval_id;
}

function str(o: Record<string, unknown>, k: string, max = 1024): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new TypeError(`plan.${k} must be a non-empty string (<= ${max})`);
  return v;
}

function strs(o: Record<string, unknown>, k: string): string[] {
  const v = o[k];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.length === 0 || x.length > 2048)) {
    throw new TypeError(`plan.${k} must be an array of non-empty strings`);
  }
  return [...v] as string[];
}

/**
 * Checks a plan input from the pipeline and returns a deep, JSON-normalised copy (so later changes
 * to the caller's objects cannot alter the stored plan). Bad input is a programming error: TypeError.
 */
export function normalisePlanInput(input: ApprovalPlanInput): ApprovalPlanInput {
  const o = input as unknown as Record<string, unknown>;
  if (typeof o !== 'object' || o === null) throw new TypeError('plan must be an object');
  for (const k of ['trace_id', 'action_id', 'action_version', 'provider_module_digest', 'request_hash', 'verifier_kind', 'principal', 'session_id', 'lease_jkt']) str(o, k);
  if (!RISK.has(o.risk_level as string)) throw new TypeError('plan.risk_level must be low, medium, high or critical');
  strs(o, 'targets');
  strs(o, 'secret_names');
  if (typeof o.egress_profile !== 'object' || o.egress_profile === null) throw new TypeError('plan.egress_profile must be an object');
  if (o.budget_snapshot !== null && (typeof o.budget_snapshot !== 'object' || Array.isArray(o.budget_snapshot))) {
    throw new TypeError('plan.budget_snapshot must be an object or null');
  }
  if (!('request' in o) || o.request === undefined) throw new TypeError('plan.request is required');
  const known = new Set(['trace_id', 'action_id', 'action_version', 'risk_level', 'provider_module_digest', 'request_hash', 'request',
    'targets', 'secret_names', 'egress_profile', 'verifier_kind', 'budget_snapshot', 'principal', 'session_id', 'lease_jkt']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new TypeError(`plan has an unknown field: ${k}`);
  return JSON.parse(canonicalJson(o)) as ApprovalPlanInput;
}
