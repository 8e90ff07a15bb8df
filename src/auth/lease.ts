// Lease JWTs: ES256, bound to the agent's DPoP key (cnf.jkt), carrying principal, session,
// scopes, budgets and the revocation epoch. Issued with jose; verified on the hot path with
// node:crypto and a cache of already-verified token strings (time claims are checked every call).
import type { KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { GateError } from '../errors.ts';
import type { Clock } from '../contracts.ts';
import { JwsError, parseCompact, verifyEs256 } from './jws.ts';

export interface LeaseSigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface LeaseClaims {
  iss: string;
  aud: string;
  sub: string;
  sid: string;
  jti: string;
  iat: number;
  nbf: number;
  exp: number;
  scopes: string[];
  budgets?: { max_calls?: number };
  epoch: number;
  cnf: { jkt: string };
}

export const LEASE_AUDIENCE = 'portcullis-gate';

export async function signLease(key: LeaseSigningKey, claims: LeaseClaims): Promise<string> {
  const { iss, aud, sub, jti, iat, nbf, exp, ...rest } = claims;
  return new SignJWT(rest as Record<string, unknown>)
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: key.kid })
    .setIssuer(iss).setAudience(aud).setSubject(sub).setJti(jti)
    .setIssuedAt(iat).setNotBefore(nbf).setExpirationTime(exp)
    .sign(key.privateKey);
}

const SCOPE = /^[A-Za-z0-9_.:-]{1,64}$/;
const ID = /^[A-Za-z0-9_.:@-]{1,128}$/;

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

/** Verifies lease signatures against the gate's lease keys (by kid) and caches verified tokens. */
export class LeaseVerifier {
  private readonly cache = new Map<string, LeaseClaims>();

  constructor(
    private readonly keys: () => Map<string, KeyObject>,
    private readonly issuer: string,
    private readonly clock: Clock,
    private readonly maxCache = 50_000,
  ) {}

  /** Returns the lease claims or throws invalid_lease / lease_expired. Never touches a store. */
  verify(token: string): LeaseClaims {
    const nowS = Math.floor(this.clock.now() / 1000);
    let claims = this.cache.get(token);
    if (!claims) {
      claims = this.verifySignatureAndShape(token);
      if (this.cache.size >= this.maxCache) this.cache.clear();
      this.cache.set(token, claims);
    }
    if (claims.exp <= nowS) {
      this.cache.delete(token);
      throw new GateError('lease_expired');
    }
    if (claims.nbf > nowS + 5 || claims.iat > nowS + 5) throw new GateError('invalid_lease', 'lease not yet valid');
    return claims;
  }

  private verifySignatureAndShape(token: string): LeaseClaims {
    let parsed;
    try {
      parsed = parseCompact(token);
    } catch (e) {
      throw new GateError('invalid_lease', 'malformed lease', { cause: e });
    }
    const { header, payload: p } = parsed;
    // Algorithm pinned: only ES256 with a known kid, whatever the token says.
    if (header.alg !== 'ES256' || typeof header.kid !== 'string') throw new GateError('invalid_lease', 'bad lease header');
    if (header.typ !== undefined && header.typ !== 'JWT') throw new GateError('invalid_lease', 'bad lease typ');
    const key = this.keys().get(header.kid);
    if (!key) throw new GateError('invalid_lease', 'unknown lease kid');
    if (!verifyEs256(key, parsed.signingInput, parsed.signature)) throw new GateError('invalid_lease', 'bad lease signature');
    const cnf = p.cnf as { jkt?: unknown } | undefined;
    const budgets = p.budgets as { max_calls?: unknown } | undefined;
    const ok = p.iss === this.issuer && p.aud === LEASE_AUDIENCE
      && typeof p.sub === 'string' && ID.test(p.sub)
      && typeof p.sid === 'string' && ID.test(p.sid)
      && typeof p.jti === 'string' && ID.test(p.jti)
      && isInt(p.iat) && isInt(p.nbf) && isInt(p.exp) && isInt(p.epoch) && p.epoch >= 0
      && Array.isArray(p.scopes) && p.scopes.every((s) => typeof s === 'string' && SCOPE.test(s))
      && typeof cnf === 'object' && cnf !== null && typeof cnf.jkt === 'string' && /^[A-Za-z0-9_-]{43}$/.test(cnf.jkt)
      && (budgets === undefined || (typeof budgets === 'object' && budgets !== null
        && (budgets.max_calls === undefined || (isInt(budgets.max_calls) && budgets.max_calls >= 0))));
    if (!ok) throw new GateError('invalid_lease', 'lease claims invalid');
    return p as unknown as LeaseClaims;
  }

  /** Drops every cached verification (used after a key change). */
  clear(): void {
    this.cache.clear();
  }
}

export { JwsError };
