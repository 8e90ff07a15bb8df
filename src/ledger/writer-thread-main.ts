// Runs inside the ledger writer thread (see writer-thread.ts): one connection, one batch at a time.
import { parentPort, workerData } from 'node:worker_threads';
import { GENESIS_HASH } from './chain.ts';
import { SqliteChainTx } from './chain-tx.ts';
import { openSqliteConnection, rawTransaction, withStatementCache } from './db.ts';
import { runBatch, type JobSpec } from './jobs.ts';
import type { Reply, WriterThreadOptions } from './writer-thread.ts';

const options = workerData as WriterThreadOptions;
const port = parentPort!;
const raw = withStatementCache(openSqliteConnection(options.path, options.busyTimeoutMs));
const transaction = <T>(fn: (tx: SqliteChainTx) => Promise<T>) => rawTransaction(raw, (r) => fn(new SqliteChainTx(r)));

// Batches are run strictly one after another, in arrival order.
let chain: Promise<void> = Promise.resolve();
port.on('message', (msg: { id: number; jobs: JobSpec[] }) => {
  chain = chain.then(async () => {
    let reply: Reply;
    try {
      const r = await runBatch(transaction, GENESIS_HASH, msg.jobs);
      reply = { id: msg.id, ok: true, outcomes: r.outcomes, events: r.events };
    } catch (err) {
      reply = { id: msg.id, ok: false, message: err instanceof Error ? err.message : String(err) };
    }
    port.postMessage(reply);
  });
});
