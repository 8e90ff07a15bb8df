// WAL checkpoints off the commit path: a connection opened with autoCheckpoint false never
// checkpoints on COMMIT (its WAL only grows), and the WalCheckpointer thread copies the WAL back
// into the database file on its timer; a file it cannot open is reported, not a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { openStateDb } from '../../src/stores/sqlite.ts';
import { WalCheckpointer } from '../../src/stores/wal-checkpointer.ts';

type Db = ReturnType<typeof openStateDb>;

function fill(db: Db, rows: number): void {
  const ins = db.prepare('INSERT INTO kv (k, v) VALUES (?, ?)');
  for (let i = 0; i < rows; i++) ins.run(`k-${i}-${Math.random()}`, 'v'.repeat(2000));
}

test('WAL: without autocheckpoint commits never checkpoint; the checkpointer thread copies the WAL into the database', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'walck-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'state.db');
  const db = openStateDb(path, { autoCheckpoint: false });
  t.after(() => db.close());
  const sizeBefore = statSync(path).size;
  fill(db, 3000); // ~1500+ pages: past the 1000-page threshold at which a COMMIT would checkpoint
  assert.equal(statSync(path).size, sizeBefore, 'a COMMIT copied pages into the database file');
  assert.ok(statSync(`${path}-wal`).size > 4_000_000, 'the WAL holds the commits');

  const errors: string[] = [];
  const ck = new WalCheckpointer({ paths: [path], intervalMs: 20, onError: (m) => errors.push(m) });
  t.after(() => ck.close());
  for (let i = 0; i < 250 && statSync(path).size < sizeBefore + 4_000_000; i++) await delay(20);
  assert.ok(statSync(path).size > sizeBefore + 4_000_000, 'the checkpointer copied the WAL into the database file');
  assert.deepEqual(errors, []);
  assert.equal(ck.running, true);
  await ck.close();
  assert.equal(ck.running, false);
});

test('WAL checkpointer: a file it cannot open is reported through onError (no crash), and close stops it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'walck-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const errors: string[] = [];
  const ck = new WalCheckpointer({ paths: [join(dir, 'missing.db')], intervalMs: 20, onError: (m) => errors.push(m) });
  for (let i = 0; i < 100 && errors.length === 0; i++) await delay(20);
  await ck.close();
  assert.ok(errors.length >= 1 && /checkpointer thread failed/.test(errors[0]!), errors.join('\n'));
  assert.equal(ck.running, false);
});
