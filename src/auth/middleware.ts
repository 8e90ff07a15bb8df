// Hono middleware for both sockets: the drain guard, lease + DPoP authentication (client socket),
// operator API key + DPoP authentication (admin socket), and token-bucket rate limits.
// Auth failures have a constant shape: `{ "error": code }` with a WWW-Authenticate: DPoP header.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { GateError } from '../errors.ts';
import type { Clock, OperatorIdentity } from '../contracts.ts';
import type { GateEnv } from '../http/env.ts';
import type { RevocationStore } from '../stores/types.ts';
import type { DpopVerifier } from './dpop.ts';
import type { LeaseVerifier } from './lease.ts';

/** Returns the single value of a header, refusing duplicates (raw headers when on a real socket). */
export function singleHeader(c: Context<GateEnv>, name: string, dupCode: 'invalid_lease' | 'invalid_dpop'): string | undefined {
  const raw = c.env?.incoming?.rawHeaders;
  if (raw) {
    let count = 0;
    let value: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i]!.toLowerCase() === name) {
        count++;
        value = raw[i + 1];
      }
    }
    if (count > 1) throw new GateError(dupCode, `duplicate ${name} header`);
    return value;
  }
  const v = c.req.header(name);
  // Without raw headers, duplicates arrive joined with ", " (never valid in a JWS or a token).
  if (v !== undefined && v.includes(',')) throw new GateError(dupCode, `duplicate ${name} header`);
  return v;
}

/** Splits `Authorization: DPoP <token>`; Bearer (or any other scheme) is refused. */
export function dpopToken(authorization: string, wrongScheme: 'invalid_lease' | 'invalid_dpop'): string {
  const m = /^([A-Za-z]+) ([A-Za-z0-9._~+/=-]+)$/.exec(authorization);
  if (!m) throw new GateError(wrongScheme, 'malformed authorization');
  if (m[1]!.toLowerCase() !== 'dpop') throw new GateError(wrongScheme, 'authorization scheme must be DPoP');
  return m[2]!;
}

export function requestPath(c: Context): string {
  return new URL(c.req.url).pathname;
}

export interface LeaseAuthDeps {
  leases: LeaseVerifier;
  dpop: DpopVerifier;
  revocation: RevocationStore;
}

/** Authenticates a client call: lease (signature, claims, expiry), proof, jti, epoch and revocations. */
export function leaseAuth(deps: LeaseAuthDeps): MiddlewareHandler<GateEnv> {
  return async (c, next) => {
    const authz = singleHeader(c, 'authorization', 'invalid_lease');
    const proof = singleHeader(c, 'dpop', 'invalid_dpop');
    if (!authz || !proof) throw new GateError('missing_auth_header');
    const token = dpopToken(authz, 'invalid_lease');
    const claims = deps.leases.verify(token);
    await deps.dpop.verify({ proof, method: c.req.method, path: requestPath(c), accessToken: token, expectedJkt: claims.cnf.jkt });
    const rev = await deps.revocation.state(claims.sid, claims.sub);
    if (claims.epoch !== rev.epoch) throw new GateError('invalid_lease', 'lease from a revoked epoch');
    if (rev.sessionRevoked) throw new GateError('invalid_lease', 'session revoked');
    if (claims.iat * 1000 <= rev.principalRevokedBefore) throw new GateError('invalid_lease', 'principal revoked');
    c.set('lease', {
      principal: claims.sub,
      sessionId: claims.sid,
      leaseJti: claims.jti,
      scopes: claims.scopes,
      budgets: claims.budgets,
      epoch: claims.epoch,
      jkt: claims.cnf.jkt,
      expiresAt: claims.exp * 1000,
      token,
    });
    await next();
  };
}

export interface OperatorRecord { name: string; apiKeyHash: Buffer; jkt: string }

export function hashApiKey(apiKey: string): string {
  return createHash('sha256').update(apiKey, 'utf8').digest('hex');
}

// A syntactically valid thumbprint no key has: used when no operator matched, so the proof is
// still fully verified and fails at the same step as a wrong key would.
const NO_OPERATOR_JKT = 'A'.repeat(43);

/** Authenticates an operator: API key (hashed, constant-time over every operator) + DPoP proof by the pinned key. */
export function operatorAuth(deps: { operators: () => OperatorRecord[]; dpop: DpopVerifier }): MiddlewareHandler<GateEnv> {
  return async (c, next) => {
    const authz = singleHeader(c, 'authorization', 'invalid_dpop');
    const proof = singleHeader(c, 'dpop', 'invalid_dpop');
    if (!authz || !proof) throw new GateError('missing_auth_header');
    const apiKey = dpopToken(authz, 'invalid_dpop');
    const presented = createHash('sha256').update(apiKey, 'utf8').digest();
    let match: OperatorRecord | undefined;
    for (const op of deps.operators()) {
      // Every operator is compared, whatever matched, so the timing does not depend on the position.
      if (timingSafeEqual(presented, op.apiKeyHash) && !match) match = op;
    }
    await deps.dpop.verify({
      proof, method: c.req.method, path: requestPath(c), accessToken: apiKey, expectedJkt: match?.jkt ?? NO_OPERATOR_JKT,
    });
    if (!match) throw new GateError('invalid_dpop', 'unknown operator');
    const id: OperatorIdentity = { name: match.name, jkt: match.jkt };
    c.set('operator', id);
    await next();
  };
}

/** A token bucket: `rate` tokens per second, burst `rate` (at least 1). */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(private readonly rate: number, private readonly clock: Clock, private readonly burst = Math.max(1, rate)) {
    this.tokens = this.burst;
    this.last = clock.now();
  }
  take(): boolean {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export function rateLimit(bucket: TokenBucket): MiddlewareHandler<GateEnv> {
  return async (_c, next) => {
    if (!bucket.take()) throw new GateError('rate_limit_exceeded');
    await next();
  };
}

export function drainGuard(isDraining: () => boolean): MiddlewareHandler<GateEnv> {
  return async (_c, next) => {
    if (isDraining()) throw new GateError('draining');
    await next();
  };
}
