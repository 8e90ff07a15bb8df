// SQLite-only budget behaviour: lease expiry on the injected clock, and exactness across separate
// OS processes writing one database file (real lock contention, BEGIN IMMEDIATE + busy timeout).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { GateError } from '../../src/errors.ts';
import { SqliteBudgetStore } from '../../src/budgets/index.ts';
import { ManualClock } from './backends.ts';

function tempDb(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-budget-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'state.db');
}

test('lease counter expires with the lease: a budgeted session is then budget_session_not_found', async (t) => {
  const db = new Database(tempDb(t));
  t.after(() => db.close());
  const clock = new ManualClock();
  const store = new SqliteBudgetStore(db, { clock });
  const lease = { max_calls: 5 };
  await store.initSession('ses_exp', lease, 60);
  await store.debit({ sessionId: 'ses_exp', principal: 'p', actionId: 'a', lease });
  clock.advance(60_000);
  await assert.rejects(store.debit({ sessionId: 'ses_exp', principal: 'p', actionId: 'a', lease }),
    (e: unknown) => e instanceof GateError && e.code === 'budget_session_not_found');
  // An expired session id may be initialised again (fresh counter).
  await store.initSession('ses_exp', lease, 60);
  assert.equal((await store.debit({ sessionId: 'ses_exp', principal: 'p', actionId: 'a', lease })).remaining_calls, 4);
});

test('a closed database is budget_store_unavailable, never an allow', async (t) => {
  const db = new Database(tempDb(t));
  const store = new SqliteBudgetStore(db);
  db.close();
  await assert.rejects(store.debit({ sessionId: 's', principal: 'p', actionId: 'a', lease: undefined }),
    (e: unknown) => e instanceof GateError && e.code === 'budget_store_unavailable');
  assert.equal(await store.ping(), false);
});

test('race across 5 OS processes on one file: 100 debits against max_calls 37 -> exactly 37 succeed', async (t) => {
  const file = tempDb(t);
  const setup = new Database(file);
  setup.pragma('journal_mode = WAL');
  const store = new SqliteBudgetStore(setup);
  await store.initSession('ses_proc', { max_calls: 37 }, 600);
  setup.close();
  const worker = new URL('./fixtures/sqlite-debit-worker.ts', import.meta.url).pathname;
  const children = Array.from({ length: 5 }, () => spawn(process.execPath, ['--import', 'tsx', worker, file, 'ses_proc', 'p', '20'],
    { stdio: ['pipe', 'pipe', 'inherit'] }));
  t.after(() => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); });
  const lines = children.map((c) => createInterface({ input: c.stdout! })[Symbol.asyncIterator]());
  for (const it of lines) assert.equal((await it.next()).value, 'ready');
  for (const c of children) c.stdin!.write('go\n');
  const tallies = await Promise.all(lines.map(async (it) => JSON.parse((await it.next()).value as string) as Record<string, number>));
  const sum = (k: string) => tallies.reduce((n, x) => n + (x[k] ?? 0), 0);
  assert.equal(sum('ok'), 37);
  assert.equal(sum('budget_exhausted'), 63);
  assert.equal(sum('budget_store_unavailable') + sum('unexpected'), 0);
});

test('fail closed: the debits of a batch that cannot commit are all refused (budget_store_unavailable); nothing is debited', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-budget-batch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = new Database(join(dir, 'state.db'));
  const store = new SqliteBudgetStore(db);
  await store.initSession('ses_batch', { max_calls: 5 }, 60);
  const q = { sessionId: 'ses_batch', principal: 'agent', actionId: 'echo', lease: { max_calls: 5 } };
  const debits = [store.debit(q), store.debit(q)];
  db.close();
  for (const r of await Promise.allSettled(debits)) {
    assert.equal(r.status, 'rejected');
    assert.ok(r.reason instanceof GateError && r.reason.code === 'budget_store_unavailable', String(r.status === 'rejected' ? r.reason : ''));
  }
});

/** A store on a fresh file, closed and removed after the test. */
function batchStore(t: { after(fn: () => unknown): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-budget-batch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = new Database(join(dir, 'state.db'));
  t.after(() => db.close());
  return { db, store: new SqliteBudgetStore(db) };
}

test('one bad debit in a turn fails alone: a corrupt stored budget does not refuse the other principals\' debits', async (t) => {
  const { db, store } = batchStore(t);
  await store.setPrincipalBudget({ principal: 'bob', window_seconds: 60, max_calls: 5 });
  db.prepare("INSERT INTO budget_principals (principal, config) VALUES ('mallory', '{not json')").run();
  const q = (principal: string) => ({ sessionId: `ses_${principal}`, principal, actionId: 'echo', lease: undefined });
  const [bob, mallory] = await Promise.allSettled([store.debit(q('bob')), store.debit(q('mallory'))]);
  assert.equal(bob.status, 'fulfilled', String(bob.status === 'rejected' ? bob.reason : ''));
  assert.equal(mallory.status, 'rejected');
  assert.equal((mallory as PromiseRejectedResult).reason.code, 'budget_store_unavailable');
  assert.equal((await store.snapshot(q('bob'))).remaining_calls, 4, 'bob was debited exactly once');
});

test('attack: the query is copied when the debit is asked for; changing it before the batch runs changes nothing', async (t) => {
  const { store } = batchStore(t);
  await store.setPrincipalBudget({ principal: 'bob', window_seconds: 60, max_cost: 10 });
  const q: { sessionId: string; principal: string; actionId: string; lease: undefined; cost?: number } = { sessionId: 'ses_b', principal: 'bob', actionId: 'echo', lease: undefined, cost: 1 };
  const pending = store.debit(q);
  q.cost = -1000;
  const r = await pending;
  assert.equal(r.cost, 1);
  assert.equal((await store.snapshot({ ...q, cost: 1 })).remaining_cost, 9);
});

test('a debit with no budget to count against (no lease budget, no principal budget) writes nothing; one with a budget keeps its refund record', async (t) => {
  const db = new Database(tempDb(t));
  t.after(() => db.close());
  const store = new SqliteBudgetStore(db);
  const debits = () => (db.prepare('SELECT count(*) AS n FROM budget_debits').get() as { n: number }).n;
  const free = await store.debit({ sessionId: 'ses_free', principal: 'carol', actionId: 'echo', lease: undefined });
  assert.equal(free.remaining_calls, null);
  assert.equal(debits(), 0, 'a record with nothing to give back was written');
  assert.equal(await store.refund(free.debit_id), false);
  await store.setPrincipalBudget({ principal: 'carol', window_seconds: 60, max_calls: 3 });
  const counted = await store.debit({ sessionId: 'ses_free', principal: 'carol', actionId: 'echo', lease: undefined });
  assert.equal(counted.remaining_calls, 2);
  assert.equal(debits(), 1);
  assert.equal(await store.refund(counted.debit_id), true);
  assert.equal((await store.snapshot({ sessionId: 'ses_free', principal: 'carol', actionId: 'echo', lease: undefined })).remaining_calls, 3);
});
