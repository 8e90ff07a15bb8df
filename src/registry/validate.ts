// Input and output checks against an action's compiled schemas. Request violations are the
// caller's fault (422 schema_violation, with a short, client-safe list of what failed); output
// violations are the provider's (502 response_schema_violation, details kept for the log/receipt).
import type { ErrorObject } from 'ajv';
import { GateError } from '../errors.ts';
import type { RegisteredAction } from './registry.ts';

/** A client-safe description of one schema violation. */
export interface SchemaViolation {
  path: string;
  keyword: string;
  message: string;
}

const MAX_VIOLATIONS = 10;

function violations(errors: readonly ErrorObject[] | null | undefined): SchemaViolation[] {
  return (errors ?? []).slice(0, MAX_VIOLATIONS).map((e) => ({
    path: e.instancePath === '' ? '/' : e.instancePath,
    keyword: e.keyword,
    message: e.message ?? e.keyword,
  }));
}

/** Throws GateError `schema_violation` (422) unless `body` matches the action's request schema. */
export function assertRequest(action: RegisteredAction, body: unknown): void {
  if (action.validateRequest(body)) return;
  throw new GateError('schema_violation', `request does not match ${action.manifest.action_id} request_schema`, {
    extra: { violations: violations(action.validateRequest.errors) },
  });
}

/**
 * Throws GateError `response_schema_violation` (502) unless `output` matches the action's response
 * schema. An action without a response schema (only allowed below high risk) accepts any object.
 */
export function assertResponse(action: RegisteredAction, output: unknown): void {
  const validate = action.validateResponse;
  if (!validate) {
    if (output !== null && typeof output === 'object' && !Array.isArray(output)) return;
    throw new GateError('response_schema_violation', `${action.manifest.action_id} output is not a JSON object`);
  }
  if (validate(output)) return;
  throw new GateError('response_schema_violation', `${action.manifest.action_id} output does not match response_schema`, {
    extra: { violations: violations(validate.errors) },
  });
}
