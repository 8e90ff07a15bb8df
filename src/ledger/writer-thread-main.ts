// Runs inside the ledger's worker threads (see writer-thread.ts), each on its own connection: the
// writer (one batch at a time, in arrival order) or, with role 'checkpoint', the thread that
// computes signed ledger checkpoints. A WalCheckpointer thread checkpoints the WAL itself.
import { parentPort, workerData } from 'node:worker_threads';
import { GENESIS_HASH } from './chain.ts';
import { SqliteChainTx } from './chain-tx.ts';
import { CommitError, openSqliteConnection, rawTransaction, withStatementCache } from './db.ts';
import { receiptsOnly, runBatch, type JobSpec } from './jobs.ts';
import { WalSync } from './wal-sync.ts';
import type { CheckpointReply, CheckpointRequest, Reply, ThreadData } from './writer-thread.ts';
import { sign as cryptoSign } from 'node:crypto';
import { Kysely, SqliteDialect } from 'kysely';
import { GateError } from '../errors.ts';
import { PublicKeySet } from '../keys/key-set.ts';
import { signNextCheckpoint } from './checkpoint-sign.ts';
import type { LedgerTables } from './schema.ts';

const options = workerData as ThreadData;
const port = parentPort!;
const conn = openSqliteConnection(options.path, options.busyTimeoutMs, { checkpointThread: true });

if (options.role === 'checkpoint') {
  // The checkpoint thread: signed ledger checkpoints on its own connection, one at a time.
  const db = new Kysely<LedgerTables>({ dialect: new SqliteDialect({ database: withStatementCache(conn) }) });
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (m: CheckpointRequest) => {
    queue = queue.then(async () => {
      let reply: CheckpointReply;
      try {
        const signing = { kid: m.kid, sign: (data: Uint8Array) => cryptoSign(null, data, m.key) };
        const checkpoint = await signNextCheckpoint(db, { signing, verify: new PublicKeySet(m.jwks) }, m.ts, { page: 1000 });
        reply = { id: m.id, ok: true, checkpoint };
      } catch (err) {
        reply = { id: m.id, ok: false, code: err instanceof GateError ? err.code : null, message: err instanceof Error ? err.message : String(err) };
      }
      port.postMessage(reply);
    });
  });
} else {
  runWriter();
}

/** The writer thread: batches in arrival order, fsynced before or after the reply (receiptFsync). */
function runWriter(): void {

  const raw = withStatementCache(conn);
  const transaction = <T>(fn: (tx: SqliteChainTx) => Promise<T>) => rawTransaction(raw, (r) => fn(new SqliteChainTx(r)));
  const wal = new WalSync(`${options.path}-wal`, options.faultWalSync === true);
  let mode: 'FULL' | 'NORMAL' = 'FULL';
  const synchronous = (m: 'FULL' | 'NORMAL') => {
    if (m !== mode) {
      conn.pragma(`synchronous = ${m}`);
      mode = m;
    }
  };

  let chain: Promise<void> = Promise.resolve();
  port.on('message', (msg: { id: number; jobs: JobSpec[] } | { close: true }) => {
    if ('close' in msg) {
      // Everything queued before (batches and their fsyncs) has finished once this runs.
      chain = chain.then(() => {
        wal.close();
        conn.close();
        port.postMessage({ closed: true });
      });
      return;
    }
    chain = chain.then(async () => {
      // A batch of receipts only may be acknowledged before its fsync (receiptFsync).
      const late = options.receiptFsync === 'after_reply' && receiptsOnly(msg.jobs);
      let reply: Reply;
      try {
        synchronous(late ? 'NORMAL' : 'FULL');
        if (late) wal.open();
        const r = await runBatch(transaction, GENESIS_HASH, msg.jobs);
        reply = { id: msg.id, ok: true, outcomes: r.outcomes, events: r.events, fsync: late ? 'after_reply' : 'before_reply' };
      } catch (err) {
        reply = { id: msg.id, ok: false, message: err instanceof Error ? err.message : String(err), unknown: err instanceof CommitError };
      }
      port.postMessage(reply);
      if (late && reply.ok) {
        try {
          wal.syncNow();
          port.postMessage({ synced: msg.id });
        } catch (err) {
          // The acknowledged finalizations may not be durable, and a later commit would be appended
          // after frames the disk may have lost (Linux reports a writeback error once): say so and
          // stop. The gate's ledger then refuses every write until a restart (writer-thread.ts).
          port.postMessage({ syncFailed: err instanceof Error ? err.message : String(err) });
          process.exit(1);
        }
      }
    });
  });
}
