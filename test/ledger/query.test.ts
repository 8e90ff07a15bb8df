// GET /v1/audit/events semantics on both backends: every filter, newest first, limit default 100
// capped at 1000, ISO 8601 bounds normalized, bad values refused with invalid_input.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { GateError } from '../../src/errors.ts';
import type { EventFilters, Ledger } from '../../src/ledger/index.ts';
import { BACKENDS, ledgerOn, testKeys, tickingClock, type TestContext } from './helpers.ts';

const fixtures = [
  { type: 'execute', decision: 'allow', trace_id: 't1', action_id: 'http_fetch', principal: 'alice', session_id: 's1' },
  { type: 'execute', decision: 'deny', trace_id: 't2', action_id: 'http_fetch', principal: 'bob', session_id: 's2', reason_code: 'policy_denied' },
  { type: 'execute', decision: 'pending_approval', trace_id: 't3', action_id: 'github_create_issue', principal: 'alice', session_id: 's1' },
  { type: 'execute', decision: 'error', trace_id: 't4', action_id: 'slack_post', principal: 'carol', session_id: 's3' },
  { type: 'admin_drain', decision: 'admin', operator: 'root-op' },
  { type: 'execute', decision: 'allow', trace_id: 't1', action_id: 'http_fetch', principal: 'alice', session_id: 's1' },
] as const;

for (const backend of BACKENDS) {
  describe(`queryEvents (${backend.name})`, { skip: backend.skip }, () => {
    let ledger: Ledger;
    const stamps: string[] = [];

    // One fixture ledger per backend, shared by the read-only tests (queries change nothing); a
    // ledger per test cost a database and a writer thread each (≈ 2 s per test on the thread).
    const cleanups: Array<() => unknown> = [];
    const suite = { after: (fn: () => unknown) => { cleanups.push(fn); } } as TestContext;
    before(async () => {
      await backend.start();
      const clock = tickingClock('2026-11-22T10:00:00.000Z');
      ledger = await ledgerOn(await (await backend.fresh(suite)).open(), await testKeys(suite), { clock });
      for (const [i, f] of fixtures.entries()) {
        clock.set(`2026-11-22T1${i}:00:00.000Z`);
        await ledger.append({ ...f });
        stamps.push(`2026-11-22T1${i}:00:00.000Z`);
      }
    });
    after(async () => {
      for (const fn of cleanups.reverse()) await fn();
      await backend.stop();
    });

    const cases: Array<{ name: string; filters: EventFilters; want: number[] }> = [
      { name: 'no filter: all, newest first', filters: {}, want: [6, 5, 4, 3, 2, 1] },
      { name: 'trace_id', filters: { trace_id: 't1' }, want: [6, 1] },
      { name: 'action_id', filters: { action_id: 'http_fetch' }, want: [6, 2, 1] },
      { name: 'principal', filters: { principal: 'alice' }, want: [6, 3, 1] },
      { name: 'session_id', filters: { session_id: 's2' }, want: [2] },
      { name: 'decision', filters: { decision: 'pending_approval' }, want: [3] },
      { name: 'decision admin', filters: { decision: 'admin' }, want: [5] },
      { name: 'after (strict)', filters: { after: '2026-11-22T13:00:00.000Z' }, want: [6, 5] },
      { name: 'before (strict)', filters: { before: '2026-11-22T12:00:00Z' }, want: [2, 1] },
      { name: 'after with an offset is normalized to UTC', filters: { after: '2026-11-22T15:00:00+02:00' }, want: [6, 5] },
      { name: 'after and before', filters: { after: '2026-11-22T11:00:00Z', before: '2026-11-22T14:00:00Z' }, want: [4, 3] },
      { name: 'combined filters are ANDed', filters: { principal: 'alice', decision: 'allow' }, want: [6, 1] },
      { name: 'limit', filters: { limit: 2 }, want: [6, 5] },
      { name: 'no match', filters: { principal: 'nobody' }, want: [] },
      { name: 'SQL metacharacters are data, not SQL', filters: { principal: "alice' OR '1'='1" }, want: [] },
    ];
    for (const c of cases) {
      test(`filter: ${c.name}`, async () => {
        const events = await ledger.queryEvents(c.filters);
        assert.deepEqual(events.map((e) => e.seq), c.want);
        for (const e of events) assert.equal(e.ts, stamps[e.seq - 1]);
      });
    }

    const bad: Array<{ name: string; filters: Record<string, unknown> }> = [
      { name: 'limit 0', filters: { limit: 0 } },
      { name: 'limit negative', filters: { limit: -5 } },
      { name: 'limit fractional', filters: { limit: 1.5 } },
      { name: 'unknown decision', filters: { decision: 'maybe' } },
      { name: 'after not a date', filters: { after: 'yesterday' } },
      { name: 'before not a date', filters: { before: '2026-13-45T99:00:00Z' } },
      { name: 'after as a number', filters: { after: 1700000000 } },
      { name: 'principal not a string', filters: { principal: ['a', 'b'] } },
      { name: 'principal absurdly long', filters: { principal: 'x'.repeat(10_000) } },
    ];
    for (const c of bad) {
      test(`refused with invalid_input: ${c.name}`, async () => {
        await assert.rejects(ledger.queryEvents(c.filters as EventFilters), (err: unknown) => {
          assert.ok(err instanceof GateError);
          assert.equal(err.code, 'invalid_input');
          return true;
        });
      });
    }

    test('limit defaults to 100 and is capped at 1000', async (t) => {
      const l = await ledgerOn(await (await backend.fresh(t)).open(), await testKeys(t));
      await Promise.all(Array.from({ length: 1005 }, (_, i) => l.append({ type: 'bulk', decision: 'info', detail: { i } })));
      const def = await l.queryEvents({});
      assert.equal(def.length, 100);
      assert.equal(def[0]!.seq, 1005);
      assert.equal((await l.queryEvents({ limit: 5000 })).length, 1000);
      assert.equal((await l.queryEvents({ limit: 1000 })).at(-1)!.seq, 6);
      assert.equal((await l.verify()).events_checked, 1005);
    });

    test('stored events round-trip: detail object, nulls, operator', async () => {
      const [admin] = await ledger.queryEvents({ decision: 'admin' });
      assert.deepEqual({ ...admin, event_id: 'x', hash: 'x', prev_hash: 'x' }, {
        seq: 5, event_id: 'x', ts: stamps[4], type: 'admin_drain', decision: 'admin', trace_id: null, action_id: null,
        principal: null, session_id: null, operator: 'root-op', reason_code: null, detail: null, prev_hash: 'x', hash: 'x',
      });
    });
  });
}
