// Runs inside the ledger writer thread (see writer-thread.ts): one connection, one batch at a time,
// in arrival order. This connection never checkpoints the WAL (src/stores/wal-checkpointer.ts does).
import { fdatasyncSync, fstatSync, openSync, closeSync, statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { GENESIS_HASH } from './chain.ts';
import { SqliteChainTx } from './chain-tx.ts';
import { openSqliteConnection, rawTransaction, withStatementCache } from './db.ts';
import { runBatch, type JobSpec } from './jobs.ts';
import type { Reply, WriterThreadConfig } from './writer-thread.ts';

const options = workerData as WriterThreadConfig;
const port = parentPort!;
const conn = openSqliteConnection(options.path, options.busyTimeoutMs, { autoCheckpoint: false });

const raw = withStatementCache(conn);
const transaction = <T>(fn: (tx: SqliteChainTx) => Promise<T>) => rawTransaction(raw, (r) => fn(new SqliteChainTx(r)));
const walPath = `${options.path}-wal`;
let walFd = -1;
let mode: 'FULL' | 'NORMAL' = 'FULL';
const synchronous = (m: 'FULL' | 'NORMAL') => {
  if (m !== mode) {
    conn.pragma(`synchronous = ${m}`);
    mode = m;
  }
};
/**
 * fdatasync of the WAL file: what synchronous=FULL does at COMMIT, done after the reply. The
 * descriptor is checked to still name the WAL file (same inode) before every sync.
 */
const syncWal = () => {
  if (walFd >= 0 && fstatSync(walFd).ino !== statSync(walPath).ino) {
    closeSync(walFd);
    walFd = -1;
  }
  if (walFd < 0) walFd = openSync(walPath, 'r');
  fdatasyncSync(walFd);
};

let chain: Promise<void> = Promise.resolve();
port.on('message', (msg: { id: number; jobs: JobSpec[] }) => {
  chain = chain.then(async () => {
    // A batch of finalizations only may be acknowledged before its fsync (receiptFsync).
    const late = options.receiptFsync === 'after_reply' && msg.jobs.every((j) => j.kind === 'finalize');
    let reply: Reply;
    try {
      synchronous(late ? 'NORMAL' : 'FULL');
      const r = await runBatch(transaction, GENESIS_HASH, msg.jobs);
      reply = { id: msg.id, ok: true, outcomes: r.outcomes, events: r.events };
    } catch (err) {
      reply = { id: msg.id, ok: false, message: err instanceof Error ? err.message : String(err) };
    }
    port.postMessage(reply);
    if (late && reply.ok) {
      try {
        syncWal();
      } catch (err) {
        // The acknowledged finalizations may not be durable: say so, and stop. The gate fails
        // what is in flight and starts a new thread for the next batch (whose FULL commit
        // fsyncs the WAL again, or fails closed if the disk is gone).
        port.postMessage({ syncFailed: err instanceof Error ? err.message : String(err) });
        process.exit(1);
      }
    }
  });
});
