// Admin secrets routes through app.request(): PUT/GET/DELETE shapes and codes, values never in any
// response or audit event, the operator's name on every audit event.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Hono } from 'hono';
import Database from 'better-sqlite3';
import { secretsAdminRoutes } from '../../src/secrets/routes.ts';
import { SqliteSecretsStore } from '../../src/secrets/store.ts';
import { SecretCipher } from '../../src/secrets/cipher.ts';
import { errorBody, toGateError } from '../../src/errors.ts';
import type { AuditEventInput } from '../../src/contracts.ts';
import type { GateEnv } from '../../src/http/env.ts';

const VALUE = 'xoxb-0123456789-secret-value';

function setup(t: TestContext, opts: { operator?: boolean; failAudit?: boolean } = {}) {
  const db = new Database(':memory:');
  t.after(() => db.close());
  const store = new SqliteSecretsStore({ database: db, cipher: new SecretCipher(randomBytes(32)), clock: { now: () => Date.UTC(2026, 0, 2) } });
  const events: AuditEventInput[] = [];
  const audit = {
    append: async (e: AuditEventInput) => {
      if (opts.failAudit) throw new Error('ledger down');
      events.push(e);
    },
  };
  const app = new Hono<GateEnv>();
  app.onError((err, c) => {
    const ge = toGateError(err);
    return c.json(errorBody(ge), ge.status as 400);
  });
  app.use('*', async (c, next) => {
    c.set('traceId', 'trc_test');
    if (opts.operator !== false) c.set('operator', { name: 'alice', jkt: 'jkt' });
    await next();
  });
  app.route('/', secretsAdminRoutes({ store, audit }));
  return { app, store, events };
}

const put = (name: string, body: unknown, ct = 'application/json') => ({
  method: 'PUT',
  headers: { 'content-type': ct },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

test('PUT stores the value (200 {name, updated}); GET lists names only; DELETE removes', async (t) => {
  const { app, store, events } = setup(t);
  const r1 = await app.request('/v1/admin/secrets/slack_token', put('slack_token', { value: VALUE }));
  assert.equal(r1.status, 200);
  assert.deepEqual(await r1.json(), { name: 'slack_token', updated: true });
  assert.equal((await store.resolve(['slack_token'])).get('slack_token'), VALUE);

  const r2 = await app.request('/v1/admin/secrets');
  assert.equal(r2.status, 200);
  const listed = await r2.text();
  assert.deepEqual(JSON.parse(listed), { secrets: [{ name: 'slack_token', updated_at: '2026-01-02T00:00:00.000Z' }], count: 1 });
  assert.ok(!listed.includes(VALUE));

  const r3 = await app.request('/v1/admin/secrets/slack_token', { method: 'DELETE' });
  assert.equal(r3.status, 200);
  assert.deepEqual(await r3.json(), { name: 'slack_token', deleted: true });
  const r4 = await app.request('/v1/admin/secrets/slack_token', { method: 'DELETE' });
  assert.equal(r4.status, 404);
  assert.equal(((await r4.json()) as { error: string }).error, 'secret_not_found');

  assert.deepEqual(
    events.map((e) => [e.type, e.decision, e.operator, e.trace_id, e.detail]),
    [
      ['admin_secret_set', 'admin', 'alice', 'trc_test', { name: 'slack_token', created: true }],
      ['admin_secret_removed', 'admin', 'alice', 'trc_test', { name: 'slack_token' }],
    ],
  );
  assert.ok(!JSON.stringify(events).includes(VALUE));
});

const badPuts: Array<{ name: string; path: string; init: RequestInit; status: number; code: string }> = [
  { name: 'invalid secret name (uppercase)', path: '/v1/admin/secrets/Slack', init: put('Slack', { value: VALUE }), status: 400, code: 'invalid_input' },
  { name: 'invalid secret name (65 chars)', path: `/v1/admin/secrets/${'a'.repeat(65)}`, init: put('a', { value: VALUE }), status: 400, code: 'invalid_input' },
  { name: 'invalid secret name (encoded slash)', path: '/v1/admin/secrets/a%2Fb', init: put('a', { value: VALUE }), status: 400, code: 'invalid_input' },
  { name: 'missing value', path: '/v1/admin/secrets/k', init: put('k', {}), status: 400, code: 'invalid_input' },
  { name: 'extra property', path: '/v1/admin/secrets/k', init: put('k', { value: VALUE, name: 'other' }), status: 400, code: 'invalid_input' },
  { name: 'value not a string', path: '/v1/admin/secrets/k', init: put('k', { value: 1 }), status: 400, code: 'invalid_input' },
  { name: 'empty value', path: '/v1/admin/secrets/k', init: put('k', { value: '' }), status: 400, code: 'invalid_input' },
  { name: 'array body', path: '/v1/admin/secrets/k', init: put('k', [VALUE]), status: 400, code: 'invalid_input' },
  { name: 'broken JSON', path: '/v1/admin/secrets/k', init: put('k', '{"value":'), status: 400, code: 'invalid_request' },
  { name: 'not JSON content type', path: '/v1/admin/secrets/k', init: put('k', { value: VALUE }, 'text/plain'), status: 415, code: 'unsupported_media_type' },
  { name: 'oversized body', path: '/v1/admin/secrets/k', init: put('k', { value: 'x'.repeat(500_000) }), status: 413, code: 'payload_too_large' },
];

for (const c of badPuts) {
  test(`PUT refused: ${c.name} -> ${c.status} ${c.code}, nothing stored, no echo`, async (t) => {
    const { app, store, events } = setup(t);
    const res = await app.request(c.path, c.init);
    assert.equal(res.status, c.status);
    const text = await res.text();
    assert.equal((JSON.parse(text) as { error: string }).error, c.code);
    assert.ok(!text.includes(VALUE));
    assert.deepEqual(await store.list(), []);
    assert.equal(events.length, 0);
  });
}

test('DELETE with an invalid name is 400 invalid_input', async (t) => {
  const { app } = setup(t);
  const res = await app.request('/v1/admin/secrets/NOPE', { method: 'DELETE' });
  assert.equal(res.status, 400);
  assert.equal(((await res.json()) as { error: string }).error, 'invalid_input');
});

test('without an authenticated operator nothing happens (fail closed, 500 code only)', async (t) => {
  const { app, store } = setup(t, { operator: false });
  const res = await app.request('/v1/admin/secrets/k', put('k', { value: VALUE }));
  assert.equal(res.status, 500);
  assert.deepEqual(await res.json(), { error: 'internal_error' });
  assert.deepEqual(await store.list(), []);
  assert.equal((await app.request('/v1/admin/secrets')).status, 500);
});

test('a failing audit sink turns the response into an error (the change is never reported as done)', async (t) => {
  const { app } = setup(t, { failAudit: true });
  const res = await app.request('/v1/admin/secrets/k', put('k', { value: VALUE }));
  assert.equal(res.status, 500);
  assert.ok(!(await res.text()).includes(VALUE));
});
