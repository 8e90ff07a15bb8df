// A set of public verification keys looked up by kid, with node:crypto KeyObjects imported once.
// Verification answers with a closed status; it never throws on attacker-controlled input.
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { parsePublicJwk, type Jwks, type PublicJwk } from './jwk.ts';

/** Outcome of checking one detached signature against a key set. */
export type SignatureCheck = 'verified' | 'unknown_kid' | 'signature_invalid';

const HEX_SIG_ED25519 = /^[0-9a-f]{128}$/;

interface Entry {
  jwk: PublicJwk;
  key: KeyObject;
}

/**
 * Public keys indexed by kid. Construction validates every key; a malformed key or two different
 * keys under one kid is a caller error (TypeError), because a verifier must never guess.
 */
export class PublicKeySet {
  readonly #byKid = new Map<string, Entry>();

  constructor(keys: Jwks | readonly PublicJwk[]) {
    const list: readonly unknown[] = Array.isArray(keys) ? keys : (keys as Jwks).keys;
    if (!Array.isArray(list)) throw new TypeError('JWKS must have a keys array');
    for (const raw of list) {
      const jwk = parsePublicJwk(raw);
      if (!jwk) throw new TypeError('JWKS contains a key that is not an Ed25519 or P-256 signing key with a kid');
      const existing = this.#byKid.get(jwk.kid);
      if (existing) {
        if (existing.jwk.x !== jwk.x || existing.jwk.kty !== jwk.kty) throw new TypeError(`two different keys share kid ${jwk.kid}`);
        continue;
      }
      let key: KeyObject;
      try {
        key = createPublicKey({ key: { ...jwk }, format: 'jwk' });
      } catch (cause) {
        throw new TypeError(`JWKS key ${jwk.kid} does not import`, { cause });
      }
      this.#byKid.set(jwk.kid, { jwk, key });
    }
  }

  get size(): number {
    return this.#byKid.size;
  }

  has(kid: string): boolean {
    return this.#byKid.has(kid);
  }

  /** The imported public key for `kid`, if present. */
  get(kid: string): { jwk: PublicJwk; key: KeyObject } | undefined {
    return this.#byKid.get(kid);
  }

  /** The keys as a JWKS, in insertion order. */
  toJwks(): Jwks {
    return { keys: [...this.#byKid.values()].map((e) => ({ ...e.jwk })) };
  }

  /**
   * Verifies a hex Ed25519 signature over `data` with the key named `kid`. Only Ed25519 keys can
   * answer `verified`; a kid naming a key of another type is `unknown_kid` (no usable key).
   */
  verifyEd25519Hex(kid: unknown, data: Uint8Array, signatureHex: unknown): SignatureCheck {
    if (typeof kid !== 'string') return 'unknown_kid';
    const entry = this.#byKid.get(kid);
    if (!entry || entry.jwk.kty !== 'OKP') return 'unknown_kid';
    if (typeof signatureHex !== 'string' || !HEX_SIG_ED25519.test(signatureHex)) return 'signature_invalid';
    try {
      return cryptoVerify(null, data, entry.key, Buffer.from(signatureHex, 'hex')) ? 'verified' : 'signature_invalid';
    } catch {
      return 'signature_invalid';
    }
  }
}

const setCache = new WeakMap<object, PublicKeySet>();

/**
 * Returns a PublicKeySet for a JWKS or passes a set through. Sets built from a JWKS object are
 * cached per object, so repeated verifications against one JWKS import each key once.
 */
export function toKeySet(keys: Jwks | PublicKeySet): PublicKeySet {
  if (keys instanceof PublicKeySet) return keys;
  const cached = setCache.get(keys);
  if (cached) return cached;
  const set = new PublicKeySet(keys);
  setCache.set(keys, set);
  return set;
}
