// The database layer on both backends: other modules register migrations through the same kysely
// instance (applied once, in order, idempotently); evidence tables are append-only for the
// application; a database outage is ledger_unavailable (finalize: evidence_persistence_failed).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { openDatabase, type Migration } from '../../src/ledger/index.ts';
import { BACKENDS, currentPostgres, ledgerOn, makeGrant, makeReceipt, postgresBackend, sqliteBackend, tempDir, testKeys, isCode } from './helpers.ts';

for (const backend of BACKENDS) {
  describe(`database layer (${backend.name})`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    test('another module registers its migration on the shared instance; applied once, in name order', async (t) => {
      const fresh = await backend.fresh(t);
      const db = await fresh.open();
      const order: string[] = [];
      const approvals: Migration = {
        async up(trx, dialect) {
          order.push(`approvals:${dialect}`);
          await trx.schema.createTable('approvals').addColumn('approval_id', 'text', (c) => c.primaryKey()).addColumn('state', 'text', (c) => c.notNull()).execute();
        },
      };
      const approvals2: Migration = {
        async up(trx) {
          order.push('approvals2');
          await trx.schema.alterTable('approvals').addColumn('plan_hash', 'text').execute();
        },
      };
      db.registerMigration('approvals/0002_plan_hash', approvals2);
      db.registerMigration('approvals/0001_init', approvals);
      await ledgerOn(db, await testKeys(t)); // registers ledger/0001_init and migrates
      assert.deepEqual(order, [`approvals:${db.dialect}`, 'approvals2']);
      assert.deepEqual(await db.migrate(), []);
      // Typed access through the same kysely instance.
      const typed = db.db.withTables<{ approvals: { approval_id: string; state: string; plan_hash: string | null } }>();
      await typed.insertInto('approvals').values({ approval_id: 'apr_1', state: 'pending', plan_hash: null }).execute();
      assert.equal((await typed.selectFrom('approvals').selectAll().execute()).length, 1);
      // A restarted process (new connection) with the same registrations applies nothing.
      await db.close();
      const other = await fresh.open();
      other.registerMigration('approvals/0001_init', approvals);
      other.registerMigration('approvals/0002_plan_hash', approvals2);
      assert.deepEqual(await other.migrate(), []);
      assert.deepEqual(order, [`approvals:${db.dialect}`, 'approvals2']);
    });

    test('a failing migration applies nothing (one transaction) and is retried next time', async (t) => {
      const db = await (await backend.fresh(t)).open();
      let fail = true;
      db.registerMigration('budgets/0001_init', {
        async up(trx) {
          await trx.schema.createTable('budgets').addColumn('k', 'text', (c) => c.primaryKey()).execute();
          if (fail) throw new Error('half-way');
        },
      });
      await assert.rejects(db.migrate(), /half-way/);
      const tables = db.dialect === 'postgres'
        ? await sql<{ n: string }>`select table_name as n from information_schema.tables where table_name = 'budgets'`.execute(db.db)
        : await sql<{ n: string }>`select name as n from sqlite_master where type = 'table' and name = 'budgets'`.execute(db.db);
      assert.equal(tables.rows.length, 0);
      fail = false;
      assert.deepEqual(await db.migrate(), ['budgets/0001_init']);
    });

    const badNames = ['init', 'ledger/1_init', 'Ledger/0001_init', 'ledger/0001-init', '../0001_x'];
    for (const name of badNames) {
      test(`migration name refused: ${JSON.stringify(name)}`, async (t) => {
        const db = await (await backend.fresh(t)).open();
        assert.throws(() => db.registerMigration(name, { up: async () => undefined }), TypeError);
      });
    }

    test('the same migration name with a different body is a bug (TypeError)', async (t) => {
      const db = await (await backend.fresh(t)).open();
      db.registerMigration('x/0001_a', { up: async () => undefined });
      assert.throws(() => db.registerMigration('x/0001_a', { up: async () => undefined }), TypeError);
    });

    const appendOnly = [
      { name: 'UPDATE of an audit event', stmt: "update audit_events set principal = 'mallory'" },
      { name: 'DELETE of an audit event', stmt: 'delete from audit_events' },
      { name: 'UPDATE of a receipt', stmt: "update receipts set receipt_json = '{}'" },
      { name: 'DELETE of a checkpoint', stmt: 'delete from checkpoints' },
    ];
    for (const c of appendOnly) {
      test(`append-only: the application connection cannot do ${c.name}`, async (t) => {
        const db = await (await backend.fresh(t)).open();
        const keys = await testKeys(t);
        const ledger = await ledgerOn(db, keys);
        const grant = makeGrant(keys);
        const { intent_id } = await ledger.recordIntent({ grant });
        await ledger.finalize({ intentId: intent_id, receipt: makeReceipt(keys, grant), auditEvent: { type: 'execute', decision: 'allow' } });
        await ledger.checkpoint();
        await assert.rejects(sql.raw(c.stmt).execute(db.db), /append-only/);
        assert.equal((await ledger.verify()).intact, true);
      });
    }

    test('a closed database: every ledger call fails closed with its code', async (t) => {
      const fresh = await backend.fresh(t);
      const db = await openDatabase(fresh.config);
      const keys = await testKeys(t);
      const ledger = await ledgerOn(db, keys);
      const grant = makeGrant(keys);
      const { intent_id } = await ledger.recordIntent({ grant });
      await db.close();
      await assert.rejects(ledger.append({ type: 'x', decision: 'info' }), isCode('ledger_unavailable'));
      await assert.rejects(ledger.recordIntent({ grant: makeGrant(keys) }), isCode('ledger_unavailable'));
      await assert.rejects(ledger.finalize({ intentId: intent_id, receipt: makeReceipt(keys, grant), auditEvent: { type: 'execute', decision: 'allow' } }), isCode('evidence_persistence_failed'));
      await assert.rejects(ledger.queryEvents({}), isCode('ledger_unavailable'));
      await assert.rejects(ledger.verify(), isCode('ledger_unavailable'));
      await assert.rejects(ledger.checkpoint(), isCode('ledger_unavailable'));
      await assert.rejects(ledger.unresolvedIntents(), isCode('ledger_unavailable'));
      await assert.rejects(ledger.getReceipt('rcpt_01900000-0000-7000-8000-000000000000'), isCode('ledger_unavailable'));
      assert.equal(await db.ping(), false);
    });

    test('a closed ledger refuses new writes', async (t) => {
      const ledger = await ledgerOn(await (await backend.fresh(t)).open(), await testKeys(t));
      const pending = ledger.append({ type: 'x', decision: 'info' });
      await ledger.close();
      await pending; // queued before close: committed
      await assert.rejects(ledger.append({ type: 'y', decision: 'info' }), isCode('ledger_unavailable'));
    });

    const badEvents: Array<{ name: string; ev: Record<string, unknown> }> = [
      { name: 'unknown decision', ev: { type: 'x', decision: 'maybe' } },
      { name: 'missing type', ev: { decision: 'info' } },
      { name: 'NUL in principal (would be truncated by PostgreSQL)', ev: { type: 'x', decision: 'info', principal: 'a\u0000b' } },
      { name: 'lone surrogate in trace_id', ev: { type: 'x', decision: 'info', trace_id: 'a\ud800' } },
      { name: 'detail is an array', ev: { type: 'x', decision: 'info', detail: [1, 2] } },
      { name: 'detail with a function', ev: { type: 'x', decision: 'info', detail: { f: () => 1 } } },
      { name: 'detail with NaN', ev: { type: 'x', decision: 'info', detail: { n: Number.NaN } } },
      { name: 'detail with a bigint', ev: { type: 'x', decision: 'info', detail: { n: 1n } } },
      { name: 'detail with a Date object', ev: { type: 'x', decision: 'info', detail: { d: new Date(0) } } },
      { name: 'detail too large', ev: { type: 'x', decision: 'info', detail: { big: 'x'.repeat(300_000) } } },
      { name: 'type too long', ev: { type: 't'.repeat(200), decision: 'info' } },
    ];
    for (const c of badEvents) {
      test(`append refuses a malformed event with invalid_input: ${c.name}`, async (t) => {
        const ledger = await ledgerOn(await (await backend.fresh(t)).open(), await testKeys(t));
        await assert.rejects(ledger.append(c.ev as never), isCode('invalid_input'));
        assert.equal((await ledger.verify()).events_checked, 0);
      });
    }

    test('detail keeps NUL, unicode and a "__proto__" member exactly (hash-covered)', async (t) => {
      const ledger = await ledgerOn(await (await backend.fresh(t)).open(), await testKeys(t));
      const detail = JSON.parse('{"__proto__":{"x":1},"s":"a\\u0000b ☃ 𝄞","n":-0,"e":1e21}') as Record<string, unknown>;
      await ledger.append({ type: 'x', decision: 'info', detail });
      const [ev] = await ledger.queryEvents({});
      assert.equal(JSON.stringify(ev!.detail), '{"__proto__":{"x":1},"e":1e+21,"n":0,"s":"a\\u0000b ☃ 𝄞"}');
      assert.equal((await ledger.verify()).intact, true);
    });
  });
}

describe('SQLite specifics', () => {
  test('the ledger file is created 0600 and runs WAL with synchronous=FULL', async (t) => {
    const fresh = await sqliteBackend.fresh(t);
    const db = await fresh.open();
    await ledgerOn(db, await testKeys(t));
    assert.equal(fresh.config.kind, 'sqlite');
    const path = (fresh.config as { path: string }).path;
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const mode = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(db.db);
    assert.equal(mode.rows[0]!.journal_mode, 'wal');
    const sync = await sql<{ synchronous: number }>`pragma synchronous`.execute(db.db);
    assert.equal(sync.rows[0]!.synchronous, 2);
  });

  test('an unwritable location fails at open, not later', async (t) => {
    await assert.rejects(openDatabase({ kind: 'sqlite', path: join(tempDir(t), 'missing-dir', 'ledger.db') }));
  });
});

describe('PostgreSQL outage', { skip: postgresBackend.skip }, () => {
  const backend = postgresBackend;
  before(() => backend.start());
  after(() => backend.stop());

  test('server down: ledger_unavailable (and evidence_persistence_failed for finalize); back up: works again', async (t) => {
    const fresh = await backend.fresh(t);
    const keys = await testKeys(t);
    const ledger = await ledgerOn(await fresh.open(), keys);
    const grant = makeGrant(keys);
    const { intent_id } = await ledger.recordIntent({ grant });
    await ledger.append({ type: 'before', decision: 'info' });
    const server = currentPostgres()!;
    await server.pause();
    try {
      await assert.rejects(ledger.append({ type: 'during', decision: 'info' }), isCode('ledger_unavailable'));
      await assert.rejects(ledger.finalize({ intentId: intent_id, receipt: makeReceipt(keys, grant), auditEvent: { type: 'execute', decision: 'allow' } }), isCode('evidence_persistence_failed'));
      await assert.rejects(ledger.verify(), isCode('ledger_unavailable'));
    } finally {
      await server.start();
    }
    await ledger.append({ type: 'after', decision: 'info' });
    const v = await ledger.verify();
    assert.equal(v.intact, true);
    assert.deepEqual((await ledger.queryEvents({})).map((e) => e.type), ['after', 'before']);
    assert.equal(await ledger.countUnresolvedIntents(), 1);
  });
});
