// ledger/0003_no_receipt_trace_index on both backends: a ledger written under 0001 + 0002 loses
// the unused receipts_trace_id_idx and nothing else; its evidence is untouched and still verifies,
// receipts are still found by id, and a fresh ledger (all migrations) has no such index either.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger, LEDGER_MIGRATIONS } from '../../src/ledger/index.ts';
import { evidenceRows, indexNames, makeGrant, makeReceipt, postgresBackend, sqliteBackend, testKeys, tickingClock, type Backend } from './helpers.ts';

const NAME = 'ledger/0003_no_receipt_trace_index';

for (const backend of [sqliteBackend, postgresBackend] as Backend[]) {
  describe(`${NAME} (${backend.name})`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    test('drops only the receipts trace index; the evidence is unchanged and the ledger keeps working', async (t) => {
      const fresh = await backend.fresh(t);
      const db = await fresh.open();
      const keys = await testKeys(t);
      for (const n of ['ledger/0001_init', 'ledger/0002_lean']) db.registerMigration(n, LEDGER_MIGRATIONS[n]!);
      assert.deepEqual(await db.migrate(), ['ledger/0001_init', 'ledger/0002_lean']);
      const old = new Ledger({ database: db, keys, clock: tickingClock() });
      const grants = [makeGrant(keys, { trace_id: 'trc_first' }), makeGrant(keys, { trace_id: 'trc_second' })];
      const receipts = [];
      for (const g of grants) {
        const r = makeReceipt(keys, g);
        receipts.push(r);
        await old.complete({ grant: g, receipt: r, auditEvent: { type: 'execute', decision: 'allow', trace_id: g.trace_id } });
      }
      const beforeIdx = await indexNames(db);
      assert.ok(beforeIdx.includes('receipts_trace_id_idx'), `0001 creates it: ${beforeIdx.join(', ')}`);
      const beforeRows = await evidenceRows(db);

      db.registerMigration(NAME, LEDGER_MIGRATIONS[NAME]!);
      assert.deepEqual(await db.migrate(), [NAME]);
      assert.deepEqual(await db.migrate(), []);

      assert.deepEqual(await indexNames(db), beforeIdx.filter((n) => n !== 'receipts_trace_id_idx'));
      assert.deepEqual(await evidenceRows(db), beforeRows);
      const ledger = new Ledger({ database: db, keys, clock: tickingClock('2026-11-22T14:00:00.000Z') });
      assert.equal((await ledger.verify()).intact, true);
      for (const r of receipts) assert.equal((await ledger.getReceipt(r.receipt_id))?.receipt_id, r.receipt_id);
      assert.equal((await ledger.queryEvents({ trace_id: grants[0]!.trace_id })).length, 1);
      // The unique checks that guard evidence are constraints, not this index: still enforced.
      const g = makeGrant(keys);
      await ledger.complete({ grant: g, receipt: makeReceipt(keys, g), auditEvent: { type: 'execute', decision: 'allow' } });
      await assert.rejects(ledger.complete({ grant: g, receipt: makeReceipt(keys, g), auditEvent: { type: 'execute', decision: 'allow' } }));
      assert.equal((await ledger.verify()).events_checked, 3);
    });

    test('a new ledger (every migration) has no receipts trace index', async (t) => {
      const fresh = await backend.fresh(t);
      const db = await fresh.open();
      for (const [n, m] of Object.entries(LEDGER_MIGRATIONS)) db.registerMigration(n, m);
      assert.deepEqual(await db.migrate(), Object.keys(LEDGER_MIGRATIONS));
      const idx = await indexNames(db);
      assert.ok(!idx.includes('receipts_trace_id_idx'), idx.join(', '));
      assert.ok(idx.includes('audit_events_trace_id_idx'), idx.join(', '));
    });
  });
}
