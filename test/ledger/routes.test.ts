// HTTP routes of the ledger through app.request (no socket): contract shapes, signature_status,
// 404 receipt_not_found, invalid_input on bad filters, verify reporting a break.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Hono } from 'hono';
import { sql } from 'kysely';
import { errorBody, toGateError } from '../../src/errors.ts';
import type { GateEnv } from '../../src/http/env.ts';
import { ledgerRoutes, receiptRoute, type Ledger } from '../../src/ledger/index.ts';
import type { Keystore } from '../../src/keys/index.ts';
import { dropAppendOnly, ledgerOn, makeGrant, makeReceipt, sqliteBackend, testKeys, type TestContext } from './helpers.ts';

async function setup(t: TestContext): Promise<{ app: Hono<GateEnv>; ledger: Ledger; keys: Keystore; receiptId: string }> {
  const keys = await testKeys(t);
  const ledger = await ledgerOn(await (await sqliteBackend.fresh(t)).open(), keys);
  const grant = makeGrant(keys, { trace_id: 'trc_route' });
  const { intent_id } = await ledger.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
  const receipt = makeReceipt(keys, grant);
  await ledger.finalize({ intentId: intent_id, receipt, auditEvent: { type: 'execute', decision: 'allow' } });
  await ledger.append({ type: 'execute', decision: 'deny', trace_id: 'trc_denied', principal: 'agent-2', reason_code: 'policy_denied' });
  const app = new Hono<GateEnv>();
  app.onError((err, c) => {
    const ge = toGateError(err);
    return c.json(errorBody(ge), ge.status as 400);
  });
  app.route('/', ledgerRoutes({ ledger, keys }));
  app.route('/', receiptRoute({ ledger, keys }));
  return { app, ledger, keys, receiptId: receipt.receipt_id };
}

describe('ledger routes', () => {
  test('GET /v1/receipts/:id returns the stored body plus signature_status verified', async (t) => {
    const { app, ledger, receiptId } = await setup(t);
    const res = await app.request(`/v1/receipts/${receiptId}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const body = await res.json() as Record<string, unknown>;
    const { signature_status, ...rest } = body;
    assert.equal(signature_status, 'verified');
    assert.deepEqual(rest, await ledger.getReceipt(receiptId));
  });

  test('signature_status reflects a receipt tampered in the database (signature_invalid), body unchanged', async (t) => {
    const { app, ledger, receiptId } = await setup(t);
    await dropAppendOnly(ledger.database);
    const stored = (await ledger.getReceipt(receiptId))!;
    const forged = { ...stored, normalized_result: { kind: 'success', summary: 'forged' }, signature_status: 'verified' };
    await sql`update receipts set receipt_json = ${JSON.stringify(forged)} where receipt_id = ${receiptId}`.execute(ledger.database.db);
    const body = await (await app.request(`/v1/receipts/${receiptId}`)).json() as Record<string, unknown>;
    assert.equal(body.signature_status, 'signature_invalid');
    assert.deepEqual(body.normalized_result, { kind: 'success', summary: 'forged' });
  });

  test('signature_status: a receipt whose key was rotated away stays verified', async (t) => {
    const { app, keys, receiptId } = await setup(t);
    await keys.rotateReceiptKey();
    const body = await (await app.request(`/v1/receipts/${receiptId}`)).json() as Record<string, unknown>;
    assert.equal(body.signature_status, 'verified');
  });

  for (const id of ['rcpt_01900000-0000-7000-8000-000000000000', 'nope', 'rcpt_%27%20or%201%3D1', 'a'.repeat(500)]) {
    test(`GET /v1/receipts/${id.slice(0, 40)} -> 404 receipt_not_found`, async (t) => {
      const { app } = await setup(t);
      const res = await app.request(`/v1/receipts/${id}`);
      assert.equal(res.status, 404);
      assert.deepEqual(await res.json(), { error: 'receipt_not_found' });
    });
  }

  test('GET /v1/receipt-keys serves every historical receipt key as a JWKS', async (t) => {
    const { app, keys } = await setup(t);
    await keys.rotateReceiptKey();
    const res = await app.request('/v1/receipt-keys');
    assert.equal(res.status, 200);
    const jwks = await res.json() as { keys: Array<Record<string, unknown>> };
    assert.equal(jwks.keys.length, 2);
    for (const k of jwks.keys) {
      assert.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
      assert.equal(k.kty, 'OKP');
      assert.equal(k.alg, 'EdDSA');
    }
  });

  const queries: Array<{ q: string; types: string[] }> = [
    { q: '', types: ['execute', 'execute', 'execute_dispatch'] },
    { q: '?decision=deny', types: ['execute'] },
    { q: '?trace_id=trc_route', types: ['execute', 'execute_dispatch'] },
    { q: '?principal=agent-2&decision=deny', types: ['execute'] },
    { q: '?limit=1', types: ['execute'] },
    { q: '?limit=5000', types: ['execute', 'execute', 'execute_dispatch'] },
    { q: '?after=2100-01-01T00:00:00Z', types: [] },
    { q: '?unknown_param=1', types: ['execute', 'execute', 'execute_dispatch'] },
  ];
  for (const c of queries) {
    test(`GET /v1/audit/events${c.q}`, async (t) => {
      const { app } = await setup(t);
      const res = await app.request(`/v1/audit/events${c.q}`);
      assert.equal(res.status, 200);
      const body = await res.json() as { events: Array<{ type: string; seq: number }>; count: number };
      assert.deepEqual(body.events.map((e) => e.type), c.types);
      assert.equal(body.count, c.types.length);
    });
  }

  for (const q of ['?limit=0', '?limit=-1', '?limit=abc', '?limit=1e3', '?decision=maybe', '?after=not-a-date', '?before=2026-02-30T25:00:00Z', '?principal=a&principal=b']) {
    test(`GET /v1/audit/events${q} -> 400 invalid_input`, async (t) => {
      const { app } = await setup(t);
      const res = await app.request(`/v1/audit/events${q}`);
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), { error: 'invalid_input' });
    });
  }

  test('GET /v1/audit/verify: intact, then the first broken event after tampering', async (t) => {
    const { app, ledger } = await setup(t);
    let res = await app.request('/v1/audit/verify');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      intact: true, events_checked: 3, broken_at: null, reason: null, checkpoints_checked: 0,
      head: (await ledger.verify()).head,
    });
    await dropAppendOnly(ledger.database);
    await sql`update audit_events set reason_code = 'allowed' where seq = 3`.execute(ledger.database.db);
    res = await app.request('/v1/audit/verify');
    const body = await res.json() as { intact: boolean; broken_at: { index: number; seq: number }; reason: string };
    assert.equal(body.intact, false);
    assert.equal(body.reason, 'hash_mismatch');
    assert.equal(body.broken_at.index, 2);
    assert.equal(body.broken_at.seq, 3);
  });

  test('a database failure is 503 ledger_unavailable with the code alone', async (t) => {
    const { app, ledger } = await setup(t);
    await ledger.database.close();
    for (const path of ['/v1/audit/events', '/v1/audit/verify', '/v1/receipts/rcpt_01900000-0000-7000-8000-000000000000']) {
      const res = await app.request(path);
      assert.equal(res.status, 503, path);
      assert.deepEqual(await res.json(), { error: 'ledger_unavailable' });
    }
  });
});
