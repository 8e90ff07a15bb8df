// The SQLite writer thread: runs the ledger's write batches (src/ledger/jobs.ts) on its own
// connection, so their SQLite work, chain hashing and fsync leave the gate's event loop. The
// gate's Ledger still validates, signs and batches; this thread only executes one batch at a
// time, in one transaction, and answers with each job's outcome.
//
// Failure model: if the thread dies (or cannot open the database) every batch in flight fails
// as a database failure (ledger_unavailable / evidence_persistence_failed: the COMMIT outcome is
// unknown, nothing is retried), and the next batch starts a fresh thread.
import { Worker } from 'node:worker_threads';
import type { JobOutcome, JobSpec } from './jobs.ts';

interface Request {
  id: number;
  jobs: readonly JobSpec[];
}

export type Reply =
  | { id: number; ok: true; outcomes: JobOutcome[]; events: number }
  | { id: number; ok: false; message: string };

export interface WriterThreadOptions {
  /** The SQLite file (resolved path). */
  path: string;
  busyTimeoutMs: number;
}

const ENTRY = new URL('./writer-thread-entry.mjs', import.meta.url);

export class WriterThread {
  readonly #options: WriterThreadOptions;
  #worker: Worker | undefined;
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
    this.#worker = undefined;
    if (w) await w.terminate();
    this.#failAll(new Error('ledger writer thread closed'));
  }

  #start(): Worker {
    const worker = new Worker(ENTRY, { workerData: this.#options });
    this.#worker = worker;
    worker.unref();
    worker.on('message', (reply: Reply) => {
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
