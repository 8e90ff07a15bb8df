// The one gate error: a closed union of stable codes, one table code -> HTTP status.
// Stages reject only by throwing GateError; handlers branch on `code`, never on message text.
// 5xx bodies carry the code alone; details are logged server-side with the trace id.

/** HTTP status for every gate error code. The README error table is checked against this by a test. */
export const ERROR_STATUS = {
  // 400
  invalid_request: 400,
  invalid_input: 400,
  invalid_domain: 400,
  invalid_path: 400,
  unknown_action: 400,
  // 401
  missing_auth_header: 401,
  invalid_lease: 401,
  lease_expired: 401,
  invalid_dpop: 401,
  replay_detected: 401,
  use_dpop_nonce: 401,
  // 403
  identity_denied: 403,
  policy_denied: 403,
  action_not_registered: 403,
  action_digest_mismatch: 403,
  budget_exhausted: 403,
  budget_session_not_found: 403,
  session_mismatch: 403,
  egress_denied: 403,
  egress_scheme_denied: 403,
  egress_port_denied: 403,
  egress_domain_denied: 403,
  egress_address_denied: 403,
  egress_redirect_denied: 403,
  secret_missing: 403,
  // 404
  not_found: 404,
  action_not_found: 404,
  approval_not_found: 404,
  receipt_not_found: 404,
  principal_not_found: 404,
  allowlist_entry_not_found: 404,
  domain_not_found: 404,
  path_not_found: 404,
  secret_not_found: 404,
  // 409
  domain_already_exists: 409,
  path_already_exists: 409,
  approval_conflict: 409,
  idempotency_key_conflict: 409,
  idempotency_in_progress: 409,
  // 413
  payload_too_large: 413,
  // 415
  unsupported_media_type: 415,
  // 422
  schema_violation: 422,
  // 429
  rate_limit_exceeded: 429,
  // 500
  evidence_persistence_failed: 500,
  internal_error: 500,
  reload_failed: 500,
  // 502
  action_execution_failed: 502,
  response_schema_violation: 502,
  // 503
  draining: 503,
  policy_engine_unavailable: 503,
  policy_engine_timeout: 503,
  policy_engine_invalid_response: 503,
  replay_cache_unavailable: 503,
  budget_store_unavailable: 503,
  epoch_store_unavailable: 503,
  approval_store_unavailable: 503,
  idempotency_store_unavailable: 503,
  ledger_unavailable: 503,
  identity_unavailable: 503,
  clock_error: 503,
} as const satisfies Record<string, number>;

export type GateErrorCode = keyof typeof ERROR_STATUS;
export const ERROR_CODES = Object.keys(ERROR_STATUS) as GateErrorCode[];

export function isGateErrorCode(value: unknown): value is GateErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_STATUS, value);
}

/** Extra, client-safe fields placed beside `error` in the body (e.g. `deny_reason`). Never used on 5xx. */
export type GateErrorExtra = Record<string, unknown>;

/**
 * The only error a stage throws to reject a request. `message` is for logs (never sent on 5xx);
 * `extra` is sent to the client on 4xx; `cause` carries the underlying failure for the log.
 */
export class GateError extends Error {
  readonly code: GateErrorCode;
  readonly status: number;
  readonly extra: GateErrorExtra | undefined;

  constructor(code: GateErrorCode, message?: string, options?: { extra?: GateErrorExtra; cause?: unknown }) {
    super(message ?? code, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GateError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.extra = options?.extra;
  }
}

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/** Strips control characters (log injection) and truncates to 500 characters, as the contract requires. */
export function sanitizeReason(reason: string): string {
  const clean = reason.replace(CONTROL_CHARS, '');
  return clean.length > 500 ? clean.slice(0, 500) : clean;
}

/** The JSON body for an error. 5xx: the code alone. 4xx: the code plus sanitized client-safe extras. */
export function errorBody(err: GateError): Record<string, unknown> {
  if (err.status >= 500 || !err.extra) return { error: err.code };
  const body: Record<string, unknown> = { error: err.code };
  for (const [k, v] of Object.entries(err.extra)) {
    body[k] = typeof v === 'string' ? sanitizeReason(v) : v;
  }
  return body;
}

/** Normalises anything thrown into a GateError; unknown failures become `internal_error`. */
export function toGateError(err: unknown): GateError {
  if (err instanceof GateError) return err;
  return new GateError('internal_error', 'unexpected failure', { cause: err });
}
