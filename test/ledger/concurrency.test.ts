// Several gate processes on one database: two real worker processes, and two Ledger instances with
// separate pools in one process (PostgreSQL), append interleaved and keep one unbroken chain; a
// grant is consumed once across instances; concurrent start-ups migrate once.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { openDatabase, openLedger, type AppendResult, type Ledger } from '../../src/ledger/index.ts';
import { BACKENDS, count, ledgerOn, makeGrant, makeReceipt, postgresBackend, sqliteBackend, testKeys } from './helpers.ts';

const WORKER = join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures', 'append-worker.ts');

interface Worker {
  ready: Promise<void>;
  go(): void;
  done: Promise<{ label: string; results: AppendResult[] }>;
}

function startWorker(args: object): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(args)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += String(d); });
  const lines = createInterface({ input: child.stdout });
  let onReady!: () => void;
  const ready = new Promise<void>((r) => { onReady = r; });
  let last = '';
  lines.on('line', (l) => {
    if (l === 'ready') onReady();
    else last = l;
  });
  const done = new Promise<{ label: string; results: AppendResult[] }>((resolve, reject) => {
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`worker exited ${code}: ${stderr}`));
      else resolve(JSON.parse(last) as { label: string; results: AppendResult[] });
    });
  });
  return { ready: Promise.race([ready, done.then(() => undefined)]), go: () => child.stdin.end('go\n'), done };
}

for (const backend of BACKENDS) {
  describe(`two gate processes on one ${backend.name} database`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    test('two worker processes appending 100 each, interleaved, keep one unbroken chain of 200', async (t) => {
      const fresh = await backend.fresh(t);
      const keys = await testKeys(t);
      const workers = ['p1', 'p2'].map((label) => startWorker({ config: fresh.config, keysDir: keys.dir, count: 100, concurrency: 4, pauseMs: backend.name.startsWith('sqlite') ? 60 : 3, label }));
      await Promise.all(workers.map((w) => w.ready));
      for (const w of workers) w.go();
      const outputs = await Promise.all(workers.map((w) => w.done));
      const seqs = outputs.flatMap((o) => o.results.map((r) => r.seq)).sort((x, y) => x - y);
      assert.deepEqual(seqs, Array.from({ length: 200 }, (_, i) => i + 1));
      // Interleaved, not one after the other: each process's seqs are not one contiguous block.
      for (const o of outputs) {
        const mine = o.results.map((r) => r.seq).sort((x, y) => x - y);
        assert.ok(mine.at(-1)! - mine[0]! + 1 > mine.length, `${o.label} ran alone: ${mine[0]}..${mine.at(-1)}`);
      }
      const db = await fresh.open();
      const ledger = await ledgerOn(db, keys);
      const v = await ledger.verify();
      assert.equal(v.intact, true, JSON.stringify(v));
      assert.equal(v.events_checked, 200);
      assert.equal(await count(db, 'portcullis_migrations', "name = 'ledger/0001_init'"), 1);
    });
  });
}

describe('one SQLite file, one connection per process', () => {
  test('opening the same SQLite ledger twice in one process is refused (it would deadlock)', async (t) => {
    const fresh = await sqliteBackend.fresh(t);
    const db = await fresh.open();
    await assert.rejects(openDatabase(fresh.config), /already open in this process/);
    await db.close();
    const again = await openDatabase(fresh.config);
    await again.close();
  });
});

for (const backend of [postgresBackend]) {
  describe(`two gate instances (two pools) in one process on one ${backend.name} database`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    for (const groupCommit of [true, false]) {
      test(`200 interleaved appends from two instances keep one unbroken chain (group commit ${groupCommit ? 'on' : 'off'})`, async (t) => {
        const fresh = await backend.fresh(t);
        const keys = await testKeys(t);
        const a = await ledgerOn(await fresh.open(), keys, { groupCommit });
        const b = await ledgerOn(await fresh.open(), keys, { groupCommit });
        const pending: Array<Promise<AppendResult>> = [];
        for (let i = 0; i < 100; i++) {
          pending.push(a.append({ type: 'execute', decision: 'allow', principal: 'a', detail: { i } }));
          pending.push(b.append({ type: 'execute', decision: 'allow', principal: 'b', detail: { i } }));
        }
        const results = await Promise.all(pending);
        const seqs = results.map((r) => r.seq).sort((x, y) => x - y);
        assert.deepEqual(seqs, Array.from({ length: 200 }, (_, i) => i + 1));
        // Each instance sees the other's events in its own chain walk.
        for (const l of [a, b]) {
          const v = await l.verify();
          assert.equal(v.intact, true, JSON.stringify(v));
          assert.equal(v.events_checked, 200);
        }
        const stored = await a.queryEvents({ limit: 1000 });
        assert.deepEqual(new Set(stored.map((e) => e.event_id)), new Set(results.map((r) => r.event_id)));
        assert.equal(stored.filter((e) => e.principal === 'a').length, 100);
        // Both instances checkpoint; checkpoints from either verify in the other.
        await a.append({ type: 'x', decision: 'info' });
        await a.checkpoint();
        await b.append({ type: 'y', decision: 'info' });
        await b.checkpoint();
        const v = await a.verify();
        assert.equal(v.intact, true);
        assert.equal(v.checkpoints_checked, 2);
      });
    }

    test('intents, finalizations and appends from two instances interleave in one chain', async (t) => {
      const fresh = await backend.fresh(t);
      const keys = await testKeys(t);
      const instances = [await ledgerOn(await fresh.open(), keys), await ledgerOn(await fresh.open(), keys)];
      await Promise.all(Array.from({ length: 40 }, async (_, i) => {
        const l = instances[i % 2]!;
        const grant = makeGrant(keys, { trace_id: `trc_${i}` });
        const { intent_id } = await l.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
        await l.append({ type: 'noise', decision: 'info' });
        await instances[(i + 1) % 2]!.finalize({ intentId: intent_id, receipt: makeReceipt(keys, grant), auditEvent: { type: 'execute', decision: 'allow' } });
      }));
      const v = await instances[0]!.verify();
      assert.equal(v.intact, true);
      assert.equal(v.events_checked, 120);
      assert.equal(await instances[1]!.countUnresolvedIntents(), 0);
    });

    test('the same grant offered to two instances at once is consumed exactly once', async (t) => {
      const fresh = await backend.fresh(t);
      const keys = await testKeys(t);
      const db = await fresh.open();
      const a = await ledgerOn(db, keys);
      const b = await ledgerOn(await fresh.open(), keys);
      for (let round = 0; round < 10; round++) {
        const grant = makeGrant(keys);
        const r = await Promise.allSettled([a.recordIntent({ grant }), b.recordIntent({ grant })]);
        assert.equal(r.filter((x) => x.status === 'fulfilled').length, 1, `round ${round}`);
        const rejected = r.find((x) => x.status === 'rejected') as PromiseRejectedResult;
        assert.equal(rejected.reason.code, 'internal_error');
      }
      assert.equal(await count(db, 'execution_intents'), 10);
    });

    test('two instances starting at once on an empty database migrate exactly once', async (t) => {
      const fresh = await backend.fresh(t);
      const keys = await testKeys(t);
      const dbs = await Promise.all([fresh.open(), fresh.open(), fresh.open()]);
      const ledgers: Ledger[] = await Promise.all(dbs.map((database) => openLedger({ database, keys })));
      assert.equal(await count(dbs[0]!, 'portcullis_migrations', "name = 'ledger/0001_init'"), 1);
      await ledgers[0]!.append({ type: 'x', decision: 'info' });
      assert.equal((await ledgers[2]!.verify()).events_checked, 1);
    });
  });
}
