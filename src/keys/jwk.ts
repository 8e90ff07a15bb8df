// Public JWK shapes, RFC 7638 thumbprints and the kid format of every Portcullis signing key.
// Only two key types exist: Ed25519 (OKP, alg EdDSA) and P-256 (EC, alg ES256); nothing else parses.
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';

/** What a key is used for. Each purpose has its own key; a signature never crosses purposes. */
export type KeyPurpose = 'grant' | 'receipt' | 'checkpoint' | 'lease';
export const KEY_PURPOSES: readonly KeyPurpose[] = ['grant', 'receipt', 'checkpoint', 'lease'];

/** An Ed25519 public key as served in a JWKS (RFC 8037). */
export interface OkpPublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

/** A P-256 public key as served in a JWKS (RFC 7518). */
export interface EcPublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  alg: 'ES256';
  use: 'sig';
}

export type PublicJwk = OkpPublicJwk | EcPublicJwk;

/** A JSON Web Key Set. */
export interface Jwks<K extends PublicJwk = PublicJwk> {
  keys: K[];
}

/** The algorithm of the key a purpose uses. */
export function algForPurpose(purpose: KeyPurpose): 'EdDSA' | 'ES256' {
  return purpose === 'lease' ? 'ES256' : 'EdDSA';
}

/**
 * RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key: the required members in
 * lexicographic order, no whitespace (`crv,kty,x` for OKP, `crv,kty,x,y` for EC).
 */
export function jwkThumbprint(jwk: { kty: string; crv: string; x: string; y?: string }): string {
  const members = jwk.kty === 'EC'
    ? JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })
    : JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  return createHash('sha256').update(members, 'utf8').digest('base64url');
}

/** Length of the thumbprint prefix in a kid (96 bits). */
export const KID_THUMBPRINT_CHARS = 16;

/** `<purpose>-<yyyy-mm>-<thumbprint prefix>` for generated keys; `<purpose>-<thumbprint prefix>` for provisioned PEM keys. */
export function makeKid(purpose: KeyPurpose, thumbprint: string, createdAt: string | null): string {
  const prefix = thumbprint.slice(0, KID_THUMBPRINT_CHARS);
  return createdAt === null ? `${purpose}-${prefix}` : `${purpose}-${createdAt.slice(0, 7)}-${prefix}`;
}

/** True when `kid` names `purpose` and ends with the key's own thumbprint prefix. */
export function kidMatchesKey(kid: string, purpose: KeyPurpose, thumbprint: string): boolean {
  const suffix = `-${thumbprint.slice(0, KID_THUMBPRINT_CHARS)}`;
  return kid.startsWith(`${purpose}-`) && kid.endsWith(suffix) && kid.length <= 128;
}

/** Builds the served public JWK of a key object (which must be Ed25519 or P-256). */
export function publicJwkOf(key: KeyObject, kid: string): PublicJwk {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const raw = pub.export({ format: 'jwk' }) as { kty?: string; crv?: string; x?: string; y?: string };
  if (raw.kty === 'OKP' && raw.crv === 'Ed25519' && typeof raw.x === 'string') {
    return { kty: 'OKP', crv: 'Ed25519', x: raw.x, kid, alg: 'EdDSA', use: 'sig' };
  }
  if (raw.kty === 'EC' && raw.crv === 'P-256' && typeof raw.x === 'string' && typeof raw.y === 'string') {
    return { kty: 'EC', crv: 'P-256', x: raw.x, y: raw.y, kid, alg: 'ES256', use: 'sig' };
  }
  throw new TypeError('unsupported key type (Ed25519 or P-256 only)');
}

const B64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Validates an untrusted JWK (e.g. from an exported bundle) and returns the typed public JWK, or
 * undefined when it is not an Ed25519/P-256 signing key with a kid. Private members are never kept.
 */
export function parsePublicJwk(value: unknown): PublicJwk | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.kid !== 'string' || v.kid.length === 0 || v.kid.length > 128) return undefined;
  if (v.use !== undefined && v.use !== 'sig') return undefined;
  if (typeof v.x !== 'string' || !B64URL.test(v.x)) return undefined;
  if (v.kty === 'OKP' && v.crv === 'Ed25519') {
    if (v.alg !== undefined && v.alg !== 'EdDSA') return undefined;
    if (v.x.length !== 43) return undefined;
    return { kty: 'OKP', crv: 'Ed25519', x: v.x, kid: v.kid, alg: 'EdDSA', use: 'sig' };
  }
  if (v.kty === 'EC' && v.crv === 'P-256') {
    if (v.alg !== undefined && v.alg !== 'ES256') return undefined;
    if (typeof v.y !== 'string' || !B64URL.test(v.y) || v.x.length !== 43 || v.y.length !== 43) return undefined;
    return { kty: 'EC', crv: 'P-256', x: v.x, y: v.y, kid: v.kid, alg: 'ES256', use: 'sig' };
  }
  return undefined;
}
