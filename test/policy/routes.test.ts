// Admin policy routes through app.request(): exact contract bodies and status codes, body
// validation (bad input changes nothing), and one audit event per mutation with the operator.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Hono } from 'hono';
import { errorBody, toGateError } from '../../src/errors.ts';
import type { AuditEventInput, AuditSink } from '../../src/contracts.ts';
import type { GateEnv } from '../../src/http/env.ts';
import { loadPolicyEngine } from '../../src/policy/engine.ts';
import { openPolicyDataStore, type PolicyDataStore } from '../../src/policy/data-store.ts';
import { policyAdminRoutes } from '../../src/policy/routes.ts';
import { WASM, lookupAction, makeInput, tempDir } from './fixtures.ts';

class MemoryAudit implements AuditSink {
  events: AuditEventInput[] = [];
  fail = false;
  async append(e: AuditEventInput): Promise<void> {
    if (this.fail) throw new Error('ledger unavailable');
    this.events.push(e);
  }
}

async function setup(t: TestContext) {
  const engine = await loadPolicyEngine(WASM);
  const clock = { now: () => Date.parse('2026-03-01T12:00:00.000Z') };
  const store = await openPolicyDataStore({ stateDir: tempDir(t), engine, lookupAction, clock, versionPrefix: 'strict-init' });
  const audit = new MemoryAudit();
  const app = new Hono<GateEnv>();
  app.use('*', async (c, next) => {
    c.set('operator', { name: 'alice', jkt: 'jkt-alice' });
    c.set('traceId', 'trc_test');
    await next();
  });
  app.route('/', policyAdminRoutes({ store, audit, maxBodyBytes: 4096 }));
  app.onError((err, c) => {
    const ge = toGateError(err);
    return c.json(errorBody(ge), ge.status as 400);
  });
  const call = async (method: string, path: string, body?: unknown, raw?: string) => {
    const res = await app.request(path, {
      method,
      headers: body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : {},
      body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  return { engine, store, audit, call };
}

function unchanged(store: PolicyDataStore, audit: MemoryAudit, version: string) {
  assert.equal(store.policyVersion, version, 'policy version unchanged');
  assert.equal(audit.events.length, 0, 'nothing audited');
}

test('GET /v1/admin/policy lists principals with derived sinks', async (t) => {
  const { call } = await setup(t);
  await call('POST', '/v1/admin/policy/grant', { principal: 'agent-support', actions: ['http_fetch', 'github_read', 'slack_post'] });
  await call('POST', '/v1/admin/policy/grant', { principal: 'agent-ops', actions: ['http_fetch', 'http_delete'] });
  const r = await call('GET', '/v1/admin/policy');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, {
    policy_version: 'strict-init-2',
    principals: {
      'agent-support': { actions: ['http_fetch', 'github_read', 'slack_post'], sinks: ['http_read', 'http_write'] },
      'agent-ops': { actions: ['http_fetch', 'http_delete'], sinks: ['http_read', 'http_write'] },
    },
  });
});

test('GET /v1/admin/policy/:principal with risk breakdown; unknown -> 404 principal_not_found', async (t) => {
  const { call } = await setup(t);
  await call('POST', '/v1/admin/policy/grant', { principal: 'agent-support', actions: ['http_fetch', 'github_read', 'slack_post'] });
  const r = await call('GET', '/v1/admin/policy/agent-support');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, {
    principal: 'agent-support',
    actions: ['http_fetch', 'github_read', 'slack_post'],
    sinks: ['http_read', 'http_write'],
    risk_breakdown: { low: ['http_fetch', 'github_read'], medium: ['slack_post'], high: [], critical: [] },
  });
  assert.deepEqual(await call('GET', '/v1/admin/policy/agent-nobody'), { status: 404, body: { error: 'principal_not_found' } });
  assert.deepEqual((await call('GET', '/v1/admin/policy/a%20b')).body, { error: 'invalid_input' });
});

test('POST grant then revoke: contract bodies, audit events with the operator', async (t) => {
  const { call, audit, engine } = await setup(t);
  const g = await call('POST', '/v1/admin/policy/grant', { principal: 'agent-support', actions: ['http_fetch', 'github_read', 'slack_post'] });
  assert.deepEqual(g, { status: 200, body: { principal: 'agent-support', actions: ['http_fetch', 'github_read', 'slack_post'], sinks: ['http_read', 'http_write'] } });
  const r = await call('POST', '/v1/admin/policy/revoke', { principal: 'agent-support', actions: ['slack_post'] });
  assert.deepEqual(r, { status: 200, body: { principal: 'agent-support', actions: ['http_fetch', 'github_read'], sinks: ['http_read'] } });
  assert.deepEqual(audit.events.map((e) => [e.type, e.decision, e.operator, e.principal, e.trace_id]), [
    ['admin_policy_grant', 'admin', 'alice', 'agent-support', 'trc_test'],
    ['admin_policy_revoke', 'admin', 'alice', 'agent-support', 'trc_test'],
  ]);
  assert.equal(audit.events[1]!.detail?.policy_version, 'strict-init-2');
  assert.equal(engine.evaluate(makeInput({ principal: 'agent-support' })).verdict, 'allow');
});

test('POST revoke of every action removes the principal', async (t) => {
  const { call } = await setup(t);
  await call('POST', '/v1/admin/policy/grant', { principal: 'agent-x', actions: ['http_fetch'] });
  assert.deepEqual((await call('POST', '/v1/admin/policy/revoke', { principal: 'agent-x', actions: ['http_fetch'] })).body, { principal: 'agent-x', actions: [], sinks: [] });
  assert.equal((await call('GET', '/v1/admin/policy/agent-x')).status, 404);
});

const badRequests: Array<{ name: string; method: string; path: string; body?: unknown; raw?: string; status: number; error: string; extra?: Record<string, unknown> }> = [
  { name: 'grant: unknown action ids (typo creating a policy hole)', method: 'POST', path: '/v1/admin/policy/grant', body: { principal: 'a', actions: ['http_fetch', 'htp_fetch'] }, status: 400, error: 'unknown_action', extra: { unknown_actions: ['htp_fetch'] } },
  { name: 'grant: body is not JSON', method: 'POST', path: '/v1/admin/policy/grant', raw: '{"principal":', status: 400, error: 'invalid_request' },
  { name: 'grant: sinks set by hand (extra property)', method: 'POST', path: '/v1/admin/policy/grant', body: { principal: 'a', actions: ['http_fetch'], sinks: ['db_write'] }, status: 400, error: 'invalid_request' },
  { name: 'grant: actions not an array', method: 'POST', path: '/v1/admin/policy/grant', body: { principal: 'a', actions: 'http_fetch' }, status: 400, error: 'invalid_request' },
  { name: 'grant: empty actions', method: 'POST', path: '/v1/admin/policy/grant', body: { principal: 'a', actions: [] }, status: 400, error: 'invalid_request' },
  { name: 'grant: principal with control characters', method: 'POST', path: '/v1/admin/policy/grant', body: { principal: 'a\nb', actions: ['http_fetch'] }, status: 400, error: 'invalid_input' },
  { name: 'grant: body over the size cap', method: 'POST', path: '/v1/admin/policy/grant', body: { principal: 'a', actions: Array.from({ length: 500 }, () => 'http_fetch') }, status: 413, error: 'payload_too_large' },
  { name: 'revoke: principal without entry', method: 'POST', path: '/v1/admin/policy/revoke', body: { principal: 'ghost', actions: ['http_fetch'] }, status: 404, error: 'principal_not_found' },
  { name: 'allowlist add: empty agent id', method: 'POST', path: '/v1/admin/policy/allowlist', body: { action_id: 'http_fetch', agent_id: '' }, status: 400, error: 'invalid_input' },
  { name: 'allowlist add: agent id too long', method: 'POST', path: '/v1/admin/policy/allowlist', body: { action_id: 'http_fetch', agent_id: 'a'.repeat(129) }, status: 400, error: 'invalid_input' },
  { name: 'allowlist add: invalid characters', method: 'POST', path: '/v1/admin/policy/allowlist', body: { action_id: 'http_fetch', agent_id: 'agent;rm' }, status: 400, error: 'invalid_input' },
  { name: 'allowlist add: wildcard agent (blanket bypass)', method: 'POST', path: '/v1/admin/policy/allowlist', body: { action_id: 'http_fetch', agent_id: '*' }, status: 400, error: 'invalid_input' },
  { name: 'allowlist add: agent_id missing', method: 'POST', path: '/v1/admin/policy/allowlist', body: { action_id: 'http_fetch' }, status: 400, error: 'invalid_input' },
  { name: 'allowlist add: unknown action', method: 'POST', path: '/v1/admin/policy/allowlist', body: { action_id: 'htp_fetch', agent_id: 'agent-ops' }, status: 404, error: 'action_not_found' },
  { name: 'allowlist remove: no such entry', method: 'DELETE', path: '/v1/admin/policy/allowlist', body: { action_id: 'http_fetch', agent_id: 'agent-ops' }, status: 404, error: 'allowlist_entry_not_found' },
  { name: 'allowlist remove: invalid id', method: 'DELETE', path: '/v1/admin/policy/allowlist', body: { action_id: 'http fetch', agent_id: 'agent-ops' }, status: 400, error: 'invalid_input' },
  { name: 'domain add: scheme in domain', method: 'POST', path: '/v1/admin/domains', body: { action_id: 'http_fetch', domain: 'https://api.example.com' }, status: 400, error: 'invalid_domain' },
  { name: 'domain add: port in domain', method: 'POST', path: '/v1/admin/domains', body: { action_id: 'http_fetch', domain: 'api.example.com:8443' }, status: 400, error: 'invalid_domain' },
  { name: 'domain add: *.com (whole TLD)', method: 'POST', path: '/v1/admin/domains', body: { action_id: 'http_fetch', domain: '*.com' }, status: 400, error: 'invalid_domain' },
  { name: 'domain add: unknown action', method: 'POST', path: '/v1/admin/domains', body: { action_id: 'nope', domain: 'api.example.com' }, status: 404, error: 'action_not_found' },
  { name: 'domain add: missing domain', method: 'POST', path: '/v1/admin/domains', body: { action_id: 'http_fetch' }, status: 400, error: 'invalid_request' },
  { name: 'domain remove: not learned', method: 'DELETE', path: '/v1/admin/domains', body: { action_id: 'http_fetch', domain: 'api.example.com' }, status: 404, error: 'domain_not_found' },
  { name: 'path add: traversal', method: 'POST', path: '/v1/admin/paths', body: { action_id: 'fs_read', path: '/data/../etc' }, status: 400, error: 'invalid_path' },
  { name: 'path add: relative', method: 'POST', path: '/v1/admin/paths', body: { action_id: 'fs_read', path: 'data' }, status: 400, error: 'invalid_path' },
  { name: 'path add: root', method: 'POST', path: '/v1/admin/paths', body: { action_id: 'fs_read', path: '/' }, status: 400, error: 'invalid_path' },
  { name: 'path remove: not learned', method: 'DELETE', path: '/v1/admin/paths', body: { action_id: 'fs_read', path: '/data' }, status: 404, error: 'path_not_found' },
  { name: 'path add: extra property', method: 'POST', path: '/v1/admin/paths', body: { action_id: 'fs_read', path: '/data', source: 'approval' }, status: 400, error: 'invalid_request' },
];

for (const c of badRequests) {
  test(`rejects ${c.name} -> ${c.status} ${c.error}, changes nothing`, async (t) => {
    const { call, store, audit } = await setup(t);
    const r = await call(c.method, c.path, c.body, c.raw);
    assert.equal(r.status, c.status);
    assert.deepEqual(r.body, { error: c.error, ...c.extra });
    unchanged(store, audit, 'strict-init-0');
  });
}

test('allowlist add/remove: contract bodies; the hold is skipped only while listed', async (t) => {
  const { call, engine, audit } = await setup(t);
  await call('POST', '/v1/admin/policy/grant', { principal: 'agent-ops', actions: ['http_delete'] });
  const del = makeInput({ principal: 'agent-ops', action: { id: 'http_delete', risk_level: 'high', declared_side_effects: ['http_write'] } });
  assert.equal(engine.evaluate(del).verdict, 'require_approval');
  const add = await call('POST', '/v1/admin/policy/allowlist', { action_id: 'http_delete', agent_id: 'agent-ops' });
  assert.deepEqual(add, { status: 200, body: { ok: true, action_id: 'http_delete', agent_id: 'agent-ops' } });
  assert.equal(engine.evaluate(del).verdict, 'allow');
  const rm = await call('DELETE', '/v1/admin/policy/allowlist', { action_id: 'http_delete', agent_id: 'agent-ops' });
  assert.deepEqual(rm, { status: 200, body: { ok: true, action_id: 'http_delete', agent_id: 'agent-ops' } });
  assert.equal(engine.evaluate(del).verdict, 'require_approval');
  assert.deepEqual(audit.events.map((e) => [e.type, e.action_id, e.principal]), [
    ['admin_policy_grant', undefined, 'agent-ops'],
    ['admin_policy_allowlist_add', 'http_delete', 'agent-ops'],
    ['admin_policy_allowlist_remove', 'http_delete', 'agent-ops'],
  ]);
});

test('learned domains: list, add, duplicate 409, remove, clear', async (t) => {
  const { call, audit } = await setup(t);
  assert.deepEqual(await call('GET', '/v1/admin/domains'), { status: 200, body: { domains: [] } });
  assert.deepEqual(await call('POST', '/v1/admin/domains', { action_id: 'http_fetch', domain: 'api.newservice.com' }),
    { status: 200, body: { domain: 'api.newservice.com', action_id: 'http_fetch' } });
  assert.deepEqual(await call('POST', '/v1/admin/domains', { action_id: 'http_fetch', domain: 'api.newservice.com' }),
    { status: 409, body: { error: 'domain_already_exists' } });
  await call('POST', '/v1/admin/domains', { action_id: 'github_read', domain: '*.example.com' });
  assert.deepEqual((await call('GET', '/v1/admin/domains')).body, {
    domains: [
      { domain: 'api.newservice.com', action_id: 'http_fetch', source: 'cli', added_at: '2026-03-01T12:00:00.000Z' },
      { domain: '*.example.com', action_id: 'github_read', source: 'cli', added_at: '2026-03-01T12:00:00.000Z' },
    ],
  });
  assert.deepEqual(await call('DELETE', '/v1/admin/domains', { action_id: 'http_fetch', domain: 'api.newservice.com' }), { status: 200, body: { removed: true } });
  assert.deepEqual(await call('DELETE', '/v1/admin/domains/clear'), { status: 200, body: { cleared: true } });
  assert.deepEqual((await call('GET', '/v1/admin/domains')).body, { domains: [] });
  assert.deepEqual(audit.events.map((e) => [e.type, e.operator]), [
    ['admin_domain_add', 'alice'], ['admin_domain_add', 'alice'], ['admin_domain_remove', 'alice'], ['admin_domains_clear', 'alice'],
  ]);
});

test('learned paths: list, add, duplicate 409, remove, clear', async (t) => {
  const { call, audit } = await setup(t);
  assert.deepEqual(await call('POST', '/v1/admin/paths', { action_id: 'fs_read', path: '/data/reports' }),
    { status: 200, body: { path: '/data/reports', action_id: 'fs_read' } });
  assert.deepEqual(await call('POST', '/v1/admin/paths', { action_id: 'fs_read', path: '/data/reports' }),
    { status: 409, body: { error: 'path_already_exists' } });
  assert.deepEqual((await call('GET', '/v1/admin/paths')).body, {
    paths: [{ path: '/data/reports', action_id: 'fs_read', source: 'cli', added_at: '2026-03-01T12:00:00.000Z' }],
  });
  assert.deepEqual(await call('DELETE', '/v1/admin/paths', { action_id: 'fs_read', path: '/data/reports' }), { status: 200, body: { removed: true } });
  assert.deepEqual(await call('DELETE', '/v1/admin/paths/clear'), { status: 200, body: { cleared: true } });
  assert.deepEqual(audit.events.map((e) => e.type), ['admin_path_add', 'admin_path_remove', 'admin_paths_clear']);
});

test('audit outage: the mutation is refused (500) and nothing changes (no unaudited policy change)', async (t) => {
  const { call, store, audit, engine } = await setup(t);
  audit.fail = true;
  const r = await call('POST', '/v1/admin/policy/grant', { principal: 'agent-1', actions: ['http_fetch'] });
  assert.deepEqual(r, { status: 500, body: { error: 'internal_error' } });
  assert.equal(store.policyVersion, 'strict-init-0');
  assert.equal(engine.evaluate(makeInput()).verdict, 'deny');
  assert.deepEqual((await call('GET', '/v1/admin/policy')).body, { policy_version: 'strict-init-0', principals: {} });
});

test('the operator name in the audit event comes from the auth context, not the body', async (t) => {
  const { call, audit } = await setup(t);
  const r = await call('POST', '/v1/admin/policy/grant', { principal: 'agent-1', actions: ['http_fetch'], operator: 'mallory' });
  assert.equal(r.status, 400);
  await call('POST', '/v1/admin/policy/grant', { principal: 'agent-1', actions: ['http_fetch'] });
  assert.deepEqual(audit.events.map((e) => e.operator), ['alice']);
});
