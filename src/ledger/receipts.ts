// Signed execution receipts (GET /v1/receipts/{id}). The signature is Ed25519 over
// UTF-8("portcullis-receipt-v1\n" + JCS(receipt minus receipt_signature and signature_status)),
// hex-encoded; signing_key_id names the key in /v1/receipt-keys. See docs/receipts.md.
import { uuidv7 } from '../ids.ts';
import type { SigningKey } from '../keys/keystore.ts';
import { toKeySet, type PublicKeySet } from '../keys/key-set.ts';
import type { Jwks } from '../keys/jwk.ts';
import { DOMAIN, domainBytes, jsonDigest, toJsonValue, type JsonValue } from './canonical.ts';
import { signDocument } from './signed-here.ts';

export type NormalizedResult =
  | { kind: 'success'; summary: string }
  | { kind: 'provider_failure' | 'timeout' | 'cancelled' | 'internal_error'; reason: string };

export type VerificationOutcome =
  | { status: 'verified'; evidence: { [k: string]: JsonValue } }
  | { status: 'verification_failed'; reason: string }
  | { status: 'unverifiable_declared' | 'provider_failed_before_verification' | 'skipped'; reason?: string };

export type FailureClass = 'provider_error' | 'timeout' | 'policy_violation' | 'verification_failed' | 'internal_error';

/** Every signed member of a receipt. */
export interface ReceiptBody {
  receipt_id: string;
  grant_id: string;
  trace_id: string;
  action_id: string;
  action_version: string;
  provider_module_digest: string;
  request_hash: string;
  plan_hash: string | null;
  principal: string;
  session_id: string;
  provider_receipt: JsonValue;
  normalized_result: NormalizedResult;
  verification_outcome: VerificationOutcome;
  effect_evidence: JsonValue[];
  /** `sha256:<hex>` of JCS(result returned to the agent). */
  result_hash: string;
  started_at: string;
  finished_at: string;
  failure_class: FailureClass | null;
  signing_key_id: string;
}

/** A signed receipt as stored in the ledger. */
export interface Receipt extends ReceiptBody {
  /** Hex Ed25519 signature (128 hex chars). */
  receipt_signature: string;
}

/** Status added by GET /v1/receipts/{id}; the stored body is never changed. */
export type SignatureStatus = 'verified' | 'unsigned' | 'unknown_kid' | 'signature_invalid';

/** What the pipeline supplies; id, result hash and key id are filled in here. */
export type ReceiptInput = Omit<ReceiptBody, 'receipt_id' | 'signing_key_id' | 'result_hash'> & {
  receipt_id?: string;
  /** The JSON result returned to the agent (null when none); hashed into `result_hash`. */
  result: unknown;
};

const RESULT_KINDS = ['success', 'provider_failure', 'timeout', 'cancelled', 'internal_error'];
const OUTCOME_STATUSES = ['verified', 'verification_failed', 'unverifiable_declared', 'provider_failed_before_verification', 'skipped'];
const FAILURE_CLASSES = ['provider_error', 'timeout', 'policy_violation', 'verification_failed', 'internal_error'];
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
export const RECEIPT_ID = /^rcpt_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** `rcpt_<uuidv7>`. */
export function newReceiptId(uuid: () => string = uuidv7): string {
  return `rcpt_${uuid()}`;
}

/** `sha256:<hex>` of the canonical JSON of the result returned to the agent. */
export function resultHash(result: unknown): string {
  return jsonDigest(result === undefined ? null : result);
}

/** The exact signed bytes of a receipt (any object): everything but receipt_signature and signature_status. */
export function receiptSigningBytes(receipt: object): Buffer {
  const { receipt_signature: _sig, signature_status: _status, ...body } = receipt as Record<string, unknown>;
  return domainBytes(DOMAIN.receipt, body);
}

function need(cond: boolean, what: string): void {
  if (!cond) throw new TypeError(`receipt: ${what}`);
}

const str = (v: unknown) => typeof v === 'string' && v.length > 0;

function checkInput(r: ReceiptInput): void {
  for (const k of ['grant_id', 'trace_id', 'action_id', 'action_version', 'provider_module_digest', 'request_hash', 'principal', 'session_id'] as const) {
    need(str(r[k]), `${k} must be a non-empty string`);
  }
  need(r.plan_hash === null || str(r.plan_hash), 'plan_hash must be a string or null');
  need(RESULT_KINDS.includes(r.normalized_result?.kind), 'normalized_result.kind');
  need(r.normalized_result.kind === 'success'
    ? typeof (r.normalized_result as { summary?: unknown }).summary === 'string'
    : typeof (r.normalized_result as { reason?: unknown }).reason === 'string', 'normalized_result summary/reason');
  need(OUTCOME_STATUSES.includes(r.verification_outcome?.status), 'verification_outcome.status');
  if (r.verification_outcome.status === 'verified') {
    const ev = (r.verification_outcome as { evidence?: unknown }).evidence;
    need(typeof ev === 'object' && ev !== null && !Array.isArray(ev), 'verified outcome needs evidence');
  }
  if (r.verification_outcome.status === 'verification_failed') {
    need(typeof (r.verification_outcome as { reason?: unknown }).reason === 'string', 'verification_failed needs a reason');
  }
  need(Array.isArray(r.effect_evidence), 'effect_evidence must be an array');
  need(ISO.test(r.started_at) && ISO.test(r.finished_at), 'started_at/finished_at must be ISO 8601 UTC');
  need(r.failure_class === null || FAILURE_CLASSES.includes(r.failure_class), 'failure_class');
  need(r.receipt_id === undefined || RECEIPT_ID.test(r.receipt_id), 'receipt_id must be rcpt_<uuidv7>');
}

/**
 * Builds and signs a receipt with the active receipt key. Throws TypeError on a malformed input
 * (a pipeline bug): after execution the caller reports that as `evidence_persistence_failed`.
 */
export function buildReceipt(input: ReceiptInput, key: SigningKey, uuid: () => string = uuidv7): Receipt {
  if (key.purpose !== 'receipt') throw new TypeError('receipts are signed with the receipt key');
  checkInput(input);
  const { result, receipt_id, ...rest } = input;
  const body = toJsonValue({
    ...rest,
    receipt_id: receipt_id ?? newReceiptId(uuid),
    result_hash: resultHash(result),
    signing_key_id: key.kid,
  }) as unknown as ReceiptBody;
  return signDocument(DOMAIN.receipt, body, 'receipt_signature', key);
}

/**
 * Verifies a receipt (any JSON value) against receipt public keys (all historical keys):
 * `unsigned` when it carries no signature, `unknown_kid` when its key is not in the set,
 * `signature_invalid` for anything else that does not verify. Never throws on the receipt.
 */
export function verifyReceipt(receipt: unknown, keys: Jwks | PublicKeySet): SignatureStatus {
  return verifyDocument(receipt, 'receipt_signature', receiptSigningBytes, keys);
}

/**
 * The shared check behind {@link verifyReceipt} and verifyGrant: `signature_invalid` for a
 * non-object, `unsigned` when `field` is absent, `signature_invalid` when `wellFormed` refuses it
 * or its signing bytes cannot be built, else the Ed25519 check of `field` under `signing_key_id`.
 */
export function verifyDocument(
  doc: unknown,
  field: string,
  signingBytes: (doc: Record<string, unknown>) => Buffer,
  keys: Jwks | PublicKeySet,
  wellFormed: (doc: Record<string, unknown>) => boolean = () => true,
): SignatureStatus {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'signature_invalid';
  const d = doc as Record<string, unknown>;
  if (d[field] === undefined || d[field] === null) return 'unsigned';
  if (!wellFormed(d)) return 'signature_invalid';
  let bytes: Buffer;
  try {
    bytes = signingBytes(d);
  } catch {
    return 'signature_invalid';
  }
  return toKeySet(keys).verifyEd25519Hex(d.signing_key_id, bytes, d[field]);
}
