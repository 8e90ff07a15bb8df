// Worker body of src/stores/wal-checkpointer.ts (plain JS: it needs no TypeScript loader). One
// connection per file; every `intervalMs` a PASSIVE checkpoint copies what it can of each WAL
// back into its database file, never waiting for a lock and never blocking a writer.
import { setInterval } from 'node:timers';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { paths, intervalMs, progress, keptUpFrames, journalSizeLimit } = workerData;
// Per file, three float64 slots the gate reads for health and metrics (WalCheckpointer#health):
// [0] when a checkpoint last ran (ms), [1] the frames it left uncopied (a reader's snapshot still
// needs them, or they were committed while it ran), [2] when one last kept up, i.e. left at most
// `keptUpFrames` uncopied (ms). Plain stores, each figure in one slot: a reader may see one
// checkpoint's time beside the previous one's backlog, which is good enough for monitoring and
// never used for a decision about data.
const slots = progress ? new Float64Array(progress) : null;
const dbs = paths.map((p) => {
  const db = new Database(p, { fileMustExist: true });
  db.pragma('busy_timeout = 0');
  db.pragma('wal_autocheckpoint = 0');
  // Checkpoints fsync the WAL before copying and the database file after (made explicit).
  db.pragma('synchronous = FULL');
  db.pragma(`journal_size_limit = ${journalSizeLimit}`);
  return db;
});
setInterval(() => {
  for (let i = 0; i < dbs.length; i++) {
    try {
      const now = Date.now();
      const [r] = dbs[i].pragma('wal_checkpoint(PASSIVE)');
      // log = -1: the file is not in WAL mode, nothing was checkpointed (not a healthy reading).
      if (slots && r && r.busy === 0 && r.log >= 0) {
        const pending = Math.max(0, r.log - r.checkpointed);
        slots[i * 3 + 1] = pending;
        slots[i * 3] = now;
        if (pending <= keptUpFrames) slots[i * 3 + 2] = now;
      }
    } catch (err) {
      // SQLITE_BUSY only means another checkpoint is running: try again next time.
      if (err && err.code === 'SQLITE_BUSY') continue;
      parentPort.postMessage({ path: paths[i], message: err instanceof Error ? err.message : String(err) });
    }
  }
}, intervalMs);
