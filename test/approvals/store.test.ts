// Approval store on SQLite and PostgreSQL, one table of cases: plan immutability and hash, atomic
// claim/deny across two store instances, completion with claim tokens, expiry and reaping, polling
// by session, listing, metrics, tamper detection and fail-closed storage errors.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { GateError, type GateErrorCode } from '../../src/errors.ts';
import {
  APPROVALS_TABLE, KyselyApprovalStore, migrateApprovals, verifyPlanHash, type ApprovalPlanInput,
} from '../../src/approvals/index.ts';
import { BACKENDS, ManualClock, planInput, type ApprovalBackend } from './backends.ts';

const isCode = (code: GateErrorCode) => (e: unknown) => e instanceof GateError && e.code === code;
const UUID7 = /^apr_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

for (const backend of BACKENDS) {
  describe(`${backend.name} approval store`, { skip: backend.skip }, () => {
    let b: ApprovalBackend;
    let clock: ManualClock;
    let store: KyselyApprovalStore;
    let other: KyselyApprovalStore;
    before(async () => {
      b = await backend.make();
      clock = new ManualClock();
      store = await b.open(clock, { claimTimeoutSeconds: 600 });
      other = await b.open(clock, { claimTimeoutSeconds: 600 });
    });
    after(async () => { await b?.close(); });

    test('migrateApprovals is idempotent, also when run concurrently', async () => {
      const k1 = await b.db();
      const k2 = await b.db();
      await Promise.all([migrateApprovals(k1), migrateApprovals(k2), migrateApprovals(k1)]);
    });

    test('create: pending record, apr_<uuidv7> id, plan hash verifies, get returns the same plan', async () => {
      const input = planInput();
      const r = await store.create(input, 600);
      assert.match(r.approval_id, UUID7);
      assert.equal(r.state, 'pending');
      assert.match(r.plan_hash, /^sha256:[0-9a-f]{64}$/);
      assert.equal(verifyPlanHash(r), true);
      assert.equal(r.plan.expires_at, new Date(clock.now() + 600_000).toISOString());
      const got = await other.get(r.approval_id);
      assert.deepEqual(got, r);
      assert.deepEqual(got.plan.request, input.request);
      assert.deepEqual(got.plan.secret_names, ['example_token']);
    });

    test('the stored plan is a copy: later changes to the caller\'s objects do not reach it', async () => {
      const input = planInput();
      const r = await store.create(input, 600);
      (input.request as { url: string }).url = 'https://evil.example/';
      input.targets.push('https://evil.example/');
      const got = await store.get(r.approval_id);
      assert.equal((got.plan.request as { url: string }).url, 'https://api.example.com/items');
      assert.deepEqual(got.plan.targets, ['https://api.example.com/items']);
      assert.equal(verifyPlanHash(got), true);
    });

    const badPlans: [string, Partial<Record<keyof ApprovalPlanInput, unknown>> & Record<string, unknown>][] = [
      ['missing trace_id', { trace_id: '' }],
      ['unknown risk level', { risk_level: 'extreme' }],
      ['secret names not strings', { secret_names: [{ value: 'hunter2' }] }],
      ['request not JSON (NaN)', { request: { n: Number.NaN } }],
      ['request missing', { request: undefined }],
      ['unknown field (e.g. a secret value smuggled in)', { secret_values: ['hunter2'] }],
    ];
    for (const [name, over] of badPlans) {
      test(`create rejects a malformed plan (TypeError): ${name}`, async () => {
        await assert.rejects(store.create(planInput(over as Partial<ApprovalPlanInput>), 600), TypeError);
      });
    }

    test('race: 20 concurrent claims through two store instances -> exactly one winner', async () => {
      const r = await store.create(planInput(), 600);
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? other : store).claim(r.approval_id, `op${i}`)));
      const winners = results.filter((x) => x.won);
      assert.equal(winners.length, 1);
      for (const l of results.filter((x) => !x.won)) assert.equal(l.won === false && l.current?.state, 'claimed');
      const rec = await store.get(r.approval_id);
      assert.equal(rec.state, 'claimed');
      assert.equal(winners[0]!.won && rec.claimed_by, winners[0]!.won && winners[0]!.claimed.record.claimed_by);
    });

    test('complete needs the claim token, stores the result once; release returns to pending', async () => {
      const r = await store.create(planInput(), 600);
      const c = await store.claim(r.approval_id, 'alice');
      assert.ok(c.won);
      assert.equal(await other.complete(r.approval_id, 'approved', { status: 200, body: { ok: 1 } }, 'wrong-token'), false);
      assert.equal(await other.release(r.approval_id, 'wrong-token'), false);
      assert.equal(await store.release(r.approval_id, c.claimed.claim_token), true);
      assert.equal((await store.get(r.approval_id)).state, 'pending');
      const c2 = await other.claim(r.approval_id, 'bob');
      assert.ok(c2.won);
      assert.equal(await store.complete(r.approval_id, 'approved', { status: 200, body: { ok: 1 } }, c.claimed.claim_token), false, 'stale token');
      assert.equal(await other.complete(r.approval_id, 'approved', { status: 200, body: { receipt_id: 'rcpt_1' } }, c2.claimed.claim_token), true);
      assert.equal(await other.complete(r.approval_id, 'failed', { status: 502, body: {} }, c2.claimed.claim_token), false, 'second completion');
      const done = await store.get(r.approval_id);
      assert.equal(done.state, 'approved');
      assert.equal(done.decided_by, 'bob');
      assert.deepEqual(done.result, { status: 200, body: { receipt_id: 'rcpt_1' } });
      const again = await store.claim(r.approval_id, 'carol');
      assert.equal(again.won, false);
    });

    test('deny keeps the record; a denied approval can never be claimed; deny loses to a claim', async () => {
      const r = await store.create(planInput(), 600);
      const d = await store.deny(r.approval_id, 'alice', 'not today');
      assert.ok(d.denied);
      assert.equal(d.record.state, 'denied');
      assert.equal(d.record.deny_reason, 'not today');
      assert.equal((await store.claim(r.approval_id, 'bob')).won, false);
      assert.equal((await store.get(r.approval_id)).state, 'denied');
      const r2 = await store.create(planInput(), 600);
      assert.ok((await store.claim(r2.approval_id, 'bob')).won);
      const d2 = await other.deny(r2.approval_id, 'alice', null);
      assert.equal(d2.denied, false);
      assert.equal(!d2.denied && d2.current?.state, 'claimed');
    });

    test('race: concurrent deny and claim -> exactly one of them wins', async () => {
      for (let i = 0; i < 5; i++) {
        const r = await store.create(planInput(), 600);
        const [c, d] = await Promise.all([store.claim(r.approval_id, 'a'), other.deny(r.approval_id, 'b', null)]);
        assert.equal(Number(c.won) + Number(d.denied), 1);
      }
    });

    test('expiry: an expired approval is 404, cannot be claimed or denied, and is reaped exactly once', async () => {
      const r = await store.create(planInput(), 60);
      clock.advance(60_000);
      try {
        await assert.rejects(store.get(r.approval_id), isCode('approval_not_found'));
        assert.equal((await store.find(r.approval_id))?.state, 'expired');
        assert.equal((await store.claim(r.approval_id, 'a')).won, false);
        assert.equal((await store.deny(r.approval_id, 'a', null)).denied, false);
        assert.ok(!(await store.list({ status: 'pending', limit: 200 })).some((x) => x.approval_id === r.approval_id));
        assert.ok((await store.list({ status: 'expired', limit: 200 })).some((x) => x.approval_id === r.approval_id));
        const [a, c] = await Promise.all([store.reapExpired(), other.reapExpired()]);
        const mine = [...a, ...c].filter((x) => x.approval_id === r.approval_id);
        assert.deepEqual(mine, [{ approval_id: r.approval_id, trace_id: r.plan.trace_id, action_id: 'http_post', principal: 'agent-ops', session_id: 'ses_A', state: 'expired', reason: 'expired' }]);
        assert.deepEqual((await store.reapExpired()).filter((x) => x.approval_id === r.approval_id), []);
        await assert.rejects(store.get(r.approval_id), isCode('approval_not_found'));
      } finally {
        clock.advance(-60_000);
      }
    });

    test('a claim held past the claim timeout is reaped to failed (never re-executed)', async () => {
      const r = await store.create(planInput(), 3600);
      const c = await store.claim(r.approval_id, 'alice');
      assert.ok(c.won);
      clock.advance(600_000);
      try {
        const reaped = (await store.reapExpired()).filter((x) => x.approval_id === r.approval_id);
        assert.deepEqual(reaped.map((x) => [x.state, x.reason]), [['failed', 'claim_abandoned']]);
        const rec = await store.get(r.approval_id);
        assert.equal(rec.state, 'failed');
        assert.equal(rec.result, null);
        assert.equal(await store.complete(r.approval_id, 'approved', { status: 200, body: {} }, c.claimed.claim_token), false);
        assert.equal((await store.claim(r.approval_id, 'bob')).won, false);
      } finally {
        clock.advance(-600_000);
      }
    });

    test('pollForSession: own session sees the state; another session is session_mismatch; missing/expired 404', async () => {
      const r = await store.create(planInput({ session_id: 'ses_owner' }), 60);
      assert.deepEqual(await store.pollForSession(r.approval_id, 'ses_owner'), { approval_id: r.approval_id, state: 'pending' });
      await assert.rejects(store.pollForSession(r.approval_id, 'ses_intruder'), isCode('session_mismatch'));
      await assert.rejects(store.pollForSession('apr_missing', 'ses_owner'), isCode('approval_not_found'));
      await store.deny(r.approval_id, 'alice', null);
      assert.equal((await store.pollForSession(r.approval_id, 'ses_owner')).state, 'denied');
      const r2 = await store.create(planInput({ session_id: 'ses_owner' }), 60);
      clock.advance(60_000);
      try {
        await assert.rejects(store.pollForSession(r2.approval_id, 'ses_owner'), isCode('approval_not_found'));
      } finally {
        clock.advance(-60_000);
      }
    });

    test('list: newest first, status filter, default limit 50, capped at 200', async () => {
      const k = await b.db();
      await k.deleteFrom(APPROVALS_TABLE).execute();
      const ids: string[] = [];
      for (let i = 0; i < 205; i++) {
        clock.advance(1);
        ids.push((await store.create(planInput(), 3600)).approval_id);
      }
      await store.deny(ids[0]!, 'alice', null);
      const all = await store.list();
      assert.equal(all.length, 50);
      assert.deepEqual(all.map((x) => x.approval_id), ids.slice(-50).reverse());
      assert.equal((await store.list({ limit: 1000 })).length, 200);
      assert.equal((await store.list({ limit: 3 })).length, 3);
      const denied = await store.list({ status: 'denied' });
      assert.deepEqual(denied.map((x) => x.approval_id), [ids[0]]);
      assert.equal((await store.list({ status: 'pending', limit: 200 })).length, 200);
      await assert.rejects(store.list({ limit: 0 }), TypeError);
      assert.equal(await store.pendingCount(), 204);
      clock.advance(10_000);
      assert.equal(await store.oldestPendingAgeSeconds(), 10);
      clock.advance(-10_000);
      await k.deleteFrom(APPROVALS_TABLE).execute();
      assert.equal(await store.pendingCount(), 0);
      assert.equal(await store.oldestPendingAgeSeconds(), 0);
    });

    const tampers: [string, (plan: Record<string, unknown>) => void][] = [
      ['request body changed', (p) => { (p.request as Record<string, unknown>).url = 'https://evil.example/'; }],
      ['targets widened', (p) => { (p.targets as string[]).push('https://evil.example/'); }],
      ['secret names added', (p) => { (p.secret_names as string[]).push('prod_db_password'); }],
      ['provider digest swapped', (p) => { p.provider_module_digest = `sha256:${'00'.repeat(32)}`; }],
      ['expiry extended', (p) => { p.expires_at = '2099-01-01T00:00:00.000Z'; }],
      ['approval id swapped', (p) => { p.approval_id = 'apr_other'; }],
    ];
    for (const [name, mutate] of tampers) {
      test(`attack: plan tampered in the database is detected by verifyPlanHash (${name})`, async () => {
        const r = await store.create(planInput(), 600);
        const k = await b.db();
        const row = await k.selectFrom(APPROVALS_TABLE).select('plan').where('approval_id', '=', r.approval_id).executeTakeFirstOrThrow();
        const plan = JSON.parse(row.plan as string) as Record<string, unknown>;
        mutate(plan);
        await k.updateTable(APPROVALS_TABLE).set({ plan: JSON.stringify(plan) }).where('approval_id', '=', r.approval_id).execute();
        const got = await store.get(r.approval_id);
        assert.equal(verifyPlanHash(got), false);
        assert.equal(verifyPlanHash(r), true);
      });
    }

    if (backend.name === 'postgres') {
      test('PostgreSQL down -> approval_store_unavailable; back up -> the same store works', async () => {
        const r = await store.create(planInput(), 600);
        await b.server!.pause();
        try {
          await assert.rejects(store.get(r.approval_id), isCode('approval_store_unavailable'));
          await assert.rejects(store.claim(r.approval_id, 'a'), isCode('approval_store_unavailable'));
          await assert.rejects(store.create(planInput(), 600), isCode('approval_store_unavailable'));
          await assert.rejects(store.pendingCount(), isCode('approval_store_unavailable'));
        } finally {
          await b.server!.start();
        }
        // Each pooled connection to the old server fails once (503, never a wrong answer) and is
        // dropped by the pool; the pool holds at most 8.
        let back: Awaited<ReturnType<typeof store.get>> | undefined;
        for (let i = 0; i <= 8 && !back; i++) {
          try {
            back = await store.get(r.approval_id);
          } catch (e) {
            assert.ok(isCode('approval_store_unavailable')(e), String(e));
          }
        }
        assert.equal(back?.state, 'pending');
      });
    } else {
      test('SQLite closed -> approval_store_unavailable', async () => {
        const k = await b.db();
        const s = new KyselyApprovalStore(k, { clock });
        await k.destroy();
        await assert.rejects(s.get('apr_x'), isCode('approval_store_unavailable'));
      });
    }
  });
}
