// Minimal, strict compact-JWS primitives for the hot path: ES256 only, node:crypto KeyObjects
// cached by RFC 7638 thumbprint. Every malformed input throws JwsError (callers map it to a code).
import { createPublicKey, hash, verify as cryptoVerify, timingSafeEqual, type KeyObject } from 'node:crypto';

export class JwsError extends Error {}

const B64URL = /^[A-Za-z0-9_-]*$/;

export function b64urlDecode(s: string): Buffer {
  if (!B64URL.test(s)) throw new JwsError('bad base64url');
  return Buffer.from(s, 'base64url');
}

export interface ParsedJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signingInput: string;
  signature: Buffer;
}

function parseObject(part: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(b64urlDecode(part).toString('utf8'));
  } catch {
    throw new JwsError('bad json');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new JwsError('not an object');
  return v as Record<string, unknown>;
}

/** Splits and decodes a compact JWS (no verification). Max 16 KiB. */
export function parseCompact(token: string): ParsedJws {
  if (typeof token !== 'string' || token.length > 16384) throw new JwsError('too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw new JwsError('not a compact JWS');
  const [h, p, s] = parts as [string, string, string];
  const header = parseObject(h);
  const payload = parseObject(p);
  // `crit` extensions are not supported: refuse rather than ignore (RFC 7515 §4.1.11).
  if ('crit' in header) throw new JwsError('crit not supported');
  return { header, payload, signingInput: `${h}.${p}`, signature: b64urlDecode(s) };
}

export interface EcPublicJwk { kty: 'EC'; crv: 'P-256'; x: string; y: string }

/** Validates a public EC P-256 JWK (refusing any private part) and returns its canonical members. */
export function asP256PublicJwk(jwk: unknown): EcPublicJwk {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw new JwsError('jwk not an object');
  const j = jwk as Record<string, unknown>;
  if ('d' in j || 'p' in j || 'q' in j || 'k' in j) throw new JwsError('jwk carries a private part');
  if (j.kty !== 'EC' || j.crv !== 'P-256') throw new JwsError('jwk is not EC P-256');
  if (typeof j.x !== 'string' || typeof j.y !== 'string' || !B64URL.test(j.x) || !B64URL.test(j.y)) throw new JwsError('bad coordinates');
  if (Buffer.from(j.x, 'base64url').length !== 32 || Buffer.from(j.y, 'base64url').length !== 32) throw new JwsError('bad coordinate length');
  return { kty: 'EC', crv: 'P-256', x: j.x, y: j.y };
}

/** RFC 7638 thumbprint (SHA-256, base64url) of a P-256 public JWK. */
export function thumbprint(jwk: EcPublicJwk): string {
  const canonical = `{"crv":"P-256","kty":"EC","x":"${jwk.x}","y":"${jwk.y}"}`;
  return hash('sha256', canonical, 'base64url');
}

const keyCache = new Map<string, KeyObject>();
const KEY_CACHE_MAX = 10_000;

/** Imports (or returns the cached) KeyObject for a validated P-256 JWK; checks the point is on the curve. */
export function keyFor(jwk: EcPublicJwk, jkt: string): KeyObject {
  let key = keyCache.get(jkt);
  if (!key) {
    try {
      key = createPublicKey({ key: { ...jwk }, format: 'jwk' });
    } catch {
      throw new JwsError('invalid public key');
    }
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
    keyCache.set(jkt, key);
  }
  return key;
}

/** Verifies an ES256 signature (raw r||s, 64 bytes). */
export function verifyEs256(key: KeyObject, signingInput: string, signature: Buffer): boolean {
  if (signature.length !== 64) return false;
  try {
    return cryptoVerify('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    return false;
  }
}

/** {@link verifyEs256} on the libuv thread pool (~100 µs of P-256 work off the event loop). Never rejects. */
export function verifyEs256Async(key: KeyObject, signingInput: string, signature: Buffer): Promise<boolean> {
  if (signature.length !== 64) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      cryptoVerify('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' }, signature, (err, ok) => resolve(!err && ok === true));
    } catch {
      resolve(false);
    }
  });
}

/** Constant-time string equality (length leak only). */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

export function sha256b64url(s: string): string {
  return hash('sha256', s, 'base64url');
}
