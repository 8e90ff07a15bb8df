// Adversarial review of the gate's auth surface, stores and pipeline. Every case names the attack;
// cases for things that are defended stay as regression tests. Suites:
//   A. full pipeline (embedded): routing per socket, revocation vs held approvals, body caps,
//      Idempotency-Key handling, id validation, admin input validation
//   B. fake clock: a session revocation must outlive the approvals it covers
//   C. Redis: the revocation epoch must not roll back when Redis loses its data
//   D. core gate (test route): log injection through the request path, the DPoP boot fence
//   E. stage level: a hold racing the kill switch
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createPrivateKey } from 'node:crypto';
import Database from 'better-sqlite3';
import { Hono } from 'hono';
import type { GateEnv } from '../../src/http/env.ts';
import type { AuditEventInput, Clock } from '../../src/contracts.ts';
import type { Extension } from '../../src/runtime/bootstrap.ts';
import { createRuntime } from '../../src/runtime/bootstrap.ts';
import { runGate, type RunningGate } from '../../src/runtime/run.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { newOperatorCredential, operatorConfigEntry, type OperatorCredential } from '../../src/runtime/state-dir.ts';
import { unixTransport } from '../../src/client/transport.ts';
import { PortcullisClient, ApprovalRequired } from '../../src/client/index.ts';
import { createRedis, waitReady } from '../../src/stores/redis.ts';
import { createIdempotencyStore } from '../../src/idempotency/index.ts';
import { approvalHold } from '../../src/pipeline/stages/approval-hold.ts';
import { runStages } from '../../src/pipeline/pipeline.ts';
import type { ExecContext, PipelineDeps } from '../../src/pipeline/context.ts';
import { startTestGate, operatorHeaders, newP256, proof, getLease, type TestGate, type TestKey } from '../helpers/gate.ts';
import { startRedis, serviceSkipReason, type RedisServer } from '../helpers/services.ts';
import { makeManifestsDir, startUpstream, type Upstream } from '../e2e/fixtures.ts';

const BASE = 'http://localhost';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Operator headers with an explicit proof time (for gates running on a shifted clock). */
function operatorHeadersAt(op: OperatorCredential, method: string, path: string, iatSeconds: number): Record<string, string> {
  const key: TestKey = { privateKey: createPrivateKey({ key: op.dpop_jwk, format: 'jwk' }), jwk: { kty: 'EC', crv: 'P-256', x: op.dpop_jwk.x, y: op.dpop_jwk.y }, privateJwk: op.dpop_jwk };
  return { authorization: `DPoP ${op.api_key}`, dpop: proof({ key, htm: method, htu: BASE + path, token: op.api_key, iat: iatSeconds }) };
}

/** Raw request with an arbitrary (already encoded) request target. */
function rawRequest(socketPath: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: any; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: { host: 'localhost', ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let parsed: unknown = text;
        try { parsed = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
        resolve({ status: res.statusCode!, body: parsed, text });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/**
 * Streams a chunked body of up to `totalBytes` and stops as soon as the gate answers.
 * Returns the answer and how many bytes had been sent when it came.
 */
function streamChunked(socketPath: string, path: string, totalBytes: number, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown; sentWhenAnswered: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = -1;
    let settled = false;
    const req = request({ socketPath, method: 'POST', path, headers: { host: 'localhost', 'content-type': 'application/json', 'transfer-encoding': 'chunked', ...headers } }, (res) => {
      answered = sent;
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        settled = true;
        let body: unknown;
        try { body = JSON.parse(Buffer.concat(chunks).toString() || 'null'); } catch { body = Buffer.concat(chunks).toString(); }
        resolve({ status: res.statusCode!, body, sentWhenAnswered: answered });
        req.destroy();
      });
      res.on('error', () => {});
    });
    req.on('error', (e) => { if (!settled && answered < 0) reject(e); });
    const chunk = Buffer.alloc(1 << 20, 0x20);
    const pump = () => {
      while (sent < totalBytes && answered < 0) {
        sent += chunk.length;
        if (!req.write(chunk)) { req.once('drain', pump); return; }
      }
      if (answered < 0) req.end();
    };
    req.write('{"scopes":["tools:call"],"pad":"');
    pump();
  });
}

// ---------------------------------------------------------------------------------------------
// A. The full pipeline, embedded stores.
// ---------------------------------------------------------------------------------------------
describe('security review A: full pipeline (embedded)', () => {
  let g: TestGate;
  let up: Upstream;
  let manifests: string;
  let agent: PortcullisClient;
  const admin = (method: string, path: string, body?: unknown) =>
    g.admin.send(method, path, operatorHeaders(g.operator, method, path.split('?')[0]!), body === undefined ? undefined : JSON.stringify(body));
  const hits = (path: string) => up.requests.filter((r) => r.path === path).length;

  before(async () => {
    up = await startUpstream();
    manifests = makeManifestsDir();
    // This suite makes admin writes back to back; the admin write rate limit (20/s) is not what it tests.
    g = await startTestGate({ overrides: { manifests_dir: manifests, unsafe_egress_allow: ['127.0.0.0/8'], rate_limits: { admin_write_per_second: 1000 } } });
    const grant = await admin('POST', '/v1/admin/policy/grant', { principal: 'agent', actions: ['echo', 'webhook_notify', 'webhook_high'] });
    assert.equal(grant.status, 200, grant.text);
    agent = new PortcullisClient({ socketPath: g.config.client_socket });
    await agent.connect();
  });
  after(async () => {
    agent?.close();
    await g?.stop();
    await up?.close();
    if (manifests) rmSync(dirname(manifests), { recursive: true, force: true });
  });

  const ADMIN_ROUTES: Array<[string, string, unknown?]> = [
    ['POST', '/v1/admin/revoke-all'],
    ['POST', '/v1/admin/drain'],
    ['POST', '/v1/admin/revoke', { principal: 'agent' }],
    ['GET', '/v1/admin/status'],
    ['GET', '/v1/admin/epoch'],
    ['POST', '/v1/admin/reload'],
    ['POST', '/v1/admin/policy/grant', { principal: 'mallory', actions: ['webhook_notify'] }],
    ['POST', '/v1/admin/policy/allowlist', { action_id: 'webhook_high', agent_id: 'agent' }],
    ['POST', '/v1/admin/domains', { action_id: 'webhook_notify', domain: 'evil.example' }],
    ['DELETE', '/v1/admin/domains/clear'],
    ['PUT', '/v1/admin/secrets/webhook_token', { value: 'attacker-chosen' }],
    ['GET', '/v1/admin/secrets'],
    ['PUT', '/v1/admin/budgets', { principal: 'agent', window_seconds: 60, max_calls: 1000000 }],
    ['POST', '/v1/admin/keys/rotate'],
    ['GET', '/v1/admin/audit/export'],
    ['GET', '/v1/admin/intents'],
    ['GET', '/v1/audit/events'],
    ['GET', '/v1/audit/verify'],
    ['GET', '/v1/approvals'],
    ['POST', '/v1/approvals/apr_00000000-0000-7000-8000-000000000000/approve'],
    ['GET', '/metrics'],
    ['GET', '/v1/receipt-keys'],
  ];

  test('regression: no admin route is reachable on the client socket, even with a valid lease + proof bound to it', async () => {
    const epochBefore = ((await admin('GET', '/v1/admin/epoch')).body as any).current_epoch;
    for (const [method, path, body] of ADMIN_ROUTES) {
      const res = await agent.call(method, path, body);
      assert.ok(res.status === 404 || res.status === 401, `${method} ${path} on the client socket answered ${res.status} ${res.text}`);
      // And with no credentials at all: the lease middleware guards everything after the public routes.
      const bare = await g.client.send(method, path, {}, body === undefined ? undefined : JSON.stringify(body));
      assert.deepEqual([bare.status, bare.body], [401, { error: 'missing_auth_header' }], `${method} ${path}`);
    }
    assert.equal(((await admin('GET', '/v1/admin/epoch')).body as any).current_epoch, epochBefore, 'epoch untouched');
    const st = (await admin('GET', '/v1/admin/status')).body as any;
    assert.equal(st.draining, false);
    const acl = (await admin('GET', '/v1/admin/policy')).body as any;
    assert.equal(JSON.stringify(acl).includes('mallory'), false, 'no ACL change');
    const domains = (await admin('GET', '/v1/admin/domains')).body as any;
    assert.equal(JSON.stringify(domains).includes('evil.example'), false, 'no learned domain');
  });

  test('regression: lease-guarded client routes without credentials -> 401 missing_auth_header (constant shape)', async () => {
    for (const [method, path] of [
      ['POST', '/v1/actions/echo/execute'], ['POST', '/v1/actions/echo/preflight'],
      ['GET', '/v1/approvals/apr_x/poll'], ['GET', '/v1/receipts/rcpt_x'], ['HEAD', '/v1/receipts/rcpt_x'],
    ] as const) {
      const res = await g.client.send(method, path, {}, method === 'POST' ? '{"message":"x"}' : undefined);
      assert.equal(res.status, 401, `${method} ${path}`);
      if (method !== 'HEAD') assert.deepEqual(res.body, { error: 'missing_auth_header' });
      assert.match(String(res.headers['www-authenticate']), /^DPoP /);
    }
  });

  test('attack: operator API key + operator proof presented as a lease on the client socket -> 401 invalid_lease', async () => {
    const path = '/v1/actions/echo/execute';
    const res = await g.client.send('POST', path, operatorHeaders(g.operator, 'POST', path), JSON.stringify({ message: 'x' }));
    assert.deepEqual([res.status, res.body], [401, { error: 'invalid_lease' }]);
  });

  test('attack: agent lease + proof presented as an operator credential on the admin socket -> 401 invalid_dpop', async () => {
    const k = newP256();
    const l = await getLease(g.client, k);
    for (const path of ['/v1/admin/revoke-all', '/v1/approvals']) {
      const method = path === '/v1/approvals' ? 'GET' : 'POST';
      const res = await g.admin.send(method, path, { authorization: `DPoP ${l.lease_jwt}`, dpop: proof({ key: k, htm: method, htu: BASE + path, token: l.lease_jwt }) });
      assert.deepEqual([res.status, res.body], [401, { error: 'invalid_dpop' }], path);
    }
  });

  test('attack: operator proof replayed (same jti) -> 401 replay_detected; proof for another admin path -> invalid_dpop', async () => {
    const h = operatorHeaders(g.operator, 'GET', '/v1/admin/epoch');
    assert.equal((await g.admin.send('GET', '/v1/admin/epoch', h)).status, 200);
    const again = await g.admin.send('GET', '/v1/admin/epoch', h);
    assert.deepEqual([again.status, again.body], [401, { error: 'replay_detected' }]);
    const moved = await g.admin.send('POST', '/v1/admin/revoke-all', operatorHeaders(g.operator, 'GET', '/v1/admin/epoch'));
    assert.deepEqual([moved.status, moved.body], [401, { error: 'invalid_dpop' }]);
  });

  test('attack: traversal / injection shaped receipt, approval and action ids -> 4xx with a contract code, never 5xx', async () => {
    const ids = ['..%2F..%2Fetc%2Fpasswd', "rcpt_'%20OR%201=1--", '%00', 'a'.repeat(600), '..', '%2e%2e'];
    for (const id of ids) {
      // Dot segments are normalised by the URL parser (the proof's htu then no longer matches: 401);
      // everything else reaches the route and must be a clean 404/400. Never 2xx, never 5xx.
      const client4xx = (r: { status: number; text: string }, what: string) =>
        assert.ok(r.status >= 400 && r.status < 500, `${what} ${id}: ${r.status} ${r.text}`);
      const r = await agent.call('GET', `/v1/receipts/${id}`);
      client4xx(r, 'receipt');
      if (!/\.|%2e/i.test(id)) assert.deepEqual(r.body, { error: 'receipt_not_found' });
      client4xx(await agent.call('GET', `/v1/approvals/${id}/poll`), 'poll');
      client4xx(await admin('GET', `/v1/approvals/${id}`), 'approval');
      const ap = await admin('POST', `/v1/approvals/${id}/approve`);
      client4xx(ap, 'approve');
      client4xx(await agent.call('POST', `/v1/actions/${id}/execute`, {}), 'execute');
    }
  });

  test('regression: admin bodies are validated (revoke: both fields, bad chars, wrong types; budgets: wrong types) -> 400', async () => {
    for (const body of [{ session_id: 'a', principal: 'b' }, { principal: 'a b' }, { principal: 'x\ny' }, { principal: 7 }, { session_id: '' }, {}, [], 'x']) {
      const r = await admin('POST', '/v1/admin/revoke', body);
      assert.equal(r.status, 400, `revoke ${JSON.stringify(body)}: ${r.text}`);
    }
    for (const body of [{ principal: 'agent', window_seconds: 'x' }, { principal: 'agent', window_seconds: 60, max_calls: -1 }, { principal: 'a\nb', window_seconds: 60, max_calls: 1 }]) {
      const r = await admin('PUT', '/v1/admin/budgets', body);
      assert.equal(r.status, 400, `budgets ${JSON.stringify(body)}: ${r.text}`);
    }
    for (const q of ['limit=abc', 'limit=0', 'limit=-1', 'decision=maybe', 'trace_id=a&trace_id=b', 'after=yesterday']) {
      const r = await admin('GET', `/v1/audit/events?${q}`);
      assert.equal(r.status, 400, `audit ${q}: ${r.text}`);
    }
    for (const q of ['status=bogus', 'limit=x', 'limit=0']) {
      const r = await admin('GET', `/v1/approvals?${q}`);
      assert.equal(r.status, 400, `approvals ${q}: ${r.text}`);
    }
  });

  test('attack: unauthenticated chunked lease request streams 64 MiB; the gate must answer 413 without buffering it all', async () => {
    const r = await streamChunked(g.config.client_socket, '/v1/leases', 64 << 20);
    assert.equal(r.status, 413);
    assert.deepEqual(r.body, { error: 'payload_too_large' });
    assert.ok(r.sentWhenAnswered <= 8 << 20, `the gate read ${r.sentWhenAnswered} bytes before answering (cap is 16 KiB)`);
    // Still healthy afterwards.
    assert.equal((await g.client.send('GET', '/healthz', {})).status, 200);
  });

  test('attack: chunked execute body past 1 MB -> 413 before the whole stream is read', async () => {
    const k = newP256();
    const l = await getLease(g.client, k);
    const path = '/v1/actions/echo/execute';
    const r = await streamChunked(g.config.client_socket, path, 64 << 20, { authorization: `DPoP ${l.lease_jwt}`, dpop: proof({ key: k, htm: 'POST', htu: BASE + path, token: l.lease_jwt }) });
    assert.equal(r.status, 413);
    assert.ok(r.sentWhenAnswered <= 8 << 20, `the gate read ${r.sentWhenAnswered} bytes before answering (cap is 1 MiB)`);
  });

  test('attack (admin, operators only): chunked 64 MiB body to a policy route is buffered before the 64 KiB cap', async () => {
    const path = '/v1/admin/domains';
    const r = await streamChunked(g.config.admin_socket, path, 64 << 20, operatorHeaders(g.operator, 'POST', path));
    assert.equal(r.status, 413);
    assert.ok(r.sentWhenAnswered <= 8 << 20, `read ${r.sentWhenAnswered} bytes before answering`);
  });

  test('regression: Idempotency-Key is bound to action + payload: same key, other payload -> 409; same payload -> stored answer', async () => {
    const key = `idem-${Date.now()}`;
    const first = await agent.call('POST', '/v1/actions/echo/execute', { message: 'one' }, { 'idempotency-key': key });
    assert.equal(first.status, 200, first.text);
    const replay = await agent.call('POST', '/v1/actions/echo/execute', { message: 'one' }, { 'idempotency-key': key });
    assert.equal(replay.status, 200);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.equal((replay.body as any).receipt_id, (first.body as any).receipt_id);
    const other = await agent.call('POST', '/v1/actions/echo/execute', { message: 'two' }, { 'idempotency-key': key });
    assert.deepEqual([other.status, other.body], [409, { error: 'idempotency_key_conflict' }]);
    const otherAction = await agent.call('POST', '/v1/actions/webhook_notify/execute', { message: 'one' }, { 'idempotency-key': key });
    assert.deepEqual([otherAction.status, otherAction.body], [409, { error: 'idempotency_key_conflict' }]);
    for (const bad of ['', 'a b', 'x'.repeat(256), 'é']) {
      const r = await agent.call('POST', '/v1/actions/echo/execute', { message: 'one' }, { 'idempotency-key': bad });
      assert.equal(r.status, 400, `key ${JSON.stringify(bad)}: ${r.status} ${r.text}`);
    }
  });

  test('regression: another principal cannot replay a stored idempotent response (keys are scoped by principal)', async () => {
    const db = new Database(':memory:');
    try {
      const store = createIdempotencyStore({ kind: 'sqlite', db });
      const fp = 'echo:sha256:00';
      const a = await store.begin('agent', 'k1', fp);
      assert.equal(a.state, 'new');
      await store.finish('agent', 'k1', fp, { status: 200, body: { secret_output: 'agent-only' } }, (a as { token: string }).token);
      const m = await store.begin('mallory', 'k1', fp);
      assert.equal(m.state, 'new', 'mallory gets her own key space, not agent\'s stored body');
      // Length-prefixed scope: ("ab", "c\n…") cannot collide with ("a", "bc\n…").
      const x = await store.begin('age', 'nt\nk1', fp).catch((e) => e);
      assert.ok(!(x && x.state === 'replay'));
    } finally { db.close(); }
  });

  test('attack: the Idempotency-Key store fails while recording the result of a call that already ran -> the agent must still get the 200 (not a retryable 5xx)', async () => {
    const path = join(g.dir, 'state.db');
    const side = new Database(path);
    try {
      side.exec("CREATE TRIGGER sec_review_fail_done BEFORE UPDATE ON idempotency_keys WHEN NEW.state = 'done' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
      const key = `idem-fail-${Date.now()}`;
      const r = await agent.call('POST', '/v1/actions/echo/execute', { message: 'ran-once' }, { 'idempotency-key': key });
      side.exec('DROP TRIGGER sec_review_fail_done');
      const events = (await admin('GET', '/v1/audit/events?action_id=echo&limit=1000')).body as any;
      const ran = events.events.filter((e: any) => e.type === 'execute' && e.decision === 'allow' && e.trace_id === (r.body as any)?.trace_id);
      assert.equal(r.status, 200, `the call ran (receipt written) but the agent got ${r.status} ${r.text}`);
      assert.equal(ran.length, 1, 'exactly one allow event for the call');
      // A retry must not run it again.
      const retry = await agent.call('POST', '/v1/actions/echo/execute', { message: 'ran-once' }, { 'idempotency-key': key });
      assert.notEqual(retry.status, 200, 'no second execution while the key is held');
    } finally {
      try { side.exec('DROP TRIGGER IF EXISTS sec_review_fail_done'); } catch { /* already dropped */ }
      side.close();
    }
  });

  test('regression: learn_domain outside the plan\'s hosts is refused before the claim; the approval stays pending', async () => {
    const held = await agent.execute('webhook_high', { url: `${up.url}/learn`, event: 'learn.test' }).catch((e) => e);
    assert.ok(held instanceof ApprovalRequired, String(held));
    for (const d of ['evil.example', '127.0.0.1', '*.example.com', 'EVIL.example%0a']) {
      const r = await admin('POST', `/v1/approvals/${held.approvalId}/approve?learn_domain=${d}`);
      assert.equal(r.status, 400, `${d}: ${r.text}`);
      assert.equal((r.body as any).error, 'invalid_domain');
    }
    assert.equal(hits('/learn'), 0);
    const show = await admin('GET', `/v1/approvals/${held.approvalId}`);
    assert.equal((show.body as any).state, 'pending');
    const deny = await admin('POST', `/v1/approvals/${held.approvalId}/deny`, { reason: 'test\u0000\u001b[31mred' });
    assert.equal(deny.status, 200);
    assert.equal((deny.body as any).deny_reason, 'test[31mred', 'control characters stripped');
  });

  test('regression: revoke the session while its call waits for approval -> approving does not execute it', async () => {
    const c = new PortcullisClient({ socketPath: g.config.client_socket });
    try {
      await c.connect();
      const held = await c.execute('webhook_high', { url: `${up.url}/held-session`, event: 'held.session' }).catch((e) => e);
      assert.ok(held instanceof ApprovalRequired, String(held));
      assert.equal((await admin('POST', '/v1/admin/revoke', { session_id: c.sessionId })).status, 200);
      const r = await admin('POST', `/v1/approvals/${held.approvalId}/approve`);
      assert.notEqual(r.status, 200, r.text);
      assert.equal(hits('/held-session'), 0, 'never reached the upstream');
    } finally { c.close(); }
  });

  // Last in this suite: it revokes every lease of `agent` issued so far.
  test('attack: revoke the principal while its call waits for approval; approving must not execute it', async () => {
    const held = await agent.execute('webhook_high', { url: `${up.url}/held-principal`, event: 'held.principal' }).catch((e) => e);
    assert.ok(held instanceof ApprovalRequired, String(held));
    const rv = await admin('POST', '/v1/admin/revoke', { principal: 'agent' });
    assert.equal(rv.status, 200, rv.text);
    const r = await admin('POST', `/v1/approvals/${held.approvalId}/approve`);
    assert.equal(hits('/held-principal'), 0, `a revoked principal's held call executed on approval (${r.status} ${r.text})`);
    assert.notEqual(r.status, 200);
    assert.equal((r.body as any).error, 'approval_conflict');
    // The agent's own lease is dead too.
    const again = await agent.call('GET', `/v1/approvals/${held.approvalId}/poll`);
    assert.deepEqual([again.status, again.body], [401, { error: 'invalid_lease' }]);
  });
});

// ---------------------------------------------------------------------------------------------
// B. A shifted clock: revocation marks vs approval lifetimes.
// ---------------------------------------------------------------------------------------------
describe('security review B: revocation marks outlive held approvals (fake clock)', () => {
  let g: TestGate;
  let up: Upstream;
  let manifests: string;
  let offset = 0;
  const clock: Clock = { now: () => Date.now() + offset };

  before(async () => {
    up = await startUpstream();
    manifests = makeManifestsDir();
    g = await startTestGate({ clock, overrides: { manifests_dir: manifests, unsafe_egress_allow: ['127.0.0.0/8'], rate_limits: { admin_write_per_second: 1000 } } });
    const path = '/v1/admin/policy/grant';
    const r = await g.admin.send('POST', path, operatorHeaders(g.operator, 'POST', path), JSON.stringify({ principal: 'agent', actions: ['webhook_high'] }));
    assert.equal(r.status, 200, r.text);
  });
  after(async () => {
    await g?.stop();
    await up?.close();
    if (manifests) rmSync(dirname(manifests), { recursive: true, force: true });
  });

  test('attack: session revoked, then its held approval approved after the revocation mark expired (lease TTL + 60 s < approval TTL) -> must not execute', async () => {
    const c = new PortcullisClient({ socketPath: g.config.client_socket });
    try {
      await c.connect();
      const held = await c.execute('webhook_high', { url: `${up.url}/late`, event: 'late.approve' }).catch((e) => e);
      assert.ok(held instanceof ApprovalRequired, String(held));
      const rp = '/v1/admin/revoke';
      assert.equal((await g.admin.send('POST', rp, operatorHeaders(g.operator, 'POST', rp), JSON.stringify({ session_id: c.sessionId }))).status, 200);
      // 400 s later: the lease (300 s) is long gone, the approval (3600 s) is still pending.
      offset += 400_000;
      const now = Math.floor(clock.now() / 1000);
      const sp = `/v1/approvals/${held.approvalId}`;
      const show = await g.admin.send('GET', sp, operatorHeadersAt(g.operator, 'GET', sp, now));
      assert.equal((show.body as any).state, 'pending', show.text);
      const ap = `/v1/approvals/${held.approvalId}/approve`;
      const r = await g.admin.send('POST', ap, operatorHeadersAt(g.operator, 'POST', ap, now));
      assert.equal(up.requests.filter((x) => x.path === '/late').length, 0, `revoked session's call executed after the mark expired (${r.status} ${r.text})`);
      assert.notEqual(r.status, 200);
    } finally { c.close(); }
  });

  test('availability: a renewed budgeted lease loses its session counter when the first lease\'s TTL passes -> 403 budget_session_not_found', async () => {
    const k = newP256();
    const t = () => Math.floor(clock.now() / 1000);
    const issued = await g.client.send('POST', '/v1/leases', {}, JSON.stringify({ scopes: ['tools:call'], dpop_jwk: k.jwk, budgets: { max_calls: 5 } }));
    assert.equal(issued.status, 200, issued.text);
    const first = (issued.body as any).lease_jwt as string;
    offset += 250_000;
    const renewed = await g.client.send('POST', '/v1/leases', { authorization: `DPoP ${first}`, dpop: proof({ key: k, htm: 'POST', htu: BASE + '/v1/leases', token: first, iat: t() }) }, JSON.stringify({ scopes: ['tools:call'], dpop_jwk: k.jwk }));
    assert.equal(renewed.status, 200, renewed.text);
    const second = (renewed.body as any).lease_jwt as string;
    offset += 100_000;
    const ep = '/v1/actions/echo/execute';
    const r = await g.client.send('POST', ep, { authorization: `DPoP ${second}`, dpop: proof({ key: k, htm: 'POST', htu: BASE + ep, token: second, iat: t() }) }, JSON.stringify({ message: 'still budgeted' }));
    assert.equal(r.status, 200, r.text);
  });
});

// ---------------------------------------------------------------------------------------------
// Core gate with one lease-authenticated test route (no pipeline): C and D.
// ---------------------------------------------------------------------------------------------
const WHOAMI = '/v1/test/whoami';

function testExtension(events: AuditEventInput[]) {
  return async (): Promise<Extension> => {
    const app = new Hono<GateEnv>();
    app.post(WHOAMI, (c) => c.json({ principal: c.get('lease').principal, session_id: c.get('lease').sessionId, epoch: c.get('lease').epoch }));
    return {
      audit: { append: async (e) => { events.push(e); } },
      modules: [{ socket: 'client', auth: 'lease', app }],
      health: async () => ({ opa: true, ledger: true, approval_store: true, egress_proxy: null, actions_registered: 0 }),
      close: async () => {},
    };
  };
}

const whoami = (g: { client: ReturnType<typeof unixTransport> }, key: TestKey, lease: string, dpop?: string) =>
  g.client.send('POST', WHOAMI, { authorization: `DPoP ${lease}`, dpop: dpop ?? proof({ key, htm: 'POST', htu: BASE + WHOAMI, token: lease }) });

describe('security review C: the revocation epoch survives a Redis data loss', { skip: serviceSkipReason('redis') }, () => {
  let redis: RedisServer;
  let g: TestGate;
  const events: AuditEventInput[] = [];

  before(async () => {
    redis = await startRedis();
    g = await startTestGate({ mode: 'production', redisUrl: redis.url, databaseUrl: 'postgresql://unused@/x', extend: testExtension(events) });
  });
  after(async () => {
    await g?.stop();
    await redis?.stop();
  });

  test('attack: kill switch, then Redis restarts empty (FLUSHALL) -> a lease from before the kill switch must stay dead', async () => {
    const k = newP256();
    const l = await getLease(g.client, k);
    assert.equal((await whoami(g, k, l.lease_jwt)).status, 200);
    const ra = '/v1/admin/revoke-all';
    const r = await g.admin.send('POST', ra, operatorHeaders(g.operator, 'POST', ra));
    assert.equal(r.status, 200, r.text);
    assert.deepEqual((await whoami(g, k, l.lease_jwt)).body, { error: 'invalid_lease' });
    const side = createRedis(redis.url);
    try {
      assert.ok(await waitReady(side));
      await side.flushall();
    } finally { side.disconnect(); }
    const after = await whoami(g, k, l.lease_jwt);
    assert.deepEqual([after.status, after.body], [401, { error: 'invalid_lease' }], 'the old epoch came back with the lost Redis data');
    // And the epoch reported to operators did not move backwards.
    const ep = '/v1/admin/epoch';
    assert.ok(((await g.admin.send('GET', ep, operatorHeaders(g.operator, 'GET', ep))).body as any).current_epoch >= 1);
    // A fresh lease works at the restored epoch.
    const k2 = newP256();
    const l2 = await getLease(g.client, k2);
    assert.equal((await whoami(g, k2, l2.lease_jwt)).status, 200);
  });
});

describe('security review D: logs and restarts (core gate)', () => {
  const events: AuditEventInput[] = [];

  test('dev TCP listener (unsafe_expose_http): admin routes are never reachable without operator auth, and are reachable with it', async () => {
    const g = await startTestGate({ extend: testExtension(events), overrides: { unsafe_expose_http: true, http_listen: '127.0.0.1:0' } });
    try {
      const port = (g.gate.listeners[2]!.server.address() as { port: number }).port;
      const tcp = (method: string, path: string, headers: Record<string, string>) => new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, method, path, headers: { host: 'localhost', ...headers } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
        });
        req.on('error', reject);
        req.end();
      });
      const bare = await tcp('POST', '/v1/admin/revoke-all', {});
      assert.equal(bare.status, 401, 'never without operator auth');
      const ok = await tcp('GET', '/v1/admin/epoch', operatorHeaders(g.operator, 'GET', '/v1/admin/epoch'));
      assert.deepEqual([ok.status, typeof ok.body?.current_epoch], [200, 'number']);
    } finally { await g.stop(); }
  });

  test('attack: during drain, an unauthenticated client forges log lines through a percent-encoded newline in the path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-sec-log-'));
    const op = newOperatorCredential('alice');
    const lines: string[] = [];
    let gate: RunningGate | undefined;
    try {
      const config = resolveConfig({ mode: 'embedded', state_dir: dir, operators: [operatorConfigEntry(op)], identity: { provider: 'none', principal: 'agent' } }, { configDir: dir });
      const runtime = await createRuntime(config, { extend: testExtension(events) });
      gate = await runGate(runtime, { log: (l) => lines.push(l) });
      const adm = unixTransport(config.admin_socket);
      try {
        assert.equal((await adm.send('POST', '/v1/admin/drain', operatorHeaders(op, 'POST', '/v1/admin/drain'))).status, 200);
      } finally { adm.close(); }
      const forged = '/x%0D%0Aerror%20trace_id=trc_forged%20code=internal_error%20path=/v1/admin/revoke-all%20operator=alice';
      const r = await rawRequest(config.client_socket, 'GET', forged);
      assert.deepEqual([r.status, r.body], [503, { error: 'draining' }], '5xx body carries the code only');
      const logged = lines.filter((l) => l.includes('code=draining'));
      assert.ok(logged.length >= 1, 'the 503 is logged');
      for (const l of lines) assert.equal(/[\r\n]/.test(l), false, `a log line carries a raw line break: ${JSON.stringify(l)}`);
    } finally {
      await gate?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('attack: a proof used just before a crash whose jti write was lost (power loss) is replayed after the restart -> refused by the boot fence', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-sec-fence-'));
    let g: TestGate | undefined;
    try {
      g = await startTestGate({ dir, extend: testExtension(events) });
      const k = newP256();
      const l = await getLease(g.client, k);
      const captured = proof({ key: k, htm: 'POST', htu: BASE + WHOAMI, token: l.lease_jwt });
      assert.equal((await whoami(g, k, l.lease_jwt, captured)).status, 200);
      assert.equal((await whoami(g, k, l.lease_jwt, captured)).status, 401, 'replay refused while the jti is remembered');
      await g.stop({ keepDir: true });
      g = undefined;
      // Power loss: the un-synced replay rows are gone (synchronous=NORMAL, no fsync per jti).
      const db = new Database(join(dir, 'state.db'));
      db.exec('DELETE FROM replay');
      db.close();
      await sleep(2100);
      g = await startTestGate({ dir, extend: testExtension(events) });
      const res = await whoami(g, k, l.lease_jwt, captured);
      assert.deepEqual([res.status, res.body], [401, { error: 'invalid_dpop' }], 'a proof minted before start-up was accepted again');
      // A fresh proof with the same lease works.
      assert.equal((await whoami(g, k, l.lease_jwt)).status, 200);
    } finally {
      await g?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// E. Stage level.
// ---------------------------------------------------------------------------------------------
describe('security review E: approval hold vs the kill switch', () => {
  test('attack: revoke-all lands between lease auth and the hold (after the hook listed pending approvals) -> the new approval must not stay pending', async () => {
    let epoch = 0;
    const denied: string[] = [];
    const audit: AuditEventInput[] = [];
    const deps = {
      audit: { append: async (e: AuditEventInput) => { audit.push(e); } },
      approvals: {
        create: async () => {
          // The operator's revoke-all runs now: epoch advanced, its hook already denied the old pending list.
          epoch = 1;
          return { approval_id: 'apr_race', plan_hash: 'sha256:00' };
        },
        deny: async (id: string) => { denied.push(id); return { denied: true, record: {} }; },
      },
      revocation: {
        currentEpoch: async () => epoch,
        state: async () => ({ epoch, sessionRevoked: false, principalRevokedBefore: 0 }),
      },
      budgets: { refund: async () => true },
      approvalTtlSeconds: 3600,
    } as unknown as PipelineDeps;
    const ctx = {
      mode: 'execute', traceId: 'trc_race', actionId: 'webhook_high', startedAt: Date.now(), body: {},
      lease: { principal: 'agent', sessionId: 'ses_race', scopes: [], budgets: undefined, epoch: 0, jkt: 'A'.repeat(43) },
      action: { manifest: { action_id: 'webhook_high', version: '1.0.0', provider_module_digest: 'sha256:11', secrets: [], egress: {}, verifier: { kind: 'none' } } },
      decision: { verdict: 'require_approval', decision: { risk_level: 'high', approval_reasons: ['risk'], policy_version: 'v1' } },
      canonical: '{}', requestHash: 'sha256:22', targets: [],
    } as unknown as ExecContext;
    const out = await runStages([approvalHold], ctx, deps);
    assert.notEqual(out.status, 202, 'a hold from a revoked epoch was answered 202 and left pending');
    assert.deepEqual(denied, ['apr_race'], 'the racing approval is denied');
    assert.equal(audit.filter((e) => e.type === 'execute').length, 1, 'exactly one terminal execute event');
  });

  test('attack: the ledger refuses the hold\'s audit event -> the agent gets a 5xx and retries; the unrecorded approval must not stay pending (two approvals, two executions)', async () => {
    const denied: string[] = [];
    const deps = {
      audit: { append: async () => { throw new Error('ledger down'); } },
      approvals: {
        create: async () => ({ approval_id: 'apr_unrecorded', plan_hash: 'sha256:00' }),
        deny: async (id: string) => { denied.push(id); return { denied: true, record: {} }; },
      },
      revocation: { currentEpoch: async () => 0 },
      budgets: { refund: async () => true },
      approvalTtlSeconds: 3600,
    } as unknown as PipelineDeps;
    const ctx = {
      mode: 'execute', traceId: 'trc_unrecorded', actionId: 'webhook_high', startedAt: Date.now(), body: {},
      lease: { principal: 'agent', sessionId: 'ses_x', scopes: [], budgets: undefined, epoch: 0, jkt: 'A'.repeat(43) },
      action: { manifest: { action_id: 'webhook_high', version: '1.0.0', provider_module_digest: 'sha256:11', secrets: [], egress: {}, verifier: { kind: 'none' } } },
      decision: { verdict: 'require_approval', decision: { risk_level: 'high', approval_reasons: ['risk'], policy_version: 'v1' } },
      canonical: '{}', requestHash: 'sha256:22', targets: [],
    } as unknown as ExecContext;
    const out = await runStages([approvalHold], ctx, deps);
    assert.ok(out.status >= 500, `status ${out.status}`);
    assert.deepEqual(out.body, { error: (out.body as { error: string }).error }, '5xx body carries the code only');
    assert.deepEqual(denied, ['apr_unrecorded'], 'the approval the ledger never saw is withdrawn');
  });
});
