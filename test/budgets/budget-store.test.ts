// Budget stores, Redis and SQLite, against one table of cases: lease budgets, principal window
// budgets (calls and cost), all-or-none debits, refunds, snapshots and fail-closed config parsing.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { GateError, type GateErrorCode } from '../../src/errors.ts';
import type { BudgetQuery, BudgetStore, PrincipalBudget } from '../../src/budgets/index.ts';
import { BACKENDS, ManualClock, type BudgetBackend } from './backends.ts';

let seq = 0;
const uid = (p: string) => `${p}_${process.pid}_${++seq}`;

async function rejectsWith(p: Promise<unknown>, code: GateErrorCode, extra?: Record<string, unknown>): Promise<GateError> {
  let caught: unknown;
  await assert.rejects(p, (e) => { caught = e; return true; });
  assert.ok(caught instanceof GateError, `expected GateError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  if (extra) for (const [k, v] of Object.entries(extra)) assert.deepEqual(caught.extra?.[k], v, `extra.${k}`);
  return caught;
}

function q(sessionId: string, principal: string, actionId = 'http_fetch', more: Partial<BudgetQuery> = {}): BudgetQuery {
  return { sessionId, principal, actionId, lease: undefined, ...more };
}

for (const backend of BACKENDS) {
  describe(`${backend.name} budget store`, { skip: backend.skip }, () => {
    let b: BudgetBackend;
    let clock: ManualClock;
    let store: BudgetStore;
    before(async () => {
      b = await backend.make();
      clock = new ManualClock();
      store = await b.open(clock);
    });
    after(async () => { await b?.close(); });

    test('lease budget: max_calls debits exactly, then budget_exhausted names the lease', async () => {
      const sid = uid('ses');
      await store.initSession(sid, { max_calls: 3 }, 300);
      const lease = { max_calls: 3 };
      const remaining = [];
      for (let i = 0; i < 3; i++) remaining.push((await store.debit(q(sid, uid('p'), 'a', { lease }))).remaining_calls);
      assert.deepEqual(remaining, [2, 1, 0]);
      await rejectsWith(store.debit(q(sid, uid('p'), 'a', { lease })), 'budget_exhausted', { budget: 'lease' });
      const snap = await store.snapshot(q(sid, uid('p'), 'a', { lease }));
      assert.equal(snap.exhausted, true);
      assert.equal(snap.exhausted_by, 'lease');
      assert.equal(snap.remaining_calls, 0);
    });

    const missing: { name: string; op: (s: BudgetStore, sid: string) => Promise<unknown> }[] = [
      { name: 'debit', op: (s, sid) => s.debit(q(sid, uid('p'), 'a', { lease: { max_calls: 5 } })) },
      { name: 'snapshot', op: (s, sid) => s.snapshot(q(sid, uid('p'), 'a', { lease: { max_calls: 5 } })) },
    ];
    for (const c of missing) {
      test(`attack: lease declares budgets but its counter is missing -> budget_session_not_found (${c.name}), never unlimited`, async () => {
        await rejectsWith(c.op(store, uid('ses-missing')), 'budget_session_not_found');
      });
    }

    test('a session without declared budgets and no counter is unlimited for the lease part', async () => {
      const sid = uid('ses');
      for (let i = 0; i < 25; i++) {
        const r = await store.debit(q(sid, uid('p')));
        assert.equal(r.remaining_calls, null);
      }
      const snap = await store.snapshot(q(sid, uid('p')));
      assert.deepEqual(snap, { exhausted: false, exhausted_by: null, remaining_calls: null, cost: 1, remaining_cost: null, window_resets_at: null });
    });

    test('attack: re-initialising a live session does not reset its counter', async () => {
      const sid = uid('ses');
      await store.initSession(sid, { max_calls: 1 }, 300);
      await store.debit(q(sid, uid('p'), 'a', { lease: { max_calls: 1 } }));
      await store.initSession(sid, { max_calls: 50 }, 300);
      await rejectsWith(store.debit(q(sid, uid('p'), 'a', { lease: { max_calls: 1 } })), 'budget_exhausted', { budget: 'lease' });
    });

    test('a counter present without a declared lease budget still applies (the stricter reading)', async () => {
      const sid = uid('ses');
      await store.initSession(sid, { max_calls: 1 }, 300);
      await store.debit(q(sid, uid('p')));
      await rejectsWith(store.debit(q(sid, uid('p'))), 'budget_exhausted', { budget: 'lease' });
    });

    test('principal window: exactly max_calls per window, exhausted until the next window starts', async () => {
      const p = uid('p');
      await store.setPrincipalBudget({ principal: p, window_seconds: 60, max_calls: 4 });
      const start = clock.now();
      for (let i = 0; i < 4; i++) await store.debit(q(uid('ses'), p));
      clock.t = start + 59_999;
      const err = await rejectsWith(store.debit(q(uid('ses'), p)), 'budget_exhausted', { budget: 'principal_calls' });
      assert.equal(err.extra?.retry_after_seconds, 1);
      const snap = await store.snapshot(q(uid('ses'), p));
      assert.equal(snap.exhausted_by, 'principal_calls');
      assert.equal(snap.window_resets_at, new Date(start + 60_000).toISOString());
      clock.t = start + 60_000;
      const r = await store.debit(q(uid('ses'), p));
      assert.equal(r.remaining_calls, 3);
      clock.t = start;
    });

    test('window budget: a lagging clock never moves the window backwards', async () => {
      const p = uid('p');
      await store.setPrincipalBudget({ principal: p, window_seconds: 60, max_calls: 2 });
      const start = clock.now();
      clock.t = start + 60_000; // instance A is in the next window
      await store.debit(q(uid('ses'), p));
      await store.debit(q(uid('ses'), p));
      clock.t = start + 59_000; // instance B lags one second behind, still in the previous window
      await rejectsWith(store.debit(q(uid('ses'), p)), 'budget_exhausted', { budget: 'principal_calls' });
      clock.t = start;
    });

    const costCases: { name: string; budget: Omit<PrincipalBudget, 'principal'>; calls: [string, number | undefined, number | null][] }[] = [
      {
        name: 'action_costs, default_cost and explicit cost; the operator figure wins over the explicit one',
        budget: { window_seconds: 3600, max_cost: 10, action_costs: { expensive: 4 }, default_cost: 3 },
        // [action, explicit cost, expected remaining_cost or null = refused]
        calls: [['expensive', 100, 6], ['other', undefined, 3], ['expensive', undefined, null], ['cheap', 2, 1], ['other', undefined, null], ['cheap', 1, 0], ['cheap', 1, null]],
      },
      {
        name: 'zero-cost actions pass an exhausted cost budget but still count as calls',
        budget: { window_seconds: 3600, max_cost: 1, max_calls: 3, action_costs: { free: 0 } },
        calls: [['paid', undefined, 0], ['paid', undefined, null], ['free', undefined, 0], ['free', undefined, 0], ['free', undefined, null]],
      },
    ];
    for (const c of costCases) {
      test(`cost budget: ${c.name}`, async () => {
        const p = uid('p');
        await store.setPrincipalBudget({ principal: p, ...c.budget });
        for (const [action, cost, expected] of c.calls) {
          const query = q(uid('ses'), p, action, cost === undefined ? {} : { cost });
          if (expected === null) {
            await assert.rejects(store.debit(query), (e: unknown) => e instanceof GateError && e.code === 'budget_exhausted');
          } else {
            assert.equal((await store.debit(query)).remaining_cost, expected, `${action}`);
          }
        }
      });
    }

    test('snapshot is read-only and reports remaining calls, cost and remaining cost', async () => {
      const p = uid('p');
      const sid = uid('ses');
      await store.initSession(sid, { max_calls: 5 }, 300);
      await store.setPrincipalBudget({ principal: p, window_seconds: 60, max_calls: 3, max_cost: 20, action_costs: { x: 7 } });
      const lease = { max_calls: 5 };
      const s1 = await store.snapshot(q(sid, p, 'x', { lease }));
      const s2 = await store.snapshot(q(sid, p, 'x', { lease }));
      assert.deepEqual(s1, s2);
      assert.equal(s1.remaining_calls, 3);
      assert.equal(s1.cost, 7);
      assert.equal(s1.remaining_cost, 20);
      await store.debit(q(sid, p, 'x', { lease }));
      await store.debit(q(sid, p, 'x', { lease }));
      const s3 = await store.snapshot(q(sid, p, 'x', { lease }));
      assert.equal(s3.remaining_cost, 6);
      assert.equal(s3.exhausted, true);
      assert.equal(s3.exhausted_by, 'principal_cost');
      assert.equal(s3.remaining_calls, 1);
    });

    const allOrNone: { name: string; lease: number; principalCalls: number; refusedBy: string; leaseLeftAfter: number; windowLeftAfter: number }[] = [
      { name: 'principal window refuses -> the lease counter is untouched', lease: 5, principalCalls: 1, refusedBy: 'principal_calls', leaseLeftAfter: 4, windowLeftAfter: 0 },
      { name: 'lease refuses -> the principal window is untouched', lease: 1, principalCalls: 5, refusedBy: 'lease', leaseLeftAfter: 0, windowLeftAfter: 4 },
    ];
    for (const c of allOrNone) {
      test(`debit is all-or-none: ${c.name}`, async () => {
        const p = uid('p');
        const sid = uid('ses');
        const lease = { max_calls: c.lease };
        await store.initSession(sid, lease, 300);
        await store.setPrincipalBudget({ principal: p, window_seconds: 600, max_calls: c.principalCalls });
        await store.debit(q(sid, p, 'a', { lease }));
        await rejectsWith(store.debit(q(sid, p, 'a', { lease })), 'budget_exhausted', { budget: c.refusedBy });
        // The window as seen by another session with no lease budget:
        assert.equal((await store.snapshot(q(uid('ses'), p))).remaining_calls, c.windowLeftAfter);
        await store.removePrincipalBudget(p);
        assert.equal((await store.snapshot(q(sid, p, 'a', { lease }))).remaining_calls, c.leaseLeftAfter);
      });
    }

    test('refund gives a debit back exactly once, to the lease and the window', async () => {
      const p = uid('p');
      const sid = uid('ses');
      const lease = { max_calls: 2 };
      await store.initSession(sid, lease, 300);
      await store.setPrincipalBudget({ principal: p, window_seconds: 600, max_calls: 10, max_cost: 10, default_cost: 5 });
      const d1 = await store.debit(q(sid, p, 'a', { lease }));
      await store.debit(q(sid, p, 'a', { lease }));
      await rejectsWith(store.debit(q(sid, p, 'a', { lease })), 'budget_exhausted', { budget: 'lease' });
      assert.equal(await store.refund(d1.debit_id), true);
      assert.equal(await store.refund(d1.debit_id), false, 'second refund of the same debit');
      assert.equal(await store.refund('dbt_unknown'), false);
      assert.equal(await store.refund('not-a-debit'), false);
      const snap = await store.snapshot(q(sid, p, 'a', { lease }));
      assert.equal(snap.remaining_calls, 1);
      assert.equal(snap.remaining_cost, 5);
      await store.debit(q(sid, p, 'a', { lease }));
      await rejectsWith(store.debit(q(sid, p, 'a', { lease })), 'budget_exhausted');
    });

    test('refund after the window rolled over does not credit the new window', async () => {
      const p = uid('p');
      await store.setPrincipalBudget({ principal: p, window_seconds: 60, max_calls: 1 });
      const start = clock.now();
      const d = await store.debit(q(uid('ses'), p));
      clock.t = start + 60_000;
      await store.debit(q(uid('ses'), p));
      assert.equal(await store.refund(d.debit_id), true);
      await rejectsWith(store.debit(q(uid('ses'), p)), 'budget_exhausted', { budget: 'principal_calls' });
      clock.t = start;
    });

    test('principal budget config: set, get, list, remove; removal drops the window', async () => {
      const p1 = uid('cfg-a');
      const p2 = uid('cfg-b');
      const b1 = { principal: p1, window_seconds: 60, max_calls: 1, action_costs: { x: 2 } };
      assert.deepEqual(await store.setPrincipalBudget(b1), b1);
      await store.setPrincipalBudget({ principal: p2, window_seconds: 30, max_cost: 9 });
      assert.deepEqual(await store.getPrincipalBudget(p1), b1);
      const listed = (await store.listPrincipalBudgets()).filter((x) => x.principal === p1 || x.principal === p2);
      assert.deepEqual(listed.map((x) => x.principal), [p1, p2]);
      await store.debit(q(uid('ses'), p1));
      await rejectsWith(store.debit(q(uid('ses'), p1)), 'budget_exhausted');
      assert.equal(await store.removePrincipalBudget(p1), true);
      assert.equal(await store.removePrincipalBudget(p1), false);
      assert.equal(await store.getPrincipalBudget(p1), undefined);
      await store.debit(q(uid('ses'), p1));
      await store.setPrincipalBudget(b1);
      await store.debit(q(uid('ses'), p1)); // a fresh window: the old counter went with the budget
    });

    const invalid: [string, unknown][] = [
      ['not an object', 'x'],
      ['unknown field', { principal: 'a', window_seconds: 60, max_calls: 1, max_call: 2 }],
      ['window 0', { principal: 'a', window_seconds: 0, max_calls: 1 }],
      ['window too long', { principal: 'a', window_seconds: 31_536_001, max_calls: 1 }],
      ['fractional max_calls', { principal: 'a', window_seconds: 60, max_calls: 1.5 }],
      ['negative max_cost', { principal: 'a', window_seconds: 60, max_cost: -1 }],
      ['no limit at all', { principal: 'a', window_seconds: 60 }],
      ['empty principal', { principal: '', window_seconds: 60, max_calls: 1 }],
      ['control character in principal (log injection)', { principal: 'a\nb', window_seconds: 60, max_calls: 1 }],
      ['action cost not a number', { principal: 'a', window_seconds: 60, max_cost: 5, action_costs: { x: '1' } }],
      ['action cost key not an action id', { principal: 'a', window_seconds: 60, max_cost: 5, action_costs: { 'a b': 1 } }],
      ['action_costs an array', { principal: 'a', window_seconds: 60, max_cost: 5, action_costs: [1] }],
    ];
    for (const [name, input] of invalid) {
      test(`invalid principal budget is rejected: ${name}`, async () => {
        await rejectsWith(store.setPrincipalBudget(input as PrincipalBudget), 'invalid_input');
      });
    }

    test('attack: a corrupt stored principal budget fails closed (budget_store_unavailable), never unlimited', async () => {
      const p = uid('p');
      await store.setPrincipalBudget({ principal: p, window_seconds: 60, max_calls: 1 });
      await b.corruptConfig(p);
      await rejectsWith(store.debit(q(uid('ses'), p)), 'budget_store_unavailable');
      await rejectsWith(store.getPrincipalBudget(p), 'budget_store_unavailable');
      await store.removePrincipalBudget(p);
    });

    test('a malformed query is a programming error (TypeError), not a gate error', async () => {
      await assert.rejects(store.debit(q('', 'p')), TypeError);
      await assert.rejects(store.debit(q('s', 'p', 'a', { cost: -1 })), TypeError);
      await assert.rejects(store.debit(q('s', 'p', 'a', { cost: 0.5 })), TypeError);
    });

    test('race: 50 concurrent debits through two store instances against max_calls 10 -> exactly 10 succeed', async () => {
      const other = await b.open(clock);
      const sid = uid('ses-race');
      const lease = { max_calls: 10 };
      await store.initSession(sid, lease, 300);
      const stores = [store, other];
      const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => stores[i % 2]!.debit(q(sid, uid('p'), 'a', { lease }))));
      const ok = results.filter((r) => r.status === 'fulfilled');
      const refused = results.filter((r) => r.status === 'rejected' && r.reason instanceof GateError && r.reason.code === 'budget_exhausted');
      assert.equal(ok.length, 10);
      assert.equal(refused.length, 40);
      const left = ok.map((r) => (r as PromiseFulfilledResult<{ remaining_calls: number | null }>).value.remaining_calls).sort((x, y) => x! - y!);
      assert.deepEqual(left, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'every debit saw a distinct counter value');
    });

    test('race: principal window calls and cost are exact under 60 concurrent debits on two instances', async () => {
      const other = await b.open(clock);
      const pc = uid('p-calls');
      const pk = uid('p-cost');
      await store.setPrincipalBudget({ principal: pc, window_seconds: 600, max_calls: 7 });
      await store.setPrincipalBudget({ principal: pk, window_seconds: 600, max_cost: 20, default_cost: 3 });
      const stores = [store, other];
      const run = (p: string) => Promise.allSettled(Array.from({ length: 60 }, (_, i) => stores[i % 2]!.debit(q(uid('ses'), p))));
      const [calls, cost] = await Promise.all([run(pc), run(pk)]);
      assert.equal(calls.filter((r) => r.status === 'fulfilled').length, 7);
      assert.equal(cost.filter((r) => r.status === 'fulfilled').length, 6); // 6 * 3 = 18 <= 20 < 21
      for (const r of [...calls, ...cost]) if (r.status === 'rejected') assert.equal((r.reason as GateError).code, 'budget_exhausted');
    });
  });
}
