// The SQLite writer thread: runs the ledger's write batches (src/ledger/jobs.ts) on its own
// connection, so their SQLite work, chain hashing and fsync leave the gate's event loop. The
// gate's Ledger still validates, signs and batches; this thread only executes one batch at a
// time, in one transaction, and answers with each job's outcome. A WalCheckpointer thread copies
// the WAL into the database file on a timer, so no commit ever waits for a checkpoint.
//
// Failure model: if the thread dies (or cannot open the database) every batch in flight fails
// as a database failure (ledger_unavailable / evidence_persistence_failed: the COMMIT outcome is
// unknown, nothing is retried), and the next batch starts a fresh thread. A failed fsync after an
// early reply (receiptFsync 'after_reply') is fatal: the frames it should have made durable may be
// gone from the disk while later commits are appended after them, so this ledger refuses every
// write from then on (`failed`; the gate reports not ready) until the process restarts and SQLite
// recovers the WAL from what is really on disk.
import { Worker } from 'node:worker_threads';
import type { JobOutcome, JobSpec } from './jobs.ts';
import { GateError, type GateErrorCode } from '../errors.ts';
import type { SigningKey } from '../keys/keystore.ts';
import type { Jwks } from '../keys/jwk.ts';
import type { KeyObject } from 'node:crypto';
import type { Checkpoint } from './types.ts';
import type { WriterThreadConfig } from './db.ts';
import { WalCheckpointer } from '../stores/wal-checkpointer.ts';

export type { WriterThreadConfig };

interface Request {
  id: number;
  jobs: readonly JobSpec[];
}

export type Reply =
  | { id: number; ok: true; outcomes: JobOutcome[]; events: number; fsync: 'before_reply' | 'after_reply' }
  | { id: number; ok: false; message: string };

/** From the thread: its post-reply fsync failed (it is about to exit), or it finished after a close request. */
type Notice = { syncFailed: string } | { closed: true };

/** What a thread receives as workerData: the writer (default) or the checkpoint thread. */
export type ThreadData = WriterThreadConfig & { role?: 'checkpoint' };

export interface CheckpointRequest { id: number; ts: string; key: KeyObject; kid: string; jwks: Jwks }
export type CheckpointReply =
  | { id: number; ok: true; checkpoint: Checkpoint | null }
  | { id: number; ok: false; code: GateErrorCode | null; message: string };

/** A batch's outcome; `fsync` says whether its commit was fsynced before this answer (tests read it). */
export interface BatchResult { outcomes: JobOutcome[]; events: number; fsync: 'before_reply' | 'after_reply' }

export interface WriterThreadOptions extends WriterThreadConfig {
  /** How often the WAL is checkpointed (default 200 ms). */
  checkpointIntervalMs?: number;
  /** Told about a failed fsync after an early reply (after which every write is refused). */
  onError?: (message: string) => void;
  /** Told about a failed WAL checkpoint (the WAL grows until one succeeds). */
  onCheckpointError?: (message: string) => void;
}

const ENTRY = new URL('./writer-thread-entry.mjs', import.meta.url);

export class WriterThread {
  readonly #options: WriterThreadOptions;
  #worker: Worker | undefined;
  #checkpointer: WalCheckpointer | undefined;
  /** The checkpoint thread: signed ledger checkpoints, computed off the event loop and the writer. */
  #signer: Worker | undefined;
  readonly #signing = new Map<number, { resolve(c: Checkpoint | null): void; reject(e: Error): void }>();
  readonly #pending = new Map<number, { resolve(r: BatchResult): void; reject(e: Error): void }>();
  #next = 0;
  #closed = false;
  #failed: string | undefined;
  #closedByThread: (() => void) | undefined;

  constructor(options: WriterThreadOptions) {
    this.#options = options;
  }

  /** Why this writer refuses every write (a failed post-reply fsync), or undefined while it is sound. */
  get failed(): string | undefined {
    return this.#failed;
  }

  /** Runs one batch in one transaction on the writer thread. Rejects when the batch failed as a whole. */
  run(jobs: readonly JobSpec[]): Promise<BatchResult> {
    if (this.#closed) return Promise.reject(new Error('ledger writer thread is closed'));
    if (this.#failed !== undefined) return Promise.reject(new Error(`ledger writer refuses writes: ${this.#failed}`));
    const worker = this.#worker ?? this.#start();
    this.#checkpointer ??= new WalCheckpointer({
      paths: [this.#options.path], intervalMs: this.#options.checkpointIntervalMs, onError: this.#options.onCheckpointError,
    });
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, jobs } satisfies Request);
    });
  }

  /**
   * Computes, signs and stores the next ledger checkpoint on the checkpoint thread (its own
   * connection; src/ledger/checkpoint-sign.ts). Refusals come back as `ledger_unavailable`.
   */
  checkpoint(req: { ts: string; key: SigningKey; jwks: Jwks }): Promise<Checkpoint | null> {
    if (this.#closed) return Promise.reject(new Error('ledger writer thread is closed'));
    const worker = this.#signer ?? this.#startSigner();
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#signing.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, ts: req.ts, key: req.key.privateKey, kid: req.key.kid, jwks: req.jwks } satisfies CheckpointRequest);
    });
  }

  #startSigner(): Worker {
    const { path, busyTimeoutMs, receiptFsync } = this.#options;
    const worker = new Worker(ENTRY, { workerData: { path, busyTimeoutMs, receiptFsync, role: 'checkpoint' } satisfies ThreadData });
    this.#signer = worker;
    worker.on('message', (r: CheckpointReply) => {
      const p = this.#signing.get(r.id);
      if (!p) return;
      this.#signing.delete(r.id);
      if (this.#signing.size === 0) worker.unref();
      if (r.ok) p.resolve(r.checkpoint);
      else p.reject(r.code ? new GateError(r.code, r.message) : new Error(`ledger checkpoint thread: ${r.message}`));
    });
    const gone = (why: string) => {
      if (this.#signer === worker) this.#signer = undefined;
      for (const p of this.#signing.values()) p.reject(new Error(`ledger checkpoint thread ${why}`));
      this.#signing.clear();
    };
    worker.on('error', (e) => gone(`failed: ${e.message}`));
    worker.on('exit', (code) => gone(`exited (${code})`));
    worker.unref();
    return worker;
  }

  /**
   * Stops the thread (callers first wait for their batches). The thread is asked to finish what it
   * queued — including the fsync that follows an early reply — before it is terminated (5 s at most).
   */
  async close(): Promise<void> {
    this.#closed = true;
    const w = this.#worker;
    const c = this.#checkpointer;
    this.#worker = undefined;
    this.#checkpointer = undefined;
    if (w) {
      const finished = new Promise<void>((resolve) => {
        this.#closedByThread = resolve;
        w.once('exit', () => resolve());
      });
      w.ref();
      w.postMessage({ close: true });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([finished, new Promise<void>((r) => { timer = setTimeout(r, 5000); })]);
      clearTimeout(timer);
      await w.terminate();
    }
    if (c) await c.close();
    const sg = this.#signer;
    this.#signer = undefined;
    if (sg) await sg.terminate();
    this.#failAll(new Error('ledger writer thread closed'));
  }

  #notice(n: Notice): void {
    if ('closed' in n) {
      this.#closedByThread?.();
      return;
    }
    this.#failed ??= `WAL fsync failed after an early reply: ${n.syncFailed}`;
    this.#options.onError?.(`ledger ${this.#failed}; every ledger write is refused until the gate restarts`);
  }

  #start(): Worker {
    const { path, busyTimeoutMs, receiptFsync, faultWalSync } = this.#options;
    const worker = new Worker(ENTRY, { workerData: { path, busyTimeoutMs, receiptFsync, faultWalSync } satisfies WriterThreadConfig });
    this.#worker = worker;
    worker.unref();
    worker.on('message', (reply: Reply | Notice) => {
      if (!('id' in reply)) return this.#notice(reply);
      const p = this.#pending.get(reply.id);
      if (!p) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      if (reply.ok) p.resolve({ outcomes: reply.outcomes, events: reply.events, fsync: reply.fsync });
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
