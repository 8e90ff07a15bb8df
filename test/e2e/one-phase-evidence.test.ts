// One-phase evidence (a provider without I/O: intent, receipt and final event in one commit) when
// that commit fails, seen end to end on a real embedded gate with an Idempotency-Key: a clean
// failure refunds and lets the retry run; a COMMIT of unknown outcome is looked up, so a call on
// record is never refunded nor run twice under its key. (Found by review: an unknown COMMIT used
// to be treated as "nothing recorded".)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { PortcullisClient, PortcullisError } from '../../src/client/index.ts';
import { startTestGate, type TestGate } from '../helpers/gate.ts';
import { LedgerDatabase, CommitError } from '../../src/ledger/db.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { SqliteBudgetStore } from '../../src/budgets/sqlite-store.ts';
import { GateError } from '../../src/errors.ts';

type Ctx = { after(fn: () => unknown): void };

function spy<T extends object, K extends keyof T>(t: Ctx, proto: T, name: K, replacement: (orig: T[K]) => T[K]): void {
  const orig = proto[name];
  proto[name] = replacement(orig);
  t.after(() => { proto[name] = orig; });
}

function refundsSeen(t: Ctx): string[] {
  const refunds: string[] = [];
  spy(t, SqliteBudgetStore.prototype, 'refund', (orig) => async function (this: SqliteBudgetStore, id: string) {
    refunds.push(id);
    return orig.call(this, id);
  });
  return refunds;
}

/** The next call of the ledger's `name` fails with ledger_unavailable; later ones run. */
function failOnce(t: Ctx, name: 'complete' | 'getReceipt'): void {
  let fail = true;
  spy(t, Ledger.prototype, name, (orig) => async function (this: Ledger, ...args: unknown[]) {
    if (fail) {
      fail = false;
      throw new GateError('ledger_unavailable', 'down');
    }
    return (orig as (...a: unknown[]) => unknown).apply(this, args);
  } as never);
}

async function call(agent: PortcullisClient, key: string): Promise<{ status: number; body: Record<string, unknown> }> {
  try {
    return { status: 200, body: await agent.execute('echo', { message: 'hi' }, { idempotencyKey: key }) as Record<string, unknown> };
  } catch (e) {
    if (e instanceof PortcullisError) return { status: e.status, body: e.body as Record<string, unknown> };
    throw e;
  }
}

function executeEvents(g: TestGate): Array<{ decision: string; trace_id: string; reason_code: string }> {
  const db = new Database(join(g.dir, 'ledger.db'), { readonly: true });
  try {
    return db.prepare(`select decision, trace_id, reason_code from audit_events where type = 'execute' order by seq`).all() as never;
  } finally {
    db.close();
  }
}

async function gate(t: Ctx): Promise<{ g: TestGate; agent: PortcullisClient }> {
  const g = await startTestGate({});
  const agent = new PortcullisClient({ socketPath: g.config.client_socket });
  await agent.connect();
  await call(agent, 'warm-up');
  t.after(async () => {
    agent.close();
    await g.stop();
  });
  return { g, agent };
}

/** The next one-phase inline commit fails: `applied` says whether it committed before failing. */
function ambiguousCommit(t: Ctx, applied: boolean): { armed: () => boolean } {
  let armed = true;
  spy(t, LedgerDatabase.prototype, 'sqliteTransaction', (orig) => async function (this: LedgerDatabase, fn, opts) {
    if (armed && opts?.synchronous === 'NORMAL') {
      armed = false;
      if (applied) await orig.call(this, fn, opts);
      throw new CommitError(new Error('connection reset during COMMIT'));
    }
    return orig.call(this, fn, opts);
  } as LedgerDatabase['sqliteTransaction']);
  return { armed: () => armed };
}

test('a one-phase commit that fails cleanly: 503 ledger_unavailable, one refund, one error event, the key released for the retry', async (t) => {
  const refunds = refundsSeen(t);
  const { g, agent } = await gate(t);
  failOnce(t, 'complete');
  const before = refunds.length;
  const r1 = await call(agent, 'k-clean');
  assert.equal(r1.status, 503);
  assert.deepEqual(r1.body, { error: 'ledger_unavailable' });
  assert.equal(refunds.length - before, 1);
  const r2 = await call(agent, 'k-clean');
  assert.equal(r2.status, 200, 'the released key lets the retry run');
  const events = executeEvents(g);
  assert.equal(events.filter((e) => e.reason_code === 'ledger_unavailable').length, 1);
});

test('attack: a COMMIT of unknown outcome that did apply is a success: no refund, one event, the retry replays it', async (t) => {
  const refunds = refundsSeen(t);
  const { g, agent } = await gate(t);
  const fault = ambiguousCommit(t, true);
  const before = refunds.length;
  const r1 = await call(agent, 'k-applied');
  assert.equal(fault.armed(), false, 'the fault was not injected (the batch did not run inline)');
  assert.equal(r1.status, 200, JSON.stringify(r1.body));
  assert.equal(refunds.length - before, 0, 'a call on record was refunded');
  const r2 = await call(agent, 'k-applied');
  assert.equal(r2.status, 200);
  assert.equal(r2.body.trace_id, r1.body.trace_id, 'the retry ran again instead of replaying');
  const mine = executeEvents(g).filter((e) => e.trace_id === r1.body.trace_id);
  assert.deepEqual(mine.map((e) => e.decision), ['allow'], 'exactly one final event for the call');
});

test('a COMMIT of unknown outcome that did not apply: nothing on record, 503 and a refund', async (t) => {
  const refunds = refundsSeen(t);
  const { agent } = await gate(t);
  ambiguousCommit(t, false);
  const before = refunds.length;
  const r1 = await call(agent, 'k-lost');
  assert.equal(r1.status, 503);
  assert.equal(refunds.length - before, 1);
  assert.equal((await call(agent, 'k-lost')).status, 200);
});

test('attack: a COMMIT of unknown outcome that cannot be looked up: 500 evidence_persistence_failed, no refund, the key keeps that answer', async (t) => {
  const refunds = refundsSeen(t);
  const { agent } = await gate(t);
  ambiguousCommit(t, true);
  failOnce(t, 'getReceipt');
  const before = refunds.length;
  const r1 = await call(agent, 'k-unknown');
  assert.equal(r1.status, 500);
  assert.deepEqual(r1.body, { error: 'evidence_persistence_failed' });
  assert.equal(refunds.length - before, 0, 'refunded a call that may be on record');
  const r2 = await call(agent, 'k-unknown');
  assert.equal(r2.status, 500, 'the retry under the same key ran again');
});
