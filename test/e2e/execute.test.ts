// The execute pipeline end to end over the real sockets, in both backends: allow + offline
// receipt verification, policy deny/grant/revoke without restart, approvals (execute once,
// idempotent second approve, deny never executes, poll isolation), credential injection and
// scrubbing, idempotency keys, lease budgets, preflight, audit verification and metrics.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { PortcullisClient, PortcullisError, ApprovalRequired } from '../../src/client/index.ts';
import { verifyReceipt } from '../../src/ledger/receipts.ts';
import { startTestGate, operatorHeaders, type TestGate } from '../helpers/gate.ts';
import { startRedis, startPostgres, serviceSkipReason, type RedisServer, type PostgresServer } from '../helpers/services.ts';
import { makeManifestsDir, startUpstream, type Upstream } from './fixtures.ts';

const SECRET = 'sk_live_Zq8v3TopSecretValue_91x';

function suite(backend: 'embedded' | 'production') {
  const skip = backend === 'production' ? serviceSkipReason('redis') ?? serviceSkipReason('postgres') : undefined;
  describe(`execute pipeline end to end (${backend})`, { skip }, () => {
    let redis: RedisServer | undefined;
    let pg: PostgresServer | undefined;
    let g: TestGate;
    let up: Upstream;
    let manifests: string;
    let agent: PortcullisClient;
    const admin = async (method: string, path: string, body?: unknown) => {
      const res = await g.admin.send(method, path, operatorHeaders(g.operator, method, path.split('?')[0]!), body === undefined ? undefined : JSON.stringify(body));
      return res;
    };

    before(async () => {
      if (backend === 'production') {
        redis = await startRedis();
        pg = await startPostgres();
      }
      up = await startUpstream();
      manifests = makeManifestsDir();
      g = await startTestGate({
        mode: backend,
        redisUrl: redis?.url,
        databaseUrl: pg?.url,
        overrides: { manifests_dir: manifests, unsafe_egress_allow: ['127.0.0.0/8'] },
      });
      agent = new PortcullisClient({ socketPath: g.config.client_socket });
      await agent.connect();
    });
    after(async () => {
      agent?.close();
      await g?.stop();
      await up?.close();
      await redis?.stop();
      await pg?.stop();
      if (manifests) rmSync(dirname(manifests), { recursive: true, force: true });
    });

    test('allowed echo -> 200 with a receipt that verifies offline from /v1/receipt-keys alone', async () => {
      if (backend === 'production') assert.equal((await admin('POST', '/v1/admin/policy/grant', { principal: 'agent', actions: ['echo'] })).status, 200);
      const r = await agent.execute<any>('echo', { message: 'hello' });
      assert.match(r.trace_id, /^trc_/);
      assert.equal(r.action_id, 'echo');
      assert.match(r.grant_id, /^grant_/);
      assert.match(r.receipt_id, /^rcpt_/);
      assert.equal(r.verification_outcome, 'unverifiable_declared');
      assert.deepEqual(r.verification, { outcome: 'unverifiable_declared', is_fully_successful: true });
      assert.equal(r.runtime.exit_code, 0);
      assert.ok(r.runtime.fuel_consumed > 0);
      const receipt = await agent.receipt(r.receipt_id) as any;
      assert.equal(receipt.signature_status, 'verified');
      const keys = (await admin('GET', '/v1/receipt-keys')).body as any;
      const { signature_status: _s, ...stored } = receipt;
      assert.equal(verifyReceipt(stored, keys), 'verified');
      assert.equal(verifyReceipt({ ...stored, principal: 'mallory' }, keys), 'signature_invalid');
      assert.equal(receipt.request_hash.startsWith('sha256:'), true);
      // The same receipt on the admin socket.
      const viaAdmin = await admin('GET', `/v1/receipts/${r.receipt_id}`);
      assert.equal((viaAdmin.body as any).signature_status, 'verified');
    });

    test('schema violation -> 422, unknown action -> 404, both audited', async () => {
      await assert.rejects(agent.execute('echo', { nope: 1 }), (e: any) => e instanceof PortcullisError && e.status === 422 && e.code === 'schema_violation');
      await assert.rejects(agent.execute('no_such_action', {}), (e: any) => e.status === 404 && e.code === 'action_not_found');
    });

    test('ungranted -> 403 policy_denied with deny_reason; grant -> passes; revoke -> denied again (no restart)', async () => {
      const input = { url: `${up.url}/hook`, event: 'deploy.done', payload: { n: 1 } };
      const denied = await agent.execute('webhook_notify', input).catch((e) => e);
      assert.ok(denied instanceof PortcullisError);
      assert.equal(denied.status, 403);
      assert.equal(denied.code, 'policy_denied');
      assert.equal(typeof (denied.body as any).deny_reason, 'string');
      const grant = await admin('POST', '/v1/admin/policy/grant', { principal: 'agent', actions: ['webhook_notify', 'webhook_high'] });
      assert.equal(grant.status, 200, grant.text);
      const before = up.requests.length;
      const ok = await agent.execute<any>('webhook_notify', input);
      assert.equal(ok.verification_outcome, 'verified');
      assert.equal(up.requests.length, before + 1);
      const revoke = await admin('POST', '/v1/admin/policy/revoke', { principal: 'agent', actions: ['webhook_notify'] });
      assert.equal(revoke.status, 200);
      await assert.rejects(agent.execute('webhook_notify', input), (e: any) => e.code === 'policy_denied');
      assert.equal(up.requests.length, before + 1, 'denied call never reached the upstream');
      await admin('POST', '/v1/admin/policy/grant', { principal: 'agent', actions: ['webhook_notify'] });
    });

    test('credential injected upstream; never in the agent response, receipt or ledger in any encoding', async () => {
      assert.equal((await admin('PUT', '/v1/admin/secrets/webhook_token', { value: SECRET })).status, 200);
      const n = up.requests.length;
      const r = await agent.execute<any>('webhook_notify', { url: `${up.url}/hook`, event: 'secret.test' });
      assert.equal(up.requests.length, n + 1);
      assert.equal(up.requests[n]!.headers.authorization, `Bearer ${SECRET}`);
      const forms = [SECRET, Buffer.from(SECRET).toString('base64'), encodeURIComponent(SECRET), Buffer.from(SECRET).toString('hex')];
      const receipt = JSON.stringify(await agent.receipt(r.receipt_id));
      const events = (await admin('GET', '/v1/audit/events?limit=1000')).text;
      const bundle = (await admin('GET', '/v1/admin/audit/export')).text;
      for (const text of [JSON.stringify(r), receipt, events, bundle]) {
        for (const f of forms) assert.equal(text.includes(f), false, `secret form leaked: ${f.slice(0, 6)}…`);
      }
      const list = await admin('GET', '/v1/admin/secrets');
      assert.equal(list.text.includes(SECRET), false);
    });

    test('high risk -> 202; poll own/other session; approve executes once; second approve is idempotent; deny never executes', async () => {
      const input = { url: `${up.url}/high`, event: 'high.risk' };
      const held = await agent.execute('webhook_high', input).catch((e) => e);
      assert.ok(held instanceof ApprovalRequired, String(held));
      const id = held.approvalId;
      assert.deepEqual(await agent.approvalStatus(id), { approval_id: id, state: 'pending' });
      const other = new PortcullisClient({ socketPath: g.config.client_socket });
      try {
        await assert.rejects(other.approvalStatus(id), (e: any) => e.status === 403);
      } finally { other.close(); }
      const show = await admin('GET', `/v1/approvals/${id}`);
      assert.equal(show.status, 200);
      assert.equal((show.body as any).plan_hash?.startsWith('sha256:') ?? true, true);
      const n = up.requests.filter((r) => r.path === '/high').length;
      const [a1, a2] = await Promise.all([admin('POST', `/v1/approvals/${id}/approve`), admin('POST', `/v1/approvals/${id}/approve`)]);
      const statuses = [a1.status, a2.status].sort();
      assert.ok(statuses[0] === 200, `${a1.text} ${a2.text}`);
      assert.equal(up.requests.filter((r) => r.path === '/high').length, n + 1, 'executed exactly once');
      const again = await admin('POST', `/v1/approvals/${id}/approve`);
      assert.equal(again.status, 200);
      assert.equal((again.body as any).receipt_id, ((a1.status === 200 ? a1 : a2).body as any).receipt_id);
      assert.equal(up.requests.filter((r) => r.path === '/high').length, n + 1);
      assert.equal((again.body as any).approval.approved_by, 'alice');
      assert.equal((await agent.approvalStatus(id)).state, 'approved');
      // Deny: never executes.
      const held2 = await agent.execute('webhook_high', { url: `${up.url}/denied`, event: 'high.risk' }).catch((e) => e);
      assert.ok(held2 instanceof ApprovalRequired);
      const d = await admin('POST', `/v1/approvals/${held2.approvalId}/deny`, { reason: 'not today' });
      assert.deepEqual({ ...(d.body as any), trace_id: undefined }, { decision: 'deny', trace_id: undefined, action_id: 'webhook_high', approval_id: held2.approvalId, denied_by: 'alice', deny_reason: 'not today' });
      const late = await admin('POST', `/v1/approvals/${held2.approvalId}/approve`);
      assert.notEqual(late.status, 200);
      assert.equal(up.requests.filter((r) => r.path === '/denied').length, 0);
      assert.equal((await agent.approvalStatus(held2.approvalId)).state, 'denied');
    });

    test('allowlisted high-risk action skips the hold but still obeys the ACL', async () => {
      assert.equal((await admin('POST', '/v1/admin/policy/allowlist', { action_id: 'webhook_high', agent_id: 'agent' })).status, 200);
      const r = await agent.execute<any>('webhook_high', { url: `${up.url}/allowlisted`, event: 'x' });
      assert.equal(r.verification_outcome, 'verified');
      await admin('POST', '/v1/admin/policy/revoke', { principal: 'agent', actions: ['webhook_high'] });
      await assert.rejects(agent.execute('webhook_high', { url: `${up.url}/allowlisted`, event: 'x' }), (e: any) => e.code === 'policy_denied');
      await admin('DELETE', '/v1/admin/policy/allowlist', { action_id: 'webhook_high', agent_id: 'agent' });
    });

    test('idempotency key: same payload replays the outcome, other payload conflicts', async () => {
      const a = await agent.execute<any>('echo', { message: 'once' }, { idempotencyKey: 'k-123' });
      const b = await agent.execute<any>('echo', { message: 'once' }, { idempotencyKey: 'k-123' });
      assert.equal(a.receipt_id, b.receipt_id);
      await assert.rejects(agent.execute('echo', { message: 'other' }, { idempotencyKey: 'k-123' }), (e: any) => e.status === 409);
    });

    test('lease budget max_calls 3: three pass, the fourth is budget_exhausted', async () => {
      const c = new PortcullisClient({ socketPath: g.config.client_socket, budgets: { max_calls: 3 } });
      try {
        for (let i = 0; i < 3; i++) await c.execute('echo', { message: `b${i}` });
        await assert.rejects(c.execute('echo', { message: 'b4' }), (e: any) => e.status === 403 && e.code === 'budget_exhausted');
      } finally { c.close(); }
    });

    test('preflight decides without executing, debiting or holding', async () => {
      const p = await agent.preflight('webhook_high', { url: `${up.url}/pre`, event: 'x' }) as any;
      assert.ok(['deny', 'require_approval', 'allow'].includes(p.decision));
      assert.match(p.policy_hash, /^sha256:/);
      assert.ok(Array.isArray(p.explain.matched_rules));
      const e = await agent.preflight('echo', { message: 'x' }) as any;
      assert.equal(e.decision, 'allow');
      assert.equal(up.requests.filter((r) => r.path === '/pre').length, 0);
    });

    test('receipt key rotation: new receipts use the new kid, old receipts still verify from /v1/receipt-keys', async () => {
      const before = await agent.execute<any>('echo', { message: 'before rotation' });
      const oldKid = (await agent.receipt(before.receipt_id) as any).signing_key_id;
      const rot = await admin('POST', '/v1/admin/keys/rotate');
      assert.equal(rot.status, 200, rot.text);
      assert.equal((rot.body as any).previous_kid, oldKid);
      const after = await agent.execute<any>('echo', { message: 'after rotation' });
      const newReceipt = await agent.receipt(after.receipt_id) as any;
      assert.notEqual(newReceipt.signing_key_id, oldKid);
      const oldReceipt = await agent.receipt(before.receipt_id) as any;
      assert.equal(oldReceipt.signature_status, 'verified');
      const keys = (await admin('GET', '/v1/receipt-keys')).body as any;
      assert.ok(keys.keys.some((k: any) => k.kid === oldKid) && keys.keys.some((k: any) => k.kid === newReceipt.signing_key_id));
      const { signature_status: _a, ...o } = oldReceipt;
      assert.equal(verifyReceipt(o, keys), 'verified');
    });

    test('every egress use of the unsafe local range is audited', async () => {
      const ev = await admin('GET', '/v1/audit/events?limit=1000');
      const notes = (ev.body as any).events.filter((e: any) => e.type === 'egress_unsafe_range');
      assert.ok(notes.length >= 3, `unsafe-range notes: ${notes.length}`);
      assert.ok(notes.every((e: any) => e.trace_id && e.action_id));
    });

    test('audit chain verifies, events filter, metrics expose counters, status reports', async () => {
      const v = await admin('GET', '/v1/audit/verify');
      assert.equal((v.body as any).intact, true, v.text);
      assert.ok((v.body as any).events_checked > 5);
      const ev = await admin('GET', '/v1/audit/events?action_id=echo&decision=allow&limit=2');
      assert.equal((ev.body as any).events.length, 2);
      const denies = await admin('GET', '/v1/audit/events?decision=deny&limit=1000');
      assert.ok((denies.body as any).events.some((e: any) => e.reason_code === 'policy_denied'));
      const m = await admin('GET', '/metrics');
      assert.equal(m.status, 200);
      assert.match(String(m.headers['content-type']), /openmetrics/);
      assert.match(m.text, /portcullis_action_calls_total\{action_id="echo",outcome="allow"\}/);
      const st = await admin('GET', '/v1/admin/status');
      assert.equal((st.body as any).status, 'ok');
      assert.equal((st.body as any).unresolved_intents, 0);
      if (backend === 'embedded') {
        // Both SQLite files: their WAL, checkpointer thread and last checkpoint, healthy.
        const wal = (st.body as { wal: Record<string, { checkpointer_running: boolean; problem: string | null; wal_bytes: number }> }).wal;
        assert.deepEqual(Object.keys(wal).sort(), ['ledger', 'state'], st.text);
        for (const db of ['ledger', 'state']) {
          const w = wal[db]!;
          assert.equal(w.checkpointer_running, true, st.text);
          assert.equal(w.problem, null, st.text);
          assert.ok(Number.isInteger(w.wal_bytes) && w.wal_bytes >= 0, st.text);
          assert.match(m.text, new RegExp(`portcullis_sqlite_wal_checkpointer_up\\{db="${db}"\\} 1`));
          assert.match(m.text, new RegExp(`portcullis_sqlite_wal_bytes\\{db="${db}"\\} \\d+`));
          assert.match(m.text, new RegExp(`portcullis_sqlite_wal_frames_pending\\{db="${db}"\\} \\d+`));
          assert.match(m.text, new RegExp(`portcullis_sqlite_wal_checkpoint_age_seconds\\{db="${db}"\\} [\\d.]+`));
        }
      } else {
        assert.equal((st.body as { wal?: unknown }).wal, undefined);
        assert.doesNotMatch(m.text, /portcullis_sqlite_wal_bytes\{/);
      }
    });
  });
}

suite('embedded');
suite('production');
