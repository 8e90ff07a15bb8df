// Worker body of src/stores/wal-checkpointer.ts (plain JS: it needs no TypeScript loader). One
// connection per file; every `intervalMs` a PASSIVE checkpoint copies what it can of each WAL
// back into its database file, never waiting for a lock and never blocking a writer.
import { setInterval } from 'node:timers';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { paths, intervalMs, progress } = workerData;
// Per file, four float64 slots the gate reads for health and metrics (WalCheckpointer#health):
// time of the last checkpoint that ran (ms), WAL frames then, frames checkpointed, time of the last
// attempt (ms). Plain stores: a reader may see one checkpoint's figures mixed with the next's,
// which is good enough for monitoring and never used for a decision about data.
const slots = progress ? new Float64Array(progress) : null;
const dbs = paths.map((p) => {
  const db = new Database(p, { fileMustExist: true });
  db.pragma('busy_timeout = 0');
  db.pragma('wal_autocheckpoint = 0');
  // Checkpoints fsync the WAL before copying and the database file after (made explicit).
  db.pragma('synchronous = FULL');
  return db;
});
setInterval(() => {
  for (let i = 0; i < dbs.length; i++) {
    try {
      const now = Date.now();
      if (slots) slots[i * 4 + 3] = now;
      const [r] = dbs[i].pragma('wal_checkpoint(PASSIVE)');
      if (slots && r && r.busy === 0) {
        slots[i * 4 + 1] = r.log;
        slots[i * 4 + 2] = r.checkpointed;
        slots[i * 4] = now;
      }
    } catch (err) {
      // SQLITE_BUSY only means another checkpoint is running: try again next time.
      if (err && err.code === 'SQLITE_BUSY') continue;
      parentPort.postMessage({ path: paths[i], message: err instanceof Error ? err.message : String(err) });
    }
  }
}, intervalMs);
