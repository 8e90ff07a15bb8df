// The embedded writer thread's durability rule (docs/ledger.md, "When a write is durable"): with
// receipt_fsync = after_reply only a batch of finalizations alone is answered before its fsync;
// an intent, an event, or a batch mixing them is fsynced first. A failed post-reply fsync is
// fatal: the ledger refuses every later write and says so, instead of appending after frames the
// disk may have lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { GateError } from '../../src/errors.ts';
import { openDatabase, type DatabaseConfig } from '../../src/ledger/db.ts';
import { WriterThread } from '../../src/ledger/writer-thread.ts';
import { subscribe } from '../../src/observe.ts';
import type { Ledger } from '../../src/ledger/index.ts';
import type { Keystore } from '../../src/keys/index.ts';
import { ledgerOn, makeGrant, makeReceipt, tempDir, testKeys, type TestContext } from './helpers.ts';

type Seen = { kinds: string; fsync: string };

/** Records every batch the writer thread answers: its job kinds and when it was fsynced. */
function spyBatches(t: TestContext): Seen[] {
  const seen: Seen[] = [];
  const original = WriterThread.prototype.run;
  WriterThread.prototype.run = async function (this: WriterThread, jobs) {
    const r = await original.call(this, jobs);
    seen.push({ kinds: jobs.map((j) => j.kind).join('+'), fsync: r.fsync });
    return r;
  };
  t.after(() => { WriterThread.prototype.run = original; });
  return seen;
}

async function setup(t: TestContext, extra: Partial<Extract<DatabaseConfig, { kind: 'sqlite' }>>) {
  const db = await openDatabase({ kind: 'sqlite', path: join(tempDir(t), 'ledger.db'), writerThread: true, ...extra });
  t.after(() => db.close());
  const keys = await testKeys(t);
  const ledger = await ledgerOn(db, keys);
  t.after(() => ledger.close());
  return { ledger, keys };
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
  for (let n = 0; n < 200 && ledger.writerFailed === undefined; n++) await new Promise((r) => setTimeout(r, 10));
  assert.match(ledger.writerFailed ?? '', /WAL fsync failed after an early reply: injected/);
  assert.ok(errors.some((e) => e.code === 'ledger_writer_failed'), JSON.stringify(errors));
  // Every later write is refused, a new intent included (no side effect may follow an unsure WAL).
  await assert.rejects(ledger.append({ type: 'admin_note', decision: 'admin' }), (e) => e instanceof GateError && e.code === 'ledger_unavailable');
  await assert.rejects(ledger.recordIntent({ grant: makeGrant(keys) }, DISPATCH),
    (e) => e instanceof GateError && e.code === 'ledger_unavailable');
});
