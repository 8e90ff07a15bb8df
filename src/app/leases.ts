// POST /v1/leases (issue or renew a DPoP-bound lease) and GET /.well-known/jwks.json.
// Issuance is unauthenticated by design: who may ask is decided by the socket's mode/group and
// the identity provider (peer uid). Renewal (Authorization: DPoP <lease> + proof) keeps the session.
import { Hono } from 'hono';
import { Ajv } from 'ajv';
import { GateError } from '../errors.ts';
import type { GateEnv } from '../http/env.ts';
import type { GateServices } from '../gate.ts';
import { asP256PublicJwk, thumbprint } from '../auth/jws.ts';
import { LEASE_AUDIENCE, signLease, type LeaseClaims } from '../auth/lease.ts';
import { drainGuard, leaseAuth, rateLimit, TokenBucket } from '../auth/middleware.ts';
import { newId, readJsonBody } from './common.ts';
import { publish } from '../observe.ts';

const ajv = new Ajv({ allErrors: false, strict: true });
const validateLeaseRequest = ajv.compile({
  type: 'object',
  additionalProperties: false,
  required: ['scopes', 'dpop_jwk'],
  properties: {
    scopes: { type: 'array', minItems: 1, maxItems: 32, uniqueItems: true, items: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,64}$' } },
    dpop_jwk: { type: 'object' },
    budgets: {
      type: 'object',
      additionalProperties: false,
      properties: { max_calls: { type: 'integer', minimum: 1, maximum: 1_000_000 } },
    },
  },
});

interface LeaseRequest { scopes: string[]; dpop_jwk: unknown; budgets?: { max_calls?: number } }

export function leaseRoutes(s: GateServices): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  const bucket = new TokenBucket(s.config.rate_limits.leases_per_second, s.clock);
  const renewAuth = leaseAuth({ leases: s.leaseVerifier, dpop: s.dpop, revocation: s.revocation });

  app.get('/.well-known/jwks.json', (c) => c.json(s.keys.leaseJwks()));

  app.post('/v1/leases', drainGuard(() => s.state.draining), rateLimit(bucket), async (c, next) => {
    // A renewal carries the current lease; authenticate it fully before anything else.
    if (c.req.header('authorization') !== undefined || c.req.header('dpop') !== undefined) return renewAuth(c, next);
    await next();
  }, async (c) => {
    const body = await readJsonBody(c, 16 * 1024);
    if (!validateLeaseRequest(body)) {
      throw new GateError('invalid_request', 'invalid lease request', { extra: { detail: ajv.errorsText(validateLeaseRequest.errors) } });
    }
    const req = body as LeaseRequest;
    let jkt: string;
    try {
      jkt = thumbprint(asP256PublicJwk(req.dpop_jwk));
    } catch (e) {
      throw new GateError('invalid_request', 'dpop_jwk must be a public EC P-256 JWK', { extra: { detail: (e as Error).message } });
    }
    const who = await s.identity.identify(c);
    if (who.scopes !== undefined) {
      const refused = req.scopes.filter((x) => !who.scopes!.includes(x));
      if (refused.length > 0) throw new GateError('identity_denied', `scopes not allowed for this principal: ${refused.join(', ')}`);
    }
    const renewing = c.get('lease') as GateEnv['Variables']['lease'] | undefined;
    if (renewing) {
      if (renewing.principal !== who.principal) throw new GateError('identity_denied', 'renewal by another principal');
      if (renewing.jkt !== jkt) throw new GateError('invalid_request', 'renewal must keep the DPoP key');
      if (req.budgets !== undefined) throw new GateError('invalid_request', 'budgets are fixed for a session; omit them on renewal');
    }
    const nowMs = s.clock.now();
    const iat = Math.floor(nowMs / 1000);
    const exp = iat + s.config.lease_ttl_seconds;
    const epoch = renewing ? renewing.epoch : await s.revocation.currentEpoch();
    const sessionId = renewing?.sessionId ?? newId('ses');
    const budgets = renewing ? renewing.budgets : req.budgets;
    const claims: LeaseClaims = {
      iss: s.config.public_base_url,
      aud: LEASE_AUDIENCE,
      sub: who.principal,
      sid: sessionId,
      jti: newId('lea'),
      iat,
      nbf: iat,
      exp,
      scopes: req.scopes,
      ...(budgets ? { budgets } : {}),
      epoch,
      cnf: { jkt },
    };
    if (!renewing && req.budgets?.max_calls !== undefined) {
      await s.hooks.onSessionBudgets?.(sessionId, who.principal, req.budgets, s.config.lease_ttl_seconds);
    } else if (renewing && budgets?.max_calls !== undefined) {
      await s.hooks.onSessionRenewed?.(sessionId, s.config.lease_ttl_seconds);
    }
    const leaseJwt = await signLease(s.keys.leaseSigningKey(), claims);
    publish('lease_issued', { principal: who.principal, session_id: sessionId, renewal: Boolean(renewing) });
    return c.json({
      lease_jwt: leaseJwt,
      session_id: sessionId,
      lease_jti: claims.jti,
      expires_at: new Date(exp * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    });
  });
  return app;
}
