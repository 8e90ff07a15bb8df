// Signed execution grants: the gate's own statement that one request may execute once, bound to
// the request, plan, principal, session, lease key and epoch. Ed25519 (grant key) over
// UTF-8("portcullis-grant-v1\n" + JCS(grant minus grant_signature)). Expiry is the caller's check.
import { uuidv7 } from '../ids.ts';
import type { SigningKey } from '../keys/keystore.ts';
import type { PublicKeySet } from '../keys/key-set.ts';
import type { Jwks } from '../keys/jwk.ts';
import { DOMAIN, domainBytes, toJsonValue } from './canonical.ts';
import { signDocument } from './signed-here.ts';
import { verifyDocument, type SignatureStatus } from './receipts.ts';

export interface GrantClaims {
  grant_id: string;
  trace_id: string;
  action_id: string;
  action_version: string;
  module_digest: string;
  request_hash: string;
  plan_hash: string | null;
  principal: string;
  session_id: string;
  /** RFC 7638 thumbprint of the agent's DPoP key. */
  lease_jkt: string;
  epoch: number;
  approval_id?: string;
  approved_by?: string;
  /** RFC 7638 thumbprint of the approving operator's DPoP key. */
  operator_binding?: string;
  issued_at: string;
  expires_at: string;
}

export interface SignedGrant extends GrantClaims {
  signing_key_id: string;
  /** Hex Ed25519 signature. */
  grant_signature: string;
}

export const GRANT_ID = /^grant_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

/** `grant_<uuidv7>`. */
export function newGrantId(uuid: () => string = uuidv7): string {
  return `grant_${uuid()}`;
}

/** The exact signed bytes of a grant (any object): everything but grant_signature. */
export function grantSigningBytes(grant: object): Buffer {
  const { grant_signature: _sig, ...body } = grant as Record<string, unknown>;
  return domainBytes(DOMAIN.grant, body);
}

const str = (v: unknown) => typeof v === 'string' && v.length > 0;

/** Validates the shape of a grant (claims or signed); returns the first problem or null. */
export function grantProblem(g: unknown, signed: boolean): string | null {
  if (typeof g !== 'object' || g === null || Array.isArray(g)) return 'not an object';
  const v = g as Record<string, unknown>;
  if (typeof v.grant_id !== 'string' || !GRANT_ID.test(v.grant_id)) return 'grant_id must be grant_<uuidv7>';
  for (const k of ['trace_id', 'action_id', 'action_version', 'module_digest', 'request_hash', 'principal', 'session_id', 'lease_jkt'] as const) {
    if (!str(v[k])) return `${k} must be a non-empty string`;
  }
  if (v.plan_hash !== null && !str(v.plan_hash)) return 'plan_hash must be a string or null';
  if (typeof v.epoch !== 'number' || !Number.isSafeInteger(v.epoch) || v.epoch < 0) return 'epoch must be a non-negative integer';
  for (const k of ['approval_id', 'approved_by', 'operator_binding'] as const) {
    if (v[k] !== undefined && !str(v[k])) return `${k} must be a non-empty string when present`;
  }
  if (typeof v.issued_at !== 'string' || !ISO.test(v.issued_at) || typeof v.expires_at !== 'string' || !ISO.test(v.expires_at)) {
    return 'issued_at/expires_at must be ISO 8601 UTC';
  }
  if (signed && (!str(v.signing_key_id) || typeof v.grant_signature !== 'string')) return 'missing signature';
  return null;
}

/** Signs grant claims with the grant key. Throws TypeError on malformed claims (a pipeline bug). */
export function signGrant(claims: GrantClaims, key: SigningKey): SignedGrant {
  if (key.purpose !== 'grant') throw new TypeError('grants are signed with the grant key');
  const problem = grantProblem(claims, false);
  if (problem) throw new TypeError(`grant: ${problem}`);
  const { signing_key_id: _k, grant_signature: _s, ...rest } = claims as GrantClaims & Partial<SignedGrant>;
  const body = toJsonValue({ ...rest, signing_key_id: key.kid }) as unknown as Omit<SignedGrant, 'grant_signature'>;
  return signDocument(DOMAIN.grant, body, 'grant_signature', key);
}

/**
 * Verifies a grant's signature against the grant keys: `unsigned`, `unknown_kid`,
 * `signature_invalid` or `verified`. Does not check expiry or epoch.
 */
export function verifyGrant(grant: unknown, keys: Jwks | PublicKeySet): SignatureStatus {
  return verifyDocument(grant, 'grant_signature', grantSigningBytes, keys, (g) => grantProblem(g, true) === null);
}
