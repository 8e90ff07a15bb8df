// Execution intents and finalization on both backends: intent + consumed grant + event in one
// transaction; finalize = receipt + event + resolution in one transaction (nothing partial on a
// failure mid-way); unresolved intents survive a crash; receipts come back exactly as signed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { jsonDigest, verifyReceipt, signGrant, type AuditEvent } from '../../src/ledger/index.ts';
import {
  BACKENDS, count, failEventsOfTypeBoom, grantClaims, ledgerOn, makeGrant, makeReceipt, testKeys, isCode,
} from './helpers.ts';

async function lastEvent(ledger: { queryEvents(f: object): Promise<AuditEvent[]> }): Promise<AuditEvent> {
  const [e] = await ledger.queryEvents({ limit: 1 });
  assert.ok(e);
  return e;
}

for (const backend of BACKENDS) {
  describe(`execution intents (${backend.name})`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    test('recordIntent stores the intent, the signed grant and its audit event in one commit', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      const rec = await ledger.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
      assert.match(rec.intent_id, /^int_[0-9a-f-]{36}$/);
      assert.ok(rec.event);
      const ev = await lastEvent(ledger);
      assert.equal(ev.seq, rec.event.seq);
      // The event is bound to the grant: top-level fields from the grant, digest in the detail.
      assert.equal(ev.trace_id, grant.trace_id);
      assert.equal(ev.principal, grant.principal);
      assert.deepEqual(ev.detail, { intent_id: rec.intent_id, grant_id: grant.grant_id, grant_digest: jsonDigest(grant) });
      const [intent] = await ledger.unresolvedIntents();
      assert.equal(intent?.intent_id, rec.intent_id);
      assert.deepEqual(intent?.grant, grant);
      assert.equal(intent?.resolved_at, null);
    });

    const refusals = [
      {
        name: 'grant consumed twice (replayed grant) -> internal_error, nothing written',
        run: async (l: Awaited<ReturnType<typeof ledgerOn>>, keys: Awaited<ReturnType<typeof testKeys>>) => {
          const grant = makeGrant(keys);
          await l.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
          return () => l.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
        },
        intents: 1, events: 1,
      },
      {
        name: 'grant with a forged signature -> internal_error',
        run: async (l: Awaited<ReturnType<typeof ledgerOn>>, keys: Awaited<ReturnType<typeof testKeys>>) => {
          const grant = { ...makeGrant(keys), principal: 'mallory' };
          return () => l.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
        },
        intents: 0, events: 0,
      },
      {
        name: 'grant signed with the receipt key (wrong purpose) -> internal_error',
        run: async (l: Awaited<ReturnType<typeof ledgerOn>>, keys: Awaited<ReturnType<typeof testKeys>>) => {
          const grant = signGrant(grantClaims(), { ...keys.receipt, purpose: 'grant' });
          return () => l.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
        },
        intents: 0, events: 0,
      },
      {
        name: 'event claiming another principal than the grant -> internal_error',
        run: async (l: Awaited<ReturnType<typeof ledgerOn>>, keys: Awaited<ReturnType<typeof testKeys>>) => {
          const grant = makeGrant(keys);
          return () => l.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow', principal: 'someone-else' });
        },
        intents: 0, events: 0,
      },
      {
        name: 'event detail trying to override the bound grant digest -> internal_error',
        run: async (l: Awaited<ReturnType<typeof ledgerOn>>, keys: Awaited<ReturnType<typeof testKeys>>) => {
          const grant = makeGrant(keys);
          return () => l.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow', detail: { grant_digest: 'sha256:00' } });
        },
        intents: 0, events: 0,
      },
    ];
    for (const c of refusals) {
      test(`recordIntent refuses: ${c.name}`, async (t) => {
        const db = await (await backend.fresh(t)).open();
        const keys = await testKeys(t);
        const ledger = await ledgerOn(db, keys);
        const attempt = await c.run(ledger, keys);
        await assert.rejects(attempt(), isCode('internal_error'));
        assert.equal(await count(db, 'execution_intents'), c.intents);
        assert.equal(await count(db, 'audit_events'), c.events);
        assert.equal((await ledger.verify()).intact, true);
      });
    }

    test('intent and its audit event are atomic: a failing event insert leaves no intent', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      await failEventsOfTypeBoom(db);
      await assert.rejects(ledger.recordIntent({ grant: makeGrant(keys) }, { type: 'boom', decision: 'allow' }), isCode('ledger_unavailable'));
      assert.equal(await count(db, 'execution_intents'), 0);
      assert.equal(await count(db, 'audit_events'), 0);
      // The same grant can still be consumed once the failure is gone (nothing half-consumed it).
      const grant = makeGrant(keys);
      await assert.rejects(ledger.recordIntent({ grant }, { type: 'boom', decision: 'allow' }), isCode('ledger_unavailable'));
      await ledger.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
      assert.equal(await count(db, 'execution_intents'), 1);
    });

    test('finalize stores the receipt, binds it into the chain and resolves the intent', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      const { intent_id } = await ledger.recordIntent({ grant });
      const receipt = makeReceipt(keys, grant);
      const fin = await ledger.finalize({ intentId: intent_id, receipt, auditEvent: { type: 'execute', decision: 'allow', detail: { duration_ms: 12 } } });
      assert.equal(fin.receipt_id, receipt.receipt_id);
      const stored = await ledger.getReceipt(receipt.receipt_id);
      assert.deepEqual(stored, receipt);
      assert.equal(verifyReceipt(stored, keys.receiptJwks()), 'verified');
      const ev = await lastEvent(ledger);
      assert.equal(ev.seq, fin.event.seq);
      assert.equal(ev.action_id, grant.action_id);
      assert.deepEqual(ev.detail, { duration_ms: 12, intent_id, receipt_id: receipt.receipt_id, receipt_digest: jsonDigest(receipt) });
      assert.deepEqual(await ledger.unresolvedIntents(), []);
      assert.equal(await ledger.countUnresolvedIntents(), 0);
      assert.equal((await ledger.verify()).intact, true);
    });

    const finalizeRefusals = [
      { name: 'unknown intent', mutate: () => ({ intentId: 'int_01900000-0000-7000-8000-000000000000' }) },
      { name: 'receipt for another grant (receipt swapped between intents)', mutate: (k: Awaited<ReturnType<typeof testKeys>>) => ({ receipt: makeReceipt(k, makeGrant(k)) }) },
      { name: 'receipt claiming another module digest', mutate: (k: Awaited<ReturnType<typeof testKeys>>, g: ReturnType<typeof makeGrant>) => ({ receipt: makeReceipt(k, g, { provider_module_digest: `sha256:${'ee'.repeat(32)}` }) }) },
      { name: 'receipt with a tampered body (signature_invalid)', mutate: (k: Awaited<ReturnType<typeof testKeys>>, g: ReturnType<typeof makeGrant>) => ({ receipt: { ...makeReceipt(k, g), failure_class: null, normalized_result: { kind: 'success' as const, summary: 'forged' } } }) },
      { name: 'unsigned receipt', mutate: (k: Awaited<ReturnType<typeof testKeys>>, g: ReturnType<typeof makeGrant>) => {
        const { receipt_signature: _s, ...r } = makeReceipt(k, g);
        return { receipt: r as never };
      } },
      { name: 'event on another trace than the receipt', mutate: () => ({ auditEvent: { type: 'execute', decision: 'allow' as const, trace_id: 'trc_other' } }) },
    ];
    for (const c of finalizeRefusals) {
      test(`finalize refuses (evidence_persistence_failed, nothing written): ${c.name}`, async (t) => {
        const db = await (await backend.fresh(t)).open();
        const keys = await testKeys(t);
        const ledger = await ledgerOn(db, keys);
        const grant = makeGrant(keys);
        const { intent_id } = await ledger.recordIntent({ grant });
        const input = { intentId: intent_id, receipt: makeReceipt(keys, grant), auditEvent: { type: 'execute', decision: 'allow' as const }, ...c.mutate(keys, grant) };
        await assert.rejects(ledger.finalize(input), isCode('evidence_persistence_failed'));
        assert.equal(await count(db, 'receipts'), 0);
        assert.equal(await count(db, 'audit_events'), 0);
        assert.equal(await ledger.countUnresolvedIntents(), 1);
      });
    }

    test('finalize twice for one intent: the second is refused, the first stands', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      const { intent_id } = await ledger.recordIntent({ grant });
      const first = makeReceipt(keys, grant);
      const second = makeReceipt(keys, grant, { normalized_result: { kind: 'timeout', reason: 'late' }, failure_class: 'timeout' });
      const [a, b] = await Promise.allSettled([
        ledger.finalize({ intentId: intent_id, receipt: first, auditEvent: { type: 'execute', decision: 'allow' } }),
        ledger.finalize({ intentId: intent_id, receipt: second, auditEvent: { type: 'execute', decision: 'error' } }),
      ]);
      assert.equal(a.status, 'fulfilled');
      assert.equal(b.status, 'rejected');
      assert.equal((b as PromiseRejectedResult).reason.code, 'evidence_persistence_failed');
      assert.equal(await count(db, 'receipts'), 1);
      assert.deepEqual(await ledger.getReceipt(first.receipt_id), first);
      assert.equal(await ledger.getReceipt(second.receipt_id), null);
    });

    test('finalize is atomic: the final event failing in the database leaves no receipt and the intent unresolved', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      const { intent_id } = await ledger.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
      await failEventsOfTypeBoom(db);
      const receipt = makeReceipt(keys, grant);
      // The intent UPDATE and the receipt INSERT run first; the event INSERT fails after them.
      await assert.rejects(ledger.finalize({ intentId: intent_id, receipt, auditEvent: { type: 'boom', decision: 'allow' } }), isCode('evidence_persistence_failed'));
      assert.equal(await count(db, 'receipts'), 0);
      assert.equal(await count(db, 'audit_events'), 1);
      const [intent] = await ledger.unresolvedIntents();
      assert.equal(intent?.intent_id, intent_id);
      assert.equal(intent?.receipt_id, null);
      assert.equal((await ledger.verify()).intact, true);
      // Retrying with a working event completes it exactly once.
      await ledger.finalize({ intentId: intent_id, receipt, auditEvent: { type: 'execute', decision: 'allow' } });
      assert.equal(await count(db, 'receipts'), 1);
      assert.equal(await ledger.countUnresolvedIntents(), 0);
    });

    test('after a crash (process gone between dispatch and finalize) the intent is reported unresolved', async (t) => {
      const fresh = await backend.fresh(t);
      const keys = await testKeys(t);
      const dbBefore = await fresh.open();
      const before = await ledgerOn(dbBefore, keys);
      const g1 = makeGrant(keys);
      const g2 = makeGrant(keys);
      const done = await before.recordIntent({ grant: g1 });
      await before.finalize({ intentId: done.intent_id, receipt: makeReceipt(keys, g1), auditEvent: { type: 'execute', decision: 'allow' } });
      const crashed = await before.recordIntent({ grant: g2 }, { type: 'execute_dispatch', decision: 'allow' });
      // "Restart": the old connection is gone; a new ledger on a new connection to the same database.
      await dbBefore.close();
      const afterCrash = await ledgerOn(await fresh.open(), keys);
      const unresolved = await afterCrash.unresolvedIntents();
      assert.deepEqual(unresolved.map((i) => i.intent_id), [crashed.intent_id]);
      assert.equal(unresolved[0]!.grant_id, g2.grant_id);
      assert.equal(unresolved[0]!.request_hash, g2.request_hash);
      assert.equal(await afterCrash.countUnresolvedIntents(), 1);
    });

    test('getReceipt: unknown and malformed ids are null (never a query with junk)', async (t) => {
      const ledger = await ledgerOn(await (await backend.fresh(t)).open(), await testKeys(t));
      for (const id of ['rcpt_01900000-0000-7000-8000-000000000000', 'rcpt_x', "rcpt_' or 1=1 --", '', 'grant_01900000-0000-7000-8000-000000000000']) {
        assert.equal(await ledger.getReceipt(id), null, id);
      }
    });

    test('a broken clock: append is clock_error, finalize is still only evidence_persistence_failed', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      let broken = false;
      const ledger = await ledgerOn(db, keys, { clock: { now: () => (broken ? Number.NaN : Date.parse('2026-11-22T13:00:00Z')) } });
      const grant = makeGrant(keys);
      const { intent_id } = await ledger.recordIntent({ grant });
      broken = true;
      await assert.rejects(ledger.append({ type: 'x', decision: 'info' }), isCode('clock_error'));
      await assert.rejects(ledger.finalize({ intentId: intent_id, receipt: makeReceipt(keys, grant), auditEvent: { type: 'execute', decision: 'allow' } }), isCode('evidence_persistence_failed'));
      assert.equal(await count(db, 'receipts'), 0);
      assert.equal(await ledger.countUnresolvedIntents(), 1);
    });

    test('a corrupted stored grant refuses only its own finalize; the batch commits the rest', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      const { intent_id } = await ledger.recordIntent({ grant });
      await sql`update execution_intents set grant_json = '{broken' where intent_id = ${intent_id}`.execute(db.db);
      const [a, f, b] = await Promise.allSettled([
        ledger.append({ type: 'a', decision: 'info' }),
        ledger.finalize({ intentId: intent_id, receipt: makeReceipt(keys, grant), auditEvent: { type: 'execute', decision: 'allow' } }),
        ledger.append({ type: 'b', decision: 'info' }),
      ]);
      assert.equal(a.status, 'fulfilled');
      assert.equal(b.status, 'fulfilled');
      assert.equal(f.status, 'rejected');
      assert.equal((f as PromiseRejectedResult).reason.code, 'evidence_persistence_failed');
      assert.equal(await count(db, 'receipts'), 0);
      assert.equal((await ledger.verify()).events_checked, 2);
    });

    test('a batch with one refused job commits the others (group commit isolation)', async (t) => {
      const db = await (await backend.fresh(t)).open();
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      await ledger.recordIntent({ grant });
      const results = await Promise.allSettled([
        ledger.append({ type: 'a', decision: 'info' }),
        ledger.recordIntent({ grant }, { type: 'dup', decision: 'allow' }),
        ledger.append({ type: 'b', decision: 'info' }),
        ledger.recordIntent({ grant: makeGrant(keys) }, { type: 'ok', decision: 'allow' }),
      ]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      const types = (await ledger.queryEvents({})).map((e) => e.type).reverse();
      assert.deepEqual(types, ['a', 'b', 'ok']);
      assert.equal((await ledger.verify()).intact, true);
    });
  });
}
