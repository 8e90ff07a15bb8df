// JSON Schemas (ajv, additionalProperties: false) for the three documents that cross the policy
// boundary: the policy data (policy/data.schema.json), the input the gate builds, and the decision
// the wasm returns. Compiled once at import.
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { PolicyData, PolicyDecision, PolicyInput } from './types.ts';

/** RFC 3339 date-time with a zone, as written by `new Date().toISOString()`. */
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

export const ajv = new Ajv({ strict: true, allErrors: false });
ajv.addFormat('date-time', { type: 'string', validate: (s: string) => DATE_TIME_RE.test(s) && !Number.isNaN(Date.parse(s)) });

/** Where the data schema lives (next to the Rego it describes). */
export const DATA_SCHEMA_URL = new URL('../../policy/data.schema.json', import.meta.url);

const dataSchema = JSON.parse(readFileSync(DATA_SCHEMA_URL, 'utf8')) as object;
export const validateDataDocument: ValidateFunction<PolicyData> = ajv.compile<PolicyData>(dataSchema);

const str = { type: 'string', maxLength: 4096 } as const;
const strArray = { type: 'array', maxItems: 256, items: str } as const;
const riskLevel = { enum: ['low', 'medium', 'high', 'critical'] } as const;

const inputSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['principal', 'session_id', 'action', 'scopes', 'budget', 'requested_sinks', 'egress'],
  properties: {
    principal: { type: 'string', minLength: 1, maxLength: 256 },
    session_id: { type: 'string', maxLength: 256 },
    action: {
      type: 'object',
      additionalProperties: false,
      required: ['id', 'version', 'risk_level', 'required_scopes', 'declared_side_effects', 'digest_trusted'],
      properties: {
        id: { type: 'string', minLength: 1, maxLength: 256 },
        version: { type: 'string', maxLength: 256 },
        risk_level: riskLevel,
        required_scopes: strArray,
        declared_side_effects: strArray,
        digest_trusted: { type: 'boolean' },
      },
    },
    scopes: strArray,
    budget: {
      type: 'object',
      additionalProperties: false,
      required: ['exhausted', 'remaining_calls', 'cost'],
      properties: {
        exhausted: { type: 'boolean' },
        remaining_calls: { anyOf: [{ type: 'null' }, { type: 'number', minimum: 0 }] },
        cost: { type: 'number', minimum: 0 },
      },
    },
    requested_sinks: strArray,
    egress: {
      type: 'object',
      additionalProperties: false,
      required: ['unresolved_domains', 'unresolved_paths', 'sensitive_paths'],
      properties: { unresolved_domains: strArray, unresolved_paths: strArray, sensitive_paths: strArray },
    },
  },
} as const;
export const validateInput: ValidateFunction<PolicyInput> = ajv.compile<PolicyInput>(inputSchema);

const denyCode = { enum: ['invalid_input', 'untrusted_digest', 'not_in_acl', 'missing_scope', 'budget_exhausted', 'sink_not_allowed'] } as const;
const nullableText = { anyOf: [{ type: 'null' }, { type: 'string', maxLength: 4096 }] } as const;

const decisionSchema = {
  type: 'object',
  additionalProperties: false,
  required: [
    'allow', 'requires_approval', 'deny_reason_code', 'deny_reason', 'would_deny_reason_code', 'would_deny_reason',
    'approval_reasons', 'budgets_after', 'approved_sinks', 'policy_version', 'matched_rules', 'enforcement_mode', 'risk_level',
  ],
  properties: {
    allow: { type: 'boolean' },
    requires_approval: { type: 'boolean' },
    deny_reason_code: { anyOf: [{ type: 'null' }, denyCode] },
    deny_reason: nullableText,
    would_deny_reason_code: { anyOf: [{ type: 'null' }, denyCode] },
    would_deny_reason: nullableText,
    approval_reasons: {
      type: 'array',
      maxItems: 5,
      uniqueItems: true,
      items: { enum: ['risk_high', 'risk_critical', 'unresolved_domains', 'unresolved_paths', 'sensitive_paths'] },
    },
    budgets_after: {
      type: 'object',
      additionalProperties: false,
      required: ['remaining_calls'],
      properties: { remaining_calls: { anyOf: [{ type: 'null' }, { type: 'number' }] } },
    },
    approved_sinks: { type: 'array', maxItems: 1024, items: { type: 'string' } },
    policy_version: { type: 'string', minLength: 1, maxLength: 128 },
    matched_rules: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', maxLength: 128 } },
    enforcement_mode: { enum: ['monitor', 'warn', 'enforce'] },
    risk_level: riskLevel,
  },
} as const;
export const validateDecision: ValidateFunction<PolicyDecision> = ajv.compile<PolicyDecision>(decisionSchema);

/** One line naming the first schema error (`/acl/agent-1/actions: must NOT have duplicate items`). */
export function describeSchemaErrors(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'invalid';
  return `${e.instancePath || '/'}: ${e.message ?? 'invalid'}`;
}
