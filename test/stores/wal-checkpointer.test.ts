// WAL checkpoints off the commit path: a connection opened for a checkpoint thread does not
// checkpoint on COMMIT below WAL_RESTART_PAGES, the WalCheckpointer thread copies the WAL back into
// the database file on its timer, the WAL stays bounded under steady writes, and a file the thread
// cannot open is reported, not a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { openStateDb } from '../../src/stores/sqlite.ts';
import { WAL_KEPT_UP_FRAMES, WAL_MAX_HEALTHY_BYTES, WAL_RESTART_PAGES, WAL_SIZE_LIMIT_BYTES, WAL_STALE_SECONDS, WalCheckpointer, walProblem } from '../../src/stores/wal-checkpointer.ts';
import { tempDir } from '../helpers/temp.ts';

type Db = ReturnType<typeof openStateDb>;

/** A state database in a temp dir, opened as the gate opens it beside a checkpointer thread. */
function stateDbIn(t: { after(fn: () => unknown): void }): { path: string; db: Db } {
  const path = join(tempDir(t, 'walck-'), 'state.db');
  const db = openStateDb(path, { checkpointThread: true });
  t.after(() => db.close());
  return { path, db };
}

/** A state database, its checkpointer thread (20 ms) and a second connection to hold a read snapshot with. */
function checkpointedWithReader(t: { after(fn: () => unknown): void }) {
  const { path, db } = stateDbIn(t);
  const ck = new WalCheckpointer({ paths: [path], intervalMs: 20 });
  t.after(() => ck.close());
  const reader = openStateDb(path, { checkpointThread: true });
  t.after(() => reader.close());
  return { path, db, ck, reader };
}

/** Opens a read transaction: the WAL frames written after this cannot be checkpointed until COMMIT. */
function holdSnapshot(reader: Db): void {
  reader.exec('BEGIN');
  reader.prepare('SELECT count(*) FROM kv').get();
}

function fill(db: Db, rows: number): void {
  const ins = db.prepare('INSERT INTO kv (k, v) VALUES (?, ?)');
  for (let i = 0; i < rows; i++) ins.run(`k-${i}-${Math.random()}`, 'v'.repeat(2000));
}

test('WAL: commits below WAL_RESTART_PAGES never checkpoint; the checkpointer thread copies the WAL into the database', async (t) => {
  const { path, db } = stateDbIn(t);
  const sizeBefore = statSync(path).size;
  fill(db, 700); // ≈ 1500–2000 frames: past SQLite's default 1000-page threshold, below WAL_RESTART_PAGES
  assert.equal(statSync(path).size, sizeBefore, 'a COMMIT copied pages into the database file');
  assert.ok(statSync(`${path}-wal`).size > 1000 * 4120, 'the WAL holds more than 1000 frames');

  const errors: string[] = [];
  const ck = new WalCheckpointer({ paths: [path], intervalMs: 20, onError: (m) => errors.push(m) });
  t.after(() => ck.close());
  for (let i = 0; i < 250 && statSync(path).size < sizeBefore + 1_000_000; i++) await delay(20);
  assert.ok(statSync(path).size > sizeBefore + 1_000_000, 'the checkpointer copied the WAL into the database file');
  assert.deepEqual(errors, []);
  assert.equal(ck.running, true);
  await ck.close();
  assert.equal(ck.running, false);
});

test('WAL checkpointer: a file it cannot open is reported through onError (no crash), and close stops it', async (t) => {
  const errors: string[] = [];
  const ck = new WalCheckpointer({ paths: [join(tempDir(t), 'missing.db')], intervalMs: 20, onError: (m) => errors.push(m) });
  for (let i = 0; i < 100 && errors.length === 0; i++) await delay(20);
  await ck.close();
  assert.ok(errors.length >= 1 && /checkpointer thread failed/.test(errors[0]!), errors.join('\n'));
  assert.equal(ck.running, false);
});

test('WAL checkpointer: a thread that keeps dying is restarted less and less often (delay doubling from restartDelayMs)', async (t) => {
  const failures: number[] = [];
  const ck = new WalCheckpointer({
    paths: [join(tempDir(t), 'missing.db')], intervalMs: 20, restartDelayMs: 1000,
    onError: (m) => { if (/thread failed/.test(m)) failures.push(Date.now()); },
  });
  t.after(() => ck.close());
  // The time a dead thread stays down (from its exit to its restart) is the restart delay itself:
  // 1, then 2 s (a fixed delay: equal downtimes). Measured by watching `running`, so a slow thread
  // start-up on a loaded machine (a few hundred ms, varying) does not enter the figures, as it did
  // when the gaps between failures were compared.
  const downtimes: number[] = [];
  let downSince: number | undefined;
  const end = Date.now() + 5500;
  while (Date.now() < end) {
    const now = Date.now();
    if (!ck.running && downSince === undefined) downSince = now;
    if (ck.running && downSince !== undefined) {
      downtimes.push(now - downSince);
      downSince = undefined;
    }
    await delay(5);
  }
  await ck.close();
  assert.ok(failures.length >= 2 && downtimes.length >= 2, `failures ${failures.length}, downtimes ${downtimes.join(', ')} ms`);
  assert.ok(downtimes[0]! >= 950, `first restart after ${downtimes[0]} ms, not the 1 s restartDelayMs`);
  for (let i = 1; i < downtimes.length; i++) assert.ok(downtimes[i]! - downtimes[i - 1]! >= 500, `downtimes ${downtimes.join(', ')} ms should grow by the doubled delay`);
});

/** Commits small rows for `ms` (paced: 10 commits per timer tick, a few thousand per second, about a busy gate's rate); returns the largest WAL size sampled. */
async function steadyWrites(db: Db, path: string, ms: number): Promise<number> {
  const ins = db.prepare('INSERT INTO kv (k, v) VALUES (?, ?)');
  const end = Date.now() + ms;
  let max = 0;
  for (let i = 0; Date.now() < end; i++) {
    ins.run(`s-${i}-${Math.random()}`, 'v'.repeat(300));
    if (i % 10 === 0) {
      max = Math.max(max, statSync(`${path}-wal`).size);
      await new Promise((r) => setTimeout(r, 1));
    }
  }
  return max;
}

test('WAL checkpointer: under steady writes the WAL stays bounded (the COMMIT past WAL_RESTART_PAGES completes the checkpoint and the WAL restarts)', async (t) => {
  const { path, db } = stateDbIn(t);
  const errors: string[] = [];
  const ck = new WalCheckpointer({ paths: [path], intervalMs: 10, onError: (m) => errors.push(m) });
  t.after(() => ck.close());
  const max = await steadyWrites(db, path, 5000);
  // WAL_RESTART_PAGES is 16 MiB of frames (4 KiB + 24 bytes each). More piles up past it while the
  // commit's checkpoint waits for the thread's (busy): allow twice the threshold (unbounded: 350 MB).
  assert.ok(max < 2 * WAL_RESTART_PAGES * 4120, `WAL reached ${max} bytes`);
  assert.ok(max > WAL_RESTART_PAGES * 4096, `the writes never reached the restart threshold (${max} bytes): the test proves nothing`);
  assert.deepEqual(errors, []);
});

test('WAL health: after a checkpoint the thread reports its time and the frames left; the WAL size is the file on disk', async (t) => {
  const { path, db } = stateDbIn(t);
  const ck = new WalCheckpointer({ paths: [path], intervalMs: 20 });
  t.after(() => ck.close());
  assert.equal(ck.health()[0]!.checkpointer_running, true);
  fill(db, 50);
  let h = ck.health()[0]!;
  for (let i = 0; i < 250 && h.last_checkpoint_age_seconds === null; i++) {
    await delay(20);
    h = ck.health()[0]!;
  }
  assert.notEqual(h.last_checkpoint_age_seconds, null, 'no checkpoint reported');
  assert.ok(h.last_checkpoint_age_seconds! < 5, JSON.stringify(h));
  assert.equal(h.wal_bytes, statSync(`${path}-wal`).size);
  assert.ok(h.wal_bytes > 0);
  // Nothing holds a read snapshot: every frame was copied.
  assert.equal(h.frames_pending, 0, JSON.stringify(h));
  assert.equal(walProblem(h), null);

  await ck.close();
  const closed = ck.health()[0]!;
  assert.equal(closed.checkpointer_running, false);
  assert.match(walProblem(closed)!, /not running/);
});

test('WAL health: a reader holding an old snapshot shows as pending frames, and once far behind the checkpoint age stops falling until it lets go', async (t) => {
  const { db, ck, reader } = checkpointedWithReader(t);
  const ageAfter = async (ms: number) => {
    await delay(ms);
    return ck.health()[0]!;
  };
  fill(db, 10);
  let start = ck.health()[0]!;
  for (let i = 0; i < 250 && start.last_checkpoint_age_seconds === null; i++) start = await ageAfter(20);
  assert.notEqual(start.last_checkpoint_age_seconds, null, 'no checkpoint kept up before the test');
  holdSnapshot(reader);
  // Far more than WAL_KEPT_UP_FRAMES frames behind the reader's snapshot.
  fill(db, WAL_KEPT_UP_FRAMES + 500);
  let h = ck.health()[0]!;
  for (let i = 0; i < 250 && !(h.frames_pending! > WAL_KEPT_UP_FRAMES); i++) h = await ageAfter(20);
  assert.ok(h.frames_pending! > WAL_KEPT_UP_FRAMES, JSON.stringify(h));
  // Checkpoints keep running (pending is refreshed) but none keeps up: the age grows.
  const stuck = await ageAfter(600);
  assert.ok(stuck.last_checkpoint_age_seconds! >= 0.5, JSON.stringify(stuck));
  assert.ok(stuck.frames_pending! > WAL_KEPT_UP_FRAMES, JSON.stringify(stuck));
  // Injected clock: the same state 31 s on is a problem.
  assert.match(walProblem(ck.health(Date.now() + (WAL_STALE_SECONDS + 1) * 1000)[0]!)!, /no checkpoint has kept up for \d+ s/);
  reader.exec('COMMIT');
  let after = ck.health()[0]!;
  for (let i = 0; i < 250 && !(after.last_checkpoint_age_seconds! < 0.3 && after.frames_pending === 0); i++) after = await ageAfter(20);
  assert.ok(after.last_checkpoint_age_seconds! < 0.3, JSON.stringify(after));
  assert.equal(after.frames_pending, 0);
  assert.equal(walProblem(after), null);
});

test('WAL: a file that grew behind a held snapshot is cut back to WAL_SIZE_LIMIT_BYTES when the WAL starts over', async (t) => {
  const { path, db, ck, reader } = checkpointedWithReader(t);
  holdSnapshot(reader);
  // Two rows of 2 KB per 4 KiB page: past the limit with room to spare.
  fill(db, Math.ceil((WAL_SIZE_LIMIT_BYTES * 1.5) / 2048));
  const grown = statSync(`${path}-wal`).size;
  assert.ok(grown > WAL_SIZE_LIMIT_BYTES, `WAL ${grown} bytes`);
  reader.exec('COMMIT');
  // The checkpointer copies everything back; the next write transaction starts the WAL over.
  for (let i = 0; i < 250 && ck.health()[0]!.frames_pending !== 0; i++) await delay(20);
  assert.equal(ck.health()[0]!.frames_pending, 0);
  let size = grown;
  for (let i = 0; i < 100 && size > WAL_SIZE_LIMIT_BYTES; i++) {
    fill(db, 5);
    await delay(30);
    size = statSync(`${path}-wal`).size;
  }
  assert.ok(size <= WAL_SIZE_LIMIT_BYTES, `WAL still ${size} bytes (limit ${WAL_SIZE_LIMIT_BYTES})`);
  assert.equal(ck.health()[0]!.wal_bytes, size);
});

test('WAL health: stale checkpoints and an oversized WAL are problems; a thread that never checkpoints is stale from its start', async (t) => {
  const ok = { wal_bytes: 4096, checkpointer_running: true, last_checkpoint_age_seconds: 0.2, frames_pending: 0 };
  assert.equal(walProblem(ok), null);
  assert.match(walProblem({ ...ok, last_checkpoint_age_seconds: WAL_STALE_SECONDS + 1 })!, /no checkpoint has kept up for 31 s/);
  assert.match(walProblem({ ...ok, wal_bytes: WAL_MAX_HEALTHY_BYTES + 1 })!, /WAL is \d+ bytes/);
  assert.equal(walProblem({ ...ok, wal_bytes: WAL_MAX_HEALTHY_BYTES }), null);

  // The thread cannot open this file, so it never completes a checkpoint.
  const ck = new WalCheckpointer({ paths: [join(tempDir(t), 'missing.db')], intervalMs: 20, restartDelayMs: 60_000, onError: () => {} });
  t.after(() => ck.close());
  const fresh = ck.health()[0]!;
  assert.equal(fresh.last_checkpoint_age_seconds, null, 'young: no verdict yet');
  assert.equal(fresh.wal_bytes, 0);
  const later = ck.health(Date.now() + (WAL_STALE_SECONDS + 5) * 1000)[0]!;
  assert.ok(later.last_checkpoint_age_seconds! > WAL_STALE_SECONDS, JSON.stringify(later));
  assert.notEqual(walProblem(later), null);
});
