// HTTP routes of the evidence ledger. Authentication (lease DPoP on the client socket, operator
// auth on the admin socket) is applied by middleware mounted before these; they only read.
// Rejections are GateErrors (invalid_input 400, receipt_not_found 404, ledger_unavailable 503).
import { Hono } from 'hono';
import { GateError } from '../errors.ts';
import type { GateEnv } from '../http/env.ts';
import type { Jwks } from '../keys/jwk.ts';
import type { PublicKeySet } from '../keys/key-set.ts';
import type { Ledger } from './ledger.ts';
import { verifyReceipt } from './receipts.ts';
import type { Decision, EventFilters } from './types.ts';

export interface LedgerRouteDeps {
  ledger: Ledger;
  /** A Keystore satisfies this. */
  keys: { receiptJwks(): Jwks; receiptKeys(): PublicKeySet };
}

const FILTERS = ['trace_id', 'action_id', 'principal', 'session_id', 'decision', 'after', 'before', 'limit'] as const;

function parseFilters(queries: Record<string, string[]>): EventFilters {
  const out: EventFilters = {};
  for (const name of FILTERS) {
    const values = queries[name];
    if (values === undefined) continue;
    // A repeated filter is ambiguous (which one did the caller mean?): refuse rather than pick.
    if (values.length !== 1) throw new GateError('invalid_input', `${name} given more than once`);
    const v = values[0]!;
    if (name === 'limit') {
      if (!/^[0-9]{1,9}$/.test(v) || Number(v) < 1) throw new GateError('invalid_input', 'limit must be a positive integer');
      out.limit = Math.min(Number(v), 1000);
    } else if (name === 'decision') {
      out.decision = v as Decision; // validated by queryEvents
    } else {
      out[name] = v;
    }
  }
  return out;
}

/** GET /v1/audit/events, GET /v1/audit/verify, GET /v1/receipt-keys (admin socket). */
export function ledgerRoutes(deps: LedgerRouteDeps): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  app.get('/v1/audit/events', async (c) => {
    const events = await deps.ledger.queryEvents(parseFilters(c.req.queries()));
    c.header('cache-control', 'no-store');
    return c.json({ events, count: events.length });
  });
  app.get('/v1/audit/verify', async (c) => {
    const result = await deps.ledger.verify();
    c.header('cache-control', 'no-store');
    return c.json(result);
  });
  app.get('/v1/receipt-keys', (c) => {
    c.header('cache-control', 'no-store');
    return c.json(deps.keys.receiptJwks());
  });
  return app;
}

/**
 * GET /v1/receipts/:id (both sockets). The stored body is returned unchanged plus
 * `signature_status`, its verification against every historical receipt key right now.
 */
export function receiptRoute(deps: LedgerRouteDeps): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  app.get('/v1/receipts/:id', async (c) => {
    const receipt = await deps.ledger.getReceipt(c.req.param('id'));
    if (!receipt) throw new GateError('receipt_not_found');
    c.header('cache-control', 'no-store');
    return c.json({ ...receipt, signature_status: verifyReceipt(receipt, deps.keys.receiptKeys()) });
  });
  return app;
}
