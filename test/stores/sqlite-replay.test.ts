// The embedded jti replay store (src/stores/sqlite.ts, SqliteReplayStore): the marks asked for
// in one event-loop turn share a transaction, and each caller is answered after its commit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { GateError } from '../../src/errors.ts';
import { openStateDb, SqliteReplayStore } from '../../src/stores/sqlite.ts';
import { tempDir } from '../helpers/temp.ts';

const TTL = 66_000;

function store(t: { after(fn: () => unknown): void }, now: () => number = Date.now) {
  const path = join(tempDir(t), 'state.db');
  const db = openStateDb(path);
  t.after(() => db.close());
  return { db, path, replay: new SqliteReplayStore(db, now) };
}

test('attack: the same jti twice in one turn is fresh once and a replay once; later replays are refused', async (t) => {
  const { replay } = store(t);
  const first = await Promise.all([replay.markUsed('k:a', TTL), replay.markUsed('k:a', TTL), replay.markUsed('k:b', TTL)]);
  assert.deepEqual(first, [true, false, true]);
  assert.deepEqual(await Promise.all([replay.markUsed('k:a', TTL), replay.markUsed('k:b', TTL)]), [false, false]);
});

test('each caller is answered only once its mark is committed (another connection sees it)', async (t) => {
  const { path, replay } = store(t);
  const reader = new Database(path, { readonly: true });
  t.after(() => reader.close());
  const count = reader.prepare('SELECT count(*) AS n FROM replay WHERE k = ?');
  const seen = await Promise.all(Array.from({ length: 8 }, (_, i) => replay.markUsed(`k:${i}`, TTL).then((fresh) => ({
    fresh, committed: (count.get(`k:${i}`) as { n: number }).n,
  }))));
  assert.deepEqual(seen, new Array(8).fill({ fresh: true, committed: 1 }));
});

test('marks asked for in one turn share one commit: far fewer WAL frames than one transaction each', async (t) => {
  const frames = async (concurrent: boolean) => {
    const { db, replay } = store(t);
    const walFrames = () => (db.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>)[0]!.log;
    const start = walFrames();
    if (concurrent) await Promise.all(Array.from({ length: 16 }, (_, i) => replay.markUsed(`k:${i}`, TTL)));
    else for (let i = 0; i < 16; i++) await replay.markUsed(`k:${i}`, TTL);
    return walFrames() - start;
  };
  const one = await frames(true);
  const each = await frames(false);
  assert.ok(one * 4 <= each, `16 marks in one turn wrote ${one} WAL frames, one per turn ${each}`);
});

test('an expired mark may be used again; expiry counts from the clock reading taken when the mark was asked for', async (t) => {
  let now = Date.UTC(2026, 0, 1);
  const { replay } = store(t, () => now);
  assert.equal(await replay.markUsed('k:x', 1000), true);
  now += 999;
  assert.equal(await replay.markUsed('k:x', 1000), false);
  now += 2;
  assert.equal(await replay.markUsed('k:x', 1000), true);
});

test('fail closed: a batch that cannot be committed refuses every mark in it (replay_cache_unavailable)', async (t) => {
  const { db, replay } = store(t);
  const marks = [replay.markUsed('k:1', TTL), replay.markUsed('k:2', TTL)];
  db.close();
  for (const r of await Promise.allSettled(marks)) {
    assert.equal(r.status, 'rejected');
    assert.ok(r.reason instanceof GateError && r.reason.code === 'replay_cache_unavailable', String(r.status === 'rejected' ? r.reason : ''));
  }
});

test('fail closed: an unusable clock refuses the mark (replay_cache_unavailable)', async (t) => {
  const { replay } = store(t, () => {
    throw new Error('clock gone');
  });
  await assert.rejects(replay.markUsed('k:1', TTL), (e: unknown) => e instanceof GateError && e.code === 'replay_cache_unavailable');
});

test('the caller\'s clock reading, when given, is the one the mark is judged on (the store reads no clock of its own)', async (t) => {
  const { replay } = store(t, () => {
    throw new Error('the store must not read its own clock when given one');
  });
  const t0 = Date.UTC(2026, 0, 1);
  assert.equal(await replay.markUsed('k:c', 1000, t0), true);
  assert.equal(await replay.markUsed('k:c', 1000, t0 + 999), false);
  assert.equal(await replay.markUsed('k:c', 1000, t0 + 1001), true);
});

test('attack: a reading that is not a finite time is refused, and does not purge the live marks', async (t) => {
  const { replay } = store(t);
  assert.equal(await replay.markUsed('k:live', TTL), true);
  await assert.rejects(replay.markUsed('k:other', TTL, Infinity), (e: unknown) => e instanceof GateError && e.code === 'replay_cache_unavailable');
  await assert.rejects(replay.markUsed('k:other', TTL, Number.NaN), (e: unknown) => e instanceof GateError && e.code === 'replay_cache_unavailable');
  assert.equal(await replay.markUsed('k:live', TTL), false, 'the live mark survived');
});
