// Ledger.complete: the one-phase evidence of a run that could have no effect (a provider without
// I/O). Intent (consuming the grant, already resolved), receipt and final audit event in one
// transaction, with recordIntent's and finalize's checks, made durable as a finalization is.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { GateError } from '../../src/errors.ts';
import { jsonDigest, verifyReceipt, type AuditEvent } from '../../src/ledger/index.ts';
import {
  BACKENDS, count, failEventsOfTypeBoom, ledgerOn, makeGrant, makeReceipt, spyBatches, spyInline, tempDir, testKeys, writerFailure, isCode,
} from './helpers.ts';
import { join } from 'node:path';
import { CommitError, LedgerDatabase, openDatabase } from '../../src/ledger/index.ts';

const EXEC = { type: 'execute', decision: 'allow' as const, detail: { duration_ms: 3 } };

for (const backend of BACKENDS) {
  describe(`one-phase evidence: Ledger.complete (${backend.name})`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    test('writes the resolved intent, the receipt and the final event together, as two-phase leaves them', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      const receipt = makeReceipt(keys, grant);
      const done = await ledger.complete({ grant, receipt, auditEvent: EXEC });
      assert.match(done.intent_id, /^int_[0-9a-f-]{36}$/);
      assert.equal(done.receipt_id, receipt.receipt_id);
      assert.deepEqual(await ledger.getReceipt(receipt.receipt_id), receipt);
      assert.equal(verifyReceipt(receipt, keys.receiptJwks()), 'verified');
      const [ev] = await ledger.queryEvents({ limit: 1 }) as AuditEvent[];
      assert.equal(ev!.seq, done.event.seq);
      assert.equal(ev!.trace_id, grant.trace_id);
      assert.deepEqual(ev!.detail, { duration_ms: 3, intent_id: done.intent_id, receipt_id: receipt.receipt_id, receipt_digest: jsonDigest(receipt) });
      assert.equal(await count(db, 'execution_intents'), 1);
      assert.equal(await ledger.countUnresolvedIntents(), 0, 'a one-phase intent is never unresolved');
      const row = await db.db.selectFrom('execution_intents').selectAll().executeTakeFirstOrThrow();
      assert.equal(row.grant_id, grant.grant_id);
      assert.equal(row.receipt_id, receipt.receipt_id);
      assert.equal(row.resolved_at, row.created_at);
      assert.equal((await ledger.verify()).intact, true);
    });

    test('attack: a grant already consumed (by an intent or a one-phase run) is refused, nothing written', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      await ledger.complete({ grant, receipt: makeReceipt(keys, grant), auditEvent: EXEC });
      await assert.rejects(ledger.complete({ grant, receipt: makeReceipt(keys, grant), auditEvent: EXEC }), isCode('internal_error'));
      const g2 = makeGrant(keys);
      await ledger.recordIntent({ grant: g2 });
      await assert.rejects(ledger.complete({ grant: g2, receipt: makeReceipt(keys, g2), auditEvent: EXEC }), isCode('internal_error'));
      await assert.rejects(ledger.recordIntent({ grant }), isCode('internal_error'));
      assert.equal(await count(db, 'receipts'), 1);
      assert.equal(await count(db, 'audit_events'), 1);
      assert.equal(await count(db, 'execution_intents'), 2);
    });

    const refusals = [
      { name: 'receipt for another grant', mutate: (k: Awaited<ReturnType<typeof testKeys>>) => ({ receipt: makeReceipt(k, makeGrant(k)) }) },
      { name: 'receipt claiming another module digest', mutate: (k: Awaited<ReturnType<typeof testKeys>>, g: ReturnType<typeof makeGrant>) => ({ receipt: makeReceipt(k, g, { provider_module_digest: `sha256:${'ee'.repeat(32)}` }) }) },
      { name: 'receipt with a tampered body', mutate: (k: Awaited<ReturnType<typeof testKeys>>, g: ReturnType<typeof makeGrant>) => ({ receipt: { ...makeReceipt(k, g), failure_class: null, normalized_result: { kind: 'success' as const, summary: 'forged' } } }) },
      { name: 'grant with a tampered body', mutate: (_k: Awaited<ReturnType<typeof testKeys>>, g: ReturnType<typeof makeGrant>) => ({ grant: { ...g, request_hash: `sha256:${'dd'.repeat(32)}` } }) },
      { name: 'event on another trace than the receipt', mutate: () => ({ auditEvent: { type: 'execute', decision: 'allow' as const, trace_id: 'trc_other' } }) },
    ];
    for (const c of refusals) {
      test(`attack: refused (internal_error), nothing written: ${c.name}`, async (t) => {
        const db = await (await backend.fresh(t)).open();
        const keys = await testKeys(t);
        const ledger = await ledgerOn(db, keys);
        const grant = makeGrant(keys);
        const input = { grant, receipt: makeReceipt(keys, grant), auditEvent: EXEC, ...c.mutate(keys, grant) };
        await assert.rejects(ledger.complete(input), isCode('internal_error'));
        assert.equal(await count(db, 'receipts'), 0);
        assert.equal(await count(db, 'audit_events'), 0);
        assert.equal(await count(db, 'execution_intents'), 0);
      });
    }

    test('atomic: the final event failing in the database leaves no intent, no receipt (ledger_unavailable)', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      await failEventsOfTypeBoom(db);
      const grant = makeGrant(keys);
      await assert.rejects(ledger.complete({ grant, receipt: makeReceipt(keys, grant), auditEvent: { type: 'boom', decision: 'allow' } }), isCode('ledger_unavailable'));
      assert.equal(await count(db, 'execution_intents'), 0);
      assert.equal(await count(db, 'receipts'), 0);
      // The grant was not consumed: nothing was recorded.
      await ledger.complete({ grant, receipt: makeReceipt(keys, grant), auditEvent: EXEC });
      assert.equal(await count(db, 'receipts'), 1);
    });

    test('a closed database is ledger_unavailable', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      await db.close();
      await assert.rejects(ledger.complete({ grant, receipt: makeReceipt(keys, grant), auditEvent: EXEC }), isCode('ledger_unavailable'));
    });
  });
}

describe('one-phase evidence is made durable as a finalization is (ledger.receipt_fsync)', () => {
  async function setup(t: { after(fn: () => unknown): void }, inline: boolean, receiptFsync: 'after_reply' | 'before_reply', faultWalSync = false) {
    const db = await openDatabase({ kind: 'sqlite', path: join(tempDir(t), 'ledger.db'), writerThread: true, receiptFsync, faultWalSync });
    t.after(() => db.close());
    const keys = await testKeys(t);
    const ledger = await ledgerOn(db, keys, inline ? { inlineWhen: () => true } : {});
    return { ledger, keys };
  }

  for (const receiptFsync of ['after_reply', 'before_reply'] as const) {
    test(`${receiptFsync}, on the writer thread`, async (t) => {
      const seen = spyBatches(t);
      const { ledger, keys } = await setup(t, false, receiptFsync);
      const grant = makeGrant(keys);
      await ledger.complete({ grant, receipt: makeReceipt(keys, grant), auditEvent: EXEC });
      // An intent in the same batch (an effect may follow it) makes the whole batch fsync first.
      const g2 = makeGrant(keys);
      const g3 = makeGrant(keys);
      await Promise.all([ledger.complete({ grant: g2, receipt: makeReceipt(keys, g2), auditEvent: EXEC }), ledger.recordIntent({ grant: g3 })]);
      assert.deepEqual(seen, [{ kinds: 'complete', fsync: receiptFsync }, { kinds: 'complete+intent', fsync: 'before_reply' }]);
    });

    test(`${receiptFsync}, inline (a lone caller)`, async (t) => {
      const inline = spyInline(t);
      const { ledger, keys } = await setup(t, true, receiptFsync);
      const grant = makeGrant(keys);
      await ledger.complete({ grant, receipt: makeReceipt(keys, grant), auditEvent: EXEC });
      const late = receiptFsync === 'after_reply';
      assert.deepEqual(inline.txs.map((x) => x.synchronous), [late ? 'NORMAL' : 'FULL']);
      assert.equal(inline.syncs(), late ? 1 : 0, 'a WAL fsync right after an early answer, none after a FULL commit');
    });
  }

  test('a failed fsync after an early one-phase answer is fatal: every later write is refused', async (t) => {
    const { ledger, keys } = await setup(t, false, 'after_reply', true);
    const grant = makeGrant(keys);
    await ledger.complete({ grant, receipt: makeReceipt(keys, grant), auditEvent: EXEC });
    assert.match((await writerFailure(ledger)) ?? '', /WAL fsync failed after an early reply/);
    const g2 = makeGrant(keys);
    await assert.rejects(ledger.complete({ grant: g2, receipt: makeReceipt(keys, g2), auditEvent: EXEC }), isCode('ledger_unavailable'));
  });
});

describe('a failed one-phase commit says whether its outcome is known', () => {
  for (const [name, fault, unknown] of [
    ['a COMMIT that failed (CommitError): outcome unknown', () => new CommitError(new Error('reset')), true],
    ['a statement that failed before COMMIT: nothing recorded', () => new Error('disk I/O error'), false],
  ] as const) {
    test(name, async (t) => {
      const db = await openDatabase({ kind: 'sqlite', path: join(tempDir(t), 'ledger.db') });
      t.after(() => db.close());
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const orig = LedgerDatabase.prototype.sqliteTransaction;
      LedgerDatabase.prototype.sqliteTransaction = async function () { throw fault(); } as typeof orig;
      t.after(() => { LedgerDatabase.prototype.sqliteTransaction = orig; });
      const grant = makeGrant(keys);
      await assert.rejects(ledger.complete({ grant, receipt: makeReceipt(keys, grant), auditEvent: EXEC }), (e: unknown) => {
        assert.ok(e instanceof GateError && e.code === 'ledger_unavailable', String(e));
        assert.equal(e.extra?.outcome, unknown ? 'unknown' : undefined);
        return true;
      });
    });
  }
});
