// ledger/0002_lean on a ledger written under ledger/0001_init, on both backends: the evidence is
// kept exactly (the chain, the receipts, the unresolved intents), the redundant uniqueness checks
// are gone, every guard that protects evidence still refuses (fork, duplicate seq, a grant consumed
// twice, a receipt for an unknown intent, updates and deletes), and the ledger keeps appending.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { Ledger, LEDGER_MIGRATIONS, type LedgerDatabase } from '../../src/ledger/index.ts';
import { evidenceRows, indexNames, makeGrant, makeReceipt, postgresBackend, sqliteBackend, tableRows, testKeys, tickingClock, type Backend } from './helpers.ts';

/** Unique constraints/indexes per table, as column lists (SQLite: index_list; PostgreSQL: pg_constraint). */
async function uniques(db: LedgerDatabase, table: string): Promise<string[]> {
  if (db.dialect === 'postgres') {
    const r = await sql<{ cols: string }>`select string_agg(a.attname, ',' order by a.attname) as cols
      from pg_constraint c join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any(c.conkey)
      where c.conrelid = ${table}::regclass and c.contype in ('u', 'p') group by c.oid`.execute(db.db);
    return r.rows.map((x) => x.cols).sort();
  }
  const list = await sql<{ name: string; unique: number; origin: string }>`select * from pragma_index_list(${table})`.execute(db.db);
  const out: string[] = [];
  for (const ix of list.rows.filter((x) => x.unique === 1)) {
    const cols = await sql<{ name: string }>`select name from pragma_index_info(${ix.name})`.execute(db.db);
    out.push(cols.rows.map((c) => c.name).sort().join(','));
  }
  // An INTEGER PRIMARY KEY is the rowid itself: it has no index, but it is the table's key.
  const pk = await sql<{ name: string; type: string; pk: number }>`select * from pragma_table_info(${table})`.execute(db.db);
  for (const c of pk.rows) if (c.pk === 1 && c.type.toLowerCase() === 'integer') out.push(`${c.name} (rowid)`);
  return out.sort();
}

const refusedByDb = async (p: Promise<unknown>) => assert.rejects(p, (err: unknown) => err instanceof Error);

for (const backend of [sqliteBackend, postgresBackend] as Backend[]) {
  describe(`ledger/0002_lean (${backend.name})`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    test('a 0001 ledger keeps its evidence, loses only the redundant checks, and keeps every guard', async (t) => {
      const fresh = await backend.fresh(t);
      const db = await fresh.open();
      const keys = await testKeys(t);
      db.registerMigration('ledger/0001_init', LEDGER_MIGRATIONS['ledger/0001_init']!);
      assert.deepEqual(await db.migrate(), ['ledger/0001_init']);
      // Written by the real ledger under the old schema: finalized calls, one unresolved intent.
      const old = new Ledger({ database: db, keys, clock: tickingClock() });
      const grants = [makeGrant(keys), makeGrant(keys), makeGrant(keys)];
      const intents = [];
      for (const g of grants) intents.push(await old.recordIntent({ grant: g }, { type: 'execution_intent', decision: 'info' }));
      for (const [i, g] of grants.slice(0, 2).entries()) {
        await old.finalize({ intentId: intents[i]!.intent_id, receipt: makeReceipt(keys, g), auditEvent: { type: 'execute', decision: 'allow' } });
      }
      await old.append({ type: 'admin', decision: 'admin', operator: 'op' });
      const before = await evidenceRows(db);
      assert.equal(before.events.length, 6);
      assert.equal((await old.verify()).intact, true);

      db.registerMigration('ledger/0002_lean', LEDGER_MIGRATIONS['ledger/0002_lean']!);
      assert.deepEqual(await db.migrate(), ['ledger/0002_lean']);
      assert.deepEqual(await db.migrate(), []);

      // The evidence, row for row.
      assert.deepEqual(await evidenceRows(db), before);
      const ledger = new Ledger({ database: db, keys, clock: tickingClock('2026-11-22T14:00:00.000Z') });
      const verified = await ledger.verify();
      assert.equal(verified.intact, true, JSON.stringify(verified));
      assert.deepEqual((await ledger.unresolvedIntents()).map((i) => i.intent_id), [intents[2]!.intent_id]);
      assert.equal((await ledger.queryEvents({ decision: 'allow' })).length, 2);

      // Only the redundant uniqueness checks are gone.
      const key = db.dialect === 'sqlite' ? 'seq (rowid)' : 'seq';
      assert.deepEqual(await uniques(db, 'audit_events'), [key, 'prev_hash'].sort());
      assert.deepEqual(await uniques(db, 'execution_intents'), ['grant_id', 'intent_id']);
      assert.deepEqual(await uniques(db, 'receipts'), ['event_seq', 'intent_id', 'receipt_id']);
      if (db.dialect === 'sqlite') {
        assert.equal((await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(db.db)).rows[0]!.foreign_keys, 1, 'foreign keys back on');
        assert.deepEqual(await indexNames(db), [
          'audit_events_action_id_idx', 'audit_events_decision_idx', 'audit_events_principal_idx', 'audit_events_session_id_idx',
          'audit_events_trace_id_idx', 'audit_events_ts_idx', 'execution_intents_unresolved_idx', 'receipts_trace_id_idx',
        ]);
      }

      // Every guard that protects evidence still refuses, in the database itself.
      const last = before.events.at(-1) as { seq: number; hash: string };
      const forged = { ...(before.events[0] as object), event_id: 'evt_forged', seq: last.seq + 1 };
      const insert = (row: object) => db.db.insertInto('audit_events').values(row as never).execute();
      await refusedByDb(insert(forged)); // fork: a second successor of the genesis hash
      await refusedByDb(insert({ ...forged, seq: last.seq, prev_hash: last.hash })); // duplicate seq
      await refusedByDb(insert({ ...forged, seq: 0, prev_hash: 'x'.repeat(64) })); // seq must be > 0
      await refusedByDb(sql`update audit_events set decision = 'deny' where seq = 1`.execute(db.db));
      await refusedByDb(sql`delete from receipts`.execute(db.db));
      const intentRow = before.intents[0] as Record<string, unknown>;
      await refusedByDb(db.db.insertInto('execution_intents').values({ ...intentRow, intent_id: 'int_other' } as never).execute()); // grant consumed twice
      const receiptRow = before.receipts[0] as Record<string, unknown>;
      await refusedByDb(db.db.insertInto('receipts').values({ ...receiptRow, receipt_id: 'rcpt_x', intent_id: 'int_unknown', event_seq: 999 } as never).execute());
      await refusedByDb(db.db.insertInto('receipts').values({ ...receiptRow, receipt_id: 'rcpt_x' } as never).execute()); // one receipt per intent
      await refusedByDb(ledger.recordIntent({ grant: grants[0]! })); // the ledger's own refusal of a consumed grant

      // And it keeps appending on the rebuilt tables.
      const g = makeGrant(keys);
      const { intent_id } = await ledger.recordIntent({ grant: g }, { type: 'execution_intent', decision: 'info' });
      await ledger.finalize({ intentId: intent_id, receipt: makeReceipt(keys, g), auditEvent: { type: 'execute', decision: 'allow' } });
      const after = await ledger.verify();
      assert.equal(after.intact, true);
      assert.equal(after.events_checked, 8);
    });
  });
}

describe('ledger/0002_lean on SQLite: refusals', () => {
  test('an event without an integer seq (accepted by the old table) stops the migration; nothing changes', async (t) => {
    const db = await (await sqliteBackend.fresh(t)).open();
    db.registerMigration('ledger/0001_init', LEDGER_MIGRATIONS['ledger/0001_init']!);
    await db.migrate();
    await sql`insert into audit_events (seq, event_id, ts, type, decision, prev_hash, hash)
      values (null, 'evt_a', '2026-11-22T13:00:00.000Z', 'x', 'info', ${'0'.repeat(64)}, ${'1'.repeat(64)})`.execute(db.db);
    db.registerMigration('ledger/0002_lean', LEDGER_MIGRATIONS['ledger/0002_lean']!);
    await assert.rejects(db.migrate(), /no integer seq/);
    const applied = await sql<{ name: string }>`select name from portcullis_migrations order by name`.execute(db.db);
    assert.deepEqual(applied.rows.map((r) => r.name), ['ledger/0001_init']);
    const row = await sql<{ seq: unknown }>`select seq from audit_events`.execute(db.db);
    assert.deepEqual(row.rows, [{ seq: null }]);
    assert.equal((await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(db.db)).rows[0]!.foreign_keys, 1);
  });

  test('a write issued while migrate() runs is still checked against the foreign keys', async (t) => {
    const db = await (await sqliteBackend.fresh(t)).open();
    const keys = await testKeys(t);
    for (const [name, m] of Object.entries(LEDGER_MIGRATIONS)) db.registerMigration(name, m);
    await db.migrate();
    const ledger = new Ledger({ database: db, keys, clock: tickingClock() });
    const g = makeGrant(keys);
    const { intent_id } = await ledger.recordIntent({ grant: g });
    await ledger.finalize({ intentId: intent_id, receipt: makeReceipt(keys, g), auditEvent: { type: 'execute', decision: 'allow' } });
    const receipt = (await tableRows(db, 'receipts', 'receipt_id'))[0] as Record<string, unknown>;
    const migrating = db.migrate();
    const racing = db.db.insertInto('receipts').values({ ...receipt, receipt_id: 'rcpt_racing', intent_id: 'int_missing', event_seq: 42 } as never).execute();
    assert.deepEqual(await migrating, []);
    await assert.rejects(racing, /FOREIGN KEY/);
    assert.deepEqual((await sql`pragma foreign_key_check`.execute(db.db)).rows, []);
  });
});

