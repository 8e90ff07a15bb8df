// The SQLite writer thread: runs the ledger's write batches (src/ledger/jobs.ts) on its own
// connection, so their SQLite work, chain hashing and fsync leave the gate's event loop. The
// gate's Ledger still validates, signs and batches; this thread only executes one batch at a
// time, in one transaction, and answers with each job's outcome. A WalCheckpointer thread copies
// the WAL into the database file on a timer, so no commit ever waits for a checkpoint.
//
// Failure model: if the thread dies (or cannot open the database) every batch in flight fails
// as a database failure (ledger_unavailable / evidence_persistence_failed: the COMMIT outcome is
// unknown, nothing is retried), and the next batch starts a fresh thread. A failed fsync after an
// early reply (receiptFsync 'after_reply') is reported through `onError` and ends the thread.
import { Worker } from 'node:worker_threads';
import type { JobOutcome, JobSpec } from './jobs.ts';
import type { WriterThreadConfig } from './db.ts';
import { WalCheckpointer } from '../stores/wal-checkpointer.ts';

export type { WriterThreadConfig };

interface Request {
  id: number;
  jobs: readonly JobSpec[];
}

export type Reply =
  | { id: number; ok: true; outcomes: JobOutcome[]; events: number }
  | { id: number; ok: false; message: string };

/** A notice from the thread, which is about to exit. */
type Notice = { syncFailed: string };

export interface WriterThreadOptions extends WriterThreadConfig {
  /** How often the WAL is checkpointed (default 200 ms). */
  checkpointIntervalMs?: number;
  /** Told about failures no caller is waiting for (an fsync after an early reply, a checkpoint). */
  onError?: (message: string) => void;
}

const ENTRY = new URL('./writer-thread-entry.mjs', import.meta.url);

export class WriterThread {
  readonly #options: WriterThreadOptions;
  #worker: Worker | undefined;
  #checkpointer: WalCheckpointer | undefined;
  readonly #pending = new Map<number, { resolve(r: { outcomes: JobOutcome[]; events: number }): void; reject(e: Error): void }>();
  #next = 0;
  #closed = false;

  constructor(options: WriterThreadOptions) {
    this.#options = options;
  }

  /** Runs one batch in one transaction on the writer thread. Rejects when the batch failed as a whole. */
  run(jobs: readonly JobSpec[]): Promise<{ outcomes: JobOutcome[]; events: number }> {
    if (this.#closed) return Promise.reject(new Error('ledger writer thread is closed'));
    const worker = this.#worker ?? this.#start();
    this.#checkpointer ??= new WalCheckpointer({
      paths: [this.#options.path], intervalMs: this.#options.checkpointIntervalMs, onError: this.#options.onError,
    });
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, jobs } satisfies Request);
    });
  }

  /** Stops the thread (callers first wait for their batches). */
  async close(): Promise<void> {
    this.#closed = true;
    const w = this.#worker;
    const c = this.#checkpointer;
    this.#worker = undefined;
    this.#checkpointer = undefined;
    if (w) await w.terminate();
    if (c) await c.close();
    this.#failAll(new Error('ledger writer thread closed'));
  }

  #notice(n: Notice): void {
    this.#options.onError?.(`ledger WAL fsync failed after an early reply: ${n.syncFailed}`);
  }

  #start(): Worker {
    const { path, busyTimeoutMs, receiptFsync } = this.#options;
    const worker = new Worker(ENTRY, { workerData: { path, busyTimeoutMs, receiptFsync } satisfies WriterThreadConfig });
    this.#worker = worker;
    worker.unref();
    worker.on('message', (reply: Reply | Notice) => {
      if (!('id' in reply)) return this.#notice(reply);
      const p = this.#pending.get(reply.id);
      if (!p) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      if (reply.ok) p.resolve({ outcomes: reply.outcomes, events: reply.events });
      else p.reject(new Error(`ledger writer: ${reply.message}`));
    });
    const gone = (why: string) => {
      if (this.#worker === worker) this.#worker = undefined;
      this.#failAll(new Error(`ledger writer thread ${why}`));
    };
    worker.on('error', (e) => gone(`failed: ${e.message}`));
    worker.on('exit', (code) => gone(`exited (${code})`));
    return worker;
  }

  #failAll(err: Error): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}
