// The gate as a function of its services: builds the client-socket and admin-socket apps from
// injected parts. Knows nothing of sockets, files, signals or which backend a store uses.
import { Hono, type Context } from 'hono';
import type { KeyObject } from 'node:crypto';
import type { JSONWebKeySet } from 'jose';
import type { GateEnv } from './http/env.ts';
import type { AuditSink, Clock } from './contracts.ts';
import type { GateConfig } from './config/load.ts';
import type { ReplayStore, RevocationStore } from './stores/types.ts';
import type { DpopVerifier } from './auth/dpop.ts';
import type { LeaseSigningKey, LeaseVerifier } from './auth/lease.ts';
import { drainGuard, leaseAuth, operatorAuth, rateLimit, TokenBucket, type OperatorRecord } from './auth/middleware.ts';
import { installErrorHandler, traceIds } from './app/common.ts';
import { leaseRoutes } from './app/leases.ts';
import { adminCoreRoutes } from './app/admin-core.ts';

/** Who the peer on the client socket is. */
export interface IdentityProvider {
  identify(c: Context<GateEnv>): Promise<{ principal: string; scopes?: readonly string[] | undefined }>;
}

export interface GateKeys {
  leaseSigningKey(): LeaseSigningKey;
  /** kid -> public key, every lease key that may still have live leases. */
  leasePublicKeys(): Map<string, KeyObject>;
  leaseJwks(): JSONWebKeySet;
}

export interface HealthReport {
  redis: boolean;
  opa: boolean;
  ledger: boolean;
  approval_store: boolean;
  egress_proxy: null;
  actions_registered: number;
}

/** Mutable process state, owned by the server and read by the apps. */
export interface GateState {
  draining: boolean;
  /** Executions between their intent and their outcome (what a drain waits for). */
  inFlight: number;
  /** Client-socket requests being handled right now (this one included). */
  requests: number;
  startedAt: number;
}

export interface GateHooks {
  onSessionBudgets?(sessionId: string, principal: string, budgets: { max_calls?: number }, ttlSeconds: number): Promise<void>;
  onSessionRenewed?(sessionId: string, ttlSeconds: number): Promise<void>;
  /** After the kill switch: persist the epoch elsewhere, void held approvals, … */
  onEpochAdvanced?(previous: number, current: number, operator: string): Promise<void>;
}

/** A route module mounted on one socket; `auth` says which middleware guards it. */
export interface RouteModule {
  socket: 'client' | 'admin';
  /** 'lease' | 'operator' | 'none' */
  auth: 'lease' | 'operator' | 'none';
  /** Admin write routes (mutations) get the write rate limit; others the read limit. */
  app: Hono<GateEnv>;
}

export interface GateServices {
  config: GateConfig;
  version: string;
  clock: Clock;
  state: GateState;
  /** Background work held until no client request is in flight (told here when the last one ends). */
  quiet?: { settled(): void };
  keys: GateKeys;
  leaseVerifier: LeaseVerifier;
  dpop: DpopVerifier;
  /** The admin socket's verifier (same replay store, never a server nonce). */
  adminDpop: DpopVerifier;
  replay: ReplayStore;
  revocation: RevocationStore;
  identity: IdentityProvider;
  operators(): OperatorRecord[];
  audit: AuditSink;
  health(): Promise<HealthReport>;
  status?(): Promise<Record<string, unknown>>;
  hooks: GateHooks;
  /** Extra route modules (actions, execute, policy, approvals, ledger, …), mounted in order. */
  modules: RouteModule[];
}

function healthRoutes(s: GateServices): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    let h: HealthReport;
    try {
      h = await s.health();
    } catch {
      h = { redis: false, opa: false, ledger: false, approval_store: false, egress_proxy: null, actions_registered: 0 };
    }
    const core = h.redis && h.opa && h.ledger && h.approval_store;
    const status = !core ? 'not_ready' : h.egress_proxy === false ? 'degraded' : 'ready';
    return c.json({ status, ...h }, status === 'not_ready' ? 503 : 200);
  });
  return app;
}

/** Builds the client-socket app: health, leases, JWKS, then lease-authenticated modules. */
export function buildClientApp(s: GateServices): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  installErrorHandler(app, 'client', () => s.dpop.nonceIssuer?.current());
  app.use('*', async (_c, next) => {
    s.state.requests++;
    try {
      await next();
    } finally {
      if (--s.state.requests === 0) s.quiet?.settled();
    }
  });
  app.use('*', traceIds());
  if (s.dpop.nonceIssuer) {
    const issuer = s.dpop.nonceIssuer;
    // RFC 9449 §8: a fresh nonce on every response, so clients rarely hit use_dpop_nonce.
    app.use('*', async (c, next) => {
      await next();
      c.header('DPoP-Nonce', issuer.current());
    });
  }
  app.route('/', healthRoutes(s));
  app.route('/', leaseRoutes(s));
  const client = s.modules.filter((x) => x.socket === 'client');
  for (const m of client.filter((x) => x.auth === 'none')) app.route('/', m.app);
  // One guarded group: a sub-app's `use('*')` applies to every later route once merged, so the
  // lease middleware must be registered exactly once (twice would consume the proof's jti twice).
  const guarded = new Hono<GateEnv>();
  guarded.use('*', drainGuard(() => s.state.draining), leaseAuth({ leases: s.leaseVerifier, dpop: s.dpop, revocation: s.revocation }));
  for (const m of client.filter((x) => x.auth === 'lease')) guarded.route('/', m.app);
  app.route('/', guarded);
  return app;
}

/** Builds the admin-socket app: health, then operator-authenticated, rate-limited routes. */
export function buildAdminApp(s: GateServices): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  installErrorHandler(app, 'admin');
  app.use('*', traceIds());
  app.route('/', healthRoutes(s));
  const write = rateLimit(new TokenBucket(s.config.rate_limits.admin_write_per_second, s.clock));
  const read = rateLimit(new TokenBucket(s.config.rate_limits.admin_read_per_second, s.clock));
  const auth = operatorAuth({ operators: () => s.operators(), dpop: s.adminDpop });
  const guarded = new Hono<GateEnv>();
  guarded.use('*', auth, async (c, next) => (c.req.method === 'GET' || c.req.method === 'HEAD' ? read(c, next) : write(c, next)));
  guarded.route('/', adminCoreRoutes(s));
  for (const m of s.modules.filter((x) => x.socket === 'admin')) guarded.route('/', m.app);
  app.route('/', guarded);
  return app;
}
