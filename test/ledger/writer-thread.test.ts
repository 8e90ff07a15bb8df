// The embedded writer thread's durability rule (docs/ledger.md, "When a write is durable"): with
// receipt_fsync = after_reply only a batch of finalizations alone is answered before its fsync;
// an intent, an event, or a batch mixing them is fsynced first. A failed post-reply fsync is
// fatal: the ledger refuses every later write and says so, instead of appending after frames the
// disk may have lost. The same rule holds for the batches a lone caller runs on the gate's own
// connection (LedgerOptions.inlineWhen), which interleave with the thread's on one chain.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { GateError } from '../../src/errors.ts';
import { sql } from 'kysely';
import { openDatabase, type DatabaseConfig } from '../../src/ledger/db.ts';
import { WriterThread } from '../../src/ledger/writer-thread.ts';
import { subscribe } from '../../src/observe.ts';
import type { Ledger, LedgerOptions } from '../../src/ledger/index.ts';
import type { Keystore } from '../../src/keys/index.ts';
import { ledgerOn, makeGrant, makeReceipt, spyBatches, spyInline, tempDir, testKeys, writerFailure, type TestContext } from './helpers.ts';

async function setup(t: TestContext, extra: Partial<Extract<DatabaseConfig, { kind: 'sqlite' }>>, options: Partial<LedgerOptions> = {}) {
  const db = await openDatabase({ kind: 'sqlite', path: join(tempDir(t), 'ledger.db'), writerThread: true, ...extra });
  t.after(() => db.close());
  const keys = await testKeys(t);
  const ledger = await ledgerOn(db, keys, options);
  t.after(() => ledger.close());
  return { ledger, keys, db };
}

const EXEC = { type: 'execute', decision: 'allow' } as const;
const DISPATCH = { type: 'execute_dispatch', decision: 'allow' } as const;

/** One call's evidence, as the pipeline writes it: the intent (a batch), then the receipt (another). */
async function intentThenReceipt(ledger: Ledger, keys: Keystore): Promise<void> {
  const g = makeGrant(keys);
  const i = await ledger.recordIntent({ grant: g }, DISPATCH);
  await ledger.finalize({ intentId: i.intent_id, receipt: makeReceipt(keys, g), auditEvent: EXEC });
}

test('writer thread, receipt_fsync = after_reply: finalize-only batches answer before their fsync; intents, events and mixed batches after', async (t) => {
  const seen = spyBatches(t);
  const { ledger, keys } = await setup(t, { receiptFsync: 'after_reply' });
  await intentThenReceipt(ledger, keys);
  await ledger.append({ type: 'admin_note', decision: 'admin' });
  // An intent and a finalization queued in the same turn share one batch: fsynced before the answer.
  const g2 = makeGrant(keys);
  const i2 = await ledger.recordIntent({ grant: g2 }, DISPATCH);
  const g3 = makeGrant(keys);
  await Promise.all([
    ledger.finalize({ intentId: i2.intent_id, receipt: makeReceipt(keys, g2), auditEvent: EXEC }),
    ledger.recordIntent({ grant: g3 }, DISPATCH),
  ]);
  assert.deepEqual(seen, [
    { kinds: 'intent', fsync: 'before_reply' },
    { kinds: 'finalize', fsync: 'after_reply' },
    { kinds: 'append', fsync: 'before_reply' },
    { kinds: 'intent', fsync: 'before_reply' },
    { kinds: 'finalize+intent', fsync: 'before_reply' },
  ]);
  assert.equal((await ledger.verify()).intact, true);
});

test('writer thread, receipt_fsync = before_reply: every batch, finalizations included, is fsynced before its answer', async (t) => {
  const seen = spyBatches(t);
  const { ledger, keys } = await setup(t, { receiptFsync: 'before_reply' });
  await intentThenReceipt(ledger, keys);
  assert.deepEqual(seen.map((s) => s.fsync), ['before_reply', 'before_reply']);
});

test('writer thread: a failed fsync after an early reply is fatal — reported, the ledger refuses every later write, the gate health says so', async (t) => {
  const errors: Array<Record<string, unknown>> = [];
  t.after(subscribe('error', (e) => errors.push(e)));
  const { ledger, keys } = await setup(t, { receiptFsync: 'after_reply', faultWalSync: true });
  // The receipt is answered before its fsync, which then fails in the thread.
  await intentThenReceipt(ledger, keys);
  assert.match((await writerFailure(ledger)) ?? '', /WAL fsync failed after an early reply: injected/);
  assert.ok(errors.some((e) => e.code === 'ledger_writer_failed'), JSON.stringify(errors));
  // Every later write is refused, a new intent included (no side effect may follow an unsure WAL).
  await assert.rejects(ledger.append({ type: 'admin_note', decision: 'admin' }), (e) => e instanceof GateError && e.code === 'ledger_unavailable');
  await assert.rejects(ledger.recordIntent({ grant: makeGrant(keys) }, DISPATCH),
    (e) => e instanceof GateError && e.code === 'ledger_unavailable');
});

// ---- batches run on the gate's own connection (LedgerOptions.inlineWhen) ----

test('inline (a lone caller): batches run on the gate connection with the writer thread\'s rule — finalizations committed without fsync, answered, then fsynced; the rest FULL', async (t) => {
  const seen = spyBatches(t);
  const inline = spyInline(t);
  const { ledger, keys, db } = await setup(t, { receiptFsync: 'after_reply' }, { inlineWhen: () => true });
  await intentThenReceipt(ledger, keys);
  await ledger.append({ type: 'admin_note', decision: 'admin' });
  await intentThenReceipt(ledger, keys);
  assert.deepEqual(seen, [], 'no batch went to the writer thread');
  assert.equal(ledger.inlineBatches, 5);
  assert.deepEqual(inline.txs.map((x) => x.synchronous), ['FULL', 'NORMAL', 'FULL', 'FULL', 'NORMAL']);
  assert.equal(inline.syncs(), 2, 'one WAL fsync after each early-answered finalization');
  // The connection is back to FULL for everything else it commits (approvals, migrations).
  const level = await sql<{ synchronous: number }>`pragma synchronous`.execute(db.db);
  assert.equal(level.rows[0]!.synchronous, 2);
  assert.equal((await ledger.verify()).intact, true);
});

test('inline, receipt_fsync = before_reply: a lone caller\'s finalizations are fsynced before their answer too', async (t) => {
  const inline = spyInline(t);
  const { ledger, keys } = await setup(t, { receiptFsync: 'before_reply' }, { inlineWhen: () => true });
  await intentThenReceipt(ledger, keys);
  assert.deepEqual(inline.txs.map((x) => x.synchronous), ['FULL', 'FULL']);
  assert.equal(inline.syncs(), 0);
});

test('inline and writer-thread batches interleave on one unbroken chain; a busy ledger thread sends batches to the writer', async (t) => {
  const seen = spyBatches(t);
  let alone = true;
  const { ledger, keys } = await setup(t, { receiptFsync: 'after_reply' }, { inlineWhen: () => alone });
  for (let i = 0; i < 12; i++) {
    alone = i % 3 !== 0;
    await intentThenReceipt(ledger, keys);
    // Concurrent writes: whichever way the batch runs, each commits once, in order.
    await Promise.all([ledger.append({ type: 'admin_note', decision: 'admin' }), intentThenReceipt(ledger, keys)]);
  }
  assert.ok(ledger.inlineBatches > 0 && seen.length > 0, `inline ${ledger.inlineBatches}, thread ${seen.length}`);
  // While a ledger thread has a request in flight (it may hold the write lock) nothing runs inline.
  const idle = Object.getOwnPropertyDescriptor(WriterThread.prototype, 'idle')!;
  Object.defineProperty(WriterThread.prototype, 'idle', { get: () => false, configurable: true });
  t.after(() => Object.defineProperty(WriterThread.prototype, 'idle', idle));
  alone = true;
  const before = ledger.inlineBatches;
  await intentThenReceipt(ledger, keys);
  assert.equal(ledger.inlineBatches, before);
  const v = await ledger.verify();
  assert.equal(v.intact, true);
  assert.equal(v.events_checked, 12 * 5 + 2);
});

test('WriterThread.idle is false while a batch is in flight', async (t) => {
  const { ledger, keys, db } = await setup(t, { receiptFsync: 'after_reply' });
  await intentThenReceipt(ledger, keys);
  const thread = new WriterThread({ ...db.writerThread!, onError: () => undefined });
  t.after(() => thread.close());
  assert.equal(thread.idle, true);
  const run = thread.run([{ kind: 'append', at: new Date().toISOString(), event: { event_id: 'evt_idle', type: 'admin_note', decision: 'admin', trace_id: null, action_id: null, principal: null, session_id: null, operator: null, reason_code: null, detailText: null } }]);
  assert.equal(thread.idle, false);
  await run;
  assert.equal(thread.idle, true);
});

test('inline: a failed fsync after an early reply is fatal too — reported, every later write refused, inline or not', async (t) => {
  const errors: Array<Record<string, unknown>> = [];
  t.after(subscribe('error', (e) => errors.push(e)));
  let alone = true;
  const { ledger, keys } = await setup(t, { receiptFsync: 'after_reply', faultWalSync: true }, { inlineWhen: () => alone });
  await intentThenReceipt(ledger, keys);
  assert.match((await writerFailure(ledger)) ?? '', /WAL fsync failed after an early reply: injected/);
  assert.ok(errors.some((e) => e.code === 'ledger_writer_failed'), JSON.stringify(errors));
  await assert.rejects(ledger.recordIntent({ grant: makeGrant(keys) }, DISPATCH), (e) => e instanceof GateError && e.code === 'ledger_unavailable');
  alone = false;
  await assert.rejects(ledger.append({ type: 'admin_note', decision: 'admin' }), (e) => e instanceof GateError && e.code === 'ledger_unavailable');
});

test('inline: a batch the writer answered before its fsync is fsynced before anything runs inline — a failed fsync refuses the lone caller\'s next intent', async (t) => {
  let alone = false;
  const { ledger, keys } = await setup(t, { receiptFsync: 'after_reply', faultWalSync: true }, { inlineWhen: () => alone });
  const g = makeGrant(keys);
  const i = await ledger.recordIntent({ grant: g }, DISPATCH);
  // Not alone: the finalization goes to the writer, which answers, then fsyncs (and fails).
  const fin = ledger.finalize({ intentId: i.intent_id, receipt: makeReceipt(keys, g), auditEvent: EXEC });
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  // Now alone: this intent is queued behind that batch and must not commit inline meanwhile.
  alone = true;
  const second = ledger.recordIntent({ grant: makeGrant(keys) }, DISPATCH);
  await fin;
  await assert.rejects(second, (e) => e instanceof GateError && e.code === 'ledger_unavailable');
  assert.match((await writerFailure(ledger)) ?? '', /WAL fsync failed after an early reply/);
});

for (const inline of [true, false]) {
  test(`no checkpoint is signed after a fatal post-reply fsync (${inline ? 'inline' : 'writer thread'})`, async (t) => {
    const { ledger, keys } = await setup(t, { receiptFsync: 'after_reply', faultWalSync: true }, { inlineWhen: () => inline });
    await intentThenReceipt(ledger, keys);
    assert.ok(await writerFailure(ledger));
    await assert.rejects(ledger.checkpoint(), (e) => e instanceof GateError && e.code === 'ledger_unavailable');
  });
}
