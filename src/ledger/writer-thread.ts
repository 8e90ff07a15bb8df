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
import { CommitError, type WriterThreadConfig } from './db.ts';
import { WalCheckpointer, type WalHealth } from '../stores/wal-checkpointer.ts';

export type { WriterThreadConfig };

interface Request {
  id: number;
  jobs: readonly JobSpec[];
}

export type Reply =
  | { id: number; ok: true; outcomes: JobOutcome[]; events: number; fsync: 'before_reply' | 'after_reply' }
  /** `unknown`: the COMMIT itself failed, so the batch may have been applied (CommitError). */
  | { id: number; ok: false; message: string; unknown?: boolean };

/**
 * From the thread: the fsync that followed an early reply is done (`synced`: that request's id) or
 * failed (it is about to exit), or it finished after a close request.
 */
type Notice = { synced: number } | { syncFailed: string } | { closed: true };

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

/**
 * One worker thread answering requests by id. It keeps the process alive only while a request is
 * pending; if it dies, every pending request fails. Messages without an id go to `onNotice`.
 */
class RequestThread<Res extends { id: number }> {
  readonly worker: Worker;
  readonly #pending = new Map<number, { resolve(r: Res): void; reject(e: Error): void }>();
  #next = 0;
  #exited = false;

  constructor(
    data: ThreadData, name: string,
    hooks: { onNotice?: (n: Notice) => void; onReply?: (r: Res) => void; onGone: () => void },
  ) {
    const worker = new Worker(ENTRY, { workerData: data });
    this.worker = worker;
    worker.on('message', (m: Res | Notice) => {
      if (!('id' in m)) return hooks.onNotice?.(m);
      hooks.onReply?.(m);
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (this.#pending.size === 0) worker.unref();
      p.resolve(m);
    });
    const gone = (why: string) => {
      hooks.onGone();
      // A batch in flight may have committed before the thread went: its outcome is unknown.
      this.failAll(new CommitError(new Error(`${name} ${why}`)));
    };
    worker.on('error', (e) => gone(`failed: ${e.message}`));
    worker.on('exit', (code) => {
      this.#exited = true;
      gone(`exited (${code})`);
    });
    // Unref after the listeners: adding one refs the worker again.
    worker.unref();
  }

  /** True once the thread has exited (its connection, and any lock it held, is gone). */
  get exited(): boolean {
    return this.#exited;
  }

  /** True while a request is waiting for its answer. */
  get busy(): boolean {
    return this.#pending.size > 0;
  }

  request(msg: Record<string, unknown>): Promise<Res> {
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ ...msg, id });
    });
  }

  failAll(err: Error): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}

export class WriterThread {
  readonly #options: WriterThreadOptions;
  #writer: RequestThread<Reply> | undefined;
  #checkpointer: WalCheckpointer | undefined;
  /** The checkpoint thread: signed ledger checkpoints, computed off the event loop and the writer. */
  #signer: RequestThread<CheckpointReply> | undefined;
  #closed = false;
  #failed: string | undefined;
  #closedByThread: (() => void) | undefined;
  /** Batches answered before their fsync whose fsync the writer has not confirmed yet. */
  readonly #unsynced = new Set<number>();
  /** Threads that failed but have not exited yet: one may still hold the write lock. */
  #dying: Array<RequestThread<Reply> | RequestThread<CheckpointReply>> = [];

  constructor(options: WriterThreadOptions) {
    this.#options = options;
  }

  /** Why this writer refuses every write (a failed post-reply fsync), or undefined while it is sound. */
  get failed(): string | undefined {
    return this.#failed;
  }

  /**
   * True when no thread of this ledger has a request in flight (so none of them can hold the
   * database's write lock): the gate's thread may then run a batch on its own connection.
   */
  get idle(): boolean {
    if (this.#closed || this.#failed !== undefined || this.#writer?.busy || this.#signer?.busy) return false;
    // The writer's fsync after an early reply must be done (or fatal) before anything else commits.
    if (this.#unsynced.size > 0) return false;
    if (this.#dying.length > 0) this.#dying = this.#dying.filter((t) => !t.exited);
    return this.#dying.length === 0;
  }

  /** Starts the WAL checkpointer (once): every writer of the file needs it, whichever thread commits. */
  startCheckpointer(): void {
    if (this.#closed) return;
    this.#checkpointer ??= new WalCheckpointer({
      paths: [this.#options.path], intervalMs: this.#options.checkpointIntervalMs, onError: this.#options.onCheckpointError,
    });
  }

  /** The WAL as the checkpointer reports it; null until it is started (first write, or startCheckpointer). */
  walHealth(): WalHealth | null {
    return this.#checkpointer?.health()[0] ?? null;
  }

  /** Runs one batch in one transaction on the writer thread. Rejects when the batch failed as a whole. */
  async run(jobs: readonly JobSpec[]): Promise<BatchResult> {
    if (this.#closed) throw new Error('ledger writer thread is closed');
    if (this.#failed !== undefined) throw new Error(`ledger writer refuses writes: ${this.#failed}`);
    const writer = this.#writer ?? this.#startWriter();
    this.startCheckpointer();
    const reply = await writer.request({ jobs } satisfies Omit<Request, 'id'>);
    if (!reply.ok) {
      const err = new Error(`ledger writer: ${reply.message}`);
      throw reply.unknown ? new CommitError(err) : err;
    }
    return { outcomes: reply.outcomes, events: reply.events, fsync: reply.fsync };
  }

  /**
   * Computes, signs and stores the next ledger checkpoint on the checkpoint thread (its own
   * connection; src/ledger/checkpoint-sign.ts). Refusals come back as `ledger_unavailable`.
   */
  async checkpoint(req: { ts: string; key: SigningKey; jwks: Jwks }): Promise<Checkpoint | null> {
    if (this.#closed) throw new Error('ledger writer thread is closed');
    const signer = this.#signer ?? this.#startSigner();
    const r = await signer.request({ ts: req.ts, key: req.key.privateKey, kid: req.key.kid, jwks: req.jwks } satisfies Omit<CheckpointRequest, 'id'>);
    if (!r.ok) throw r.code ? new GateError(r.code, r.message) : new Error(`ledger checkpoint thread: ${r.message}`);
    return r.checkpoint;
  }

  /**
   * Stops the threads (callers first wait for their batches). The writer is asked to finish what it
   * queued — including the fsync that follows an early reply — before it is terminated (5 s at most).
   */
  async close(): Promise<void> {
    this.#closed = true;
    const writer = this.#writer;
    const c = this.#checkpointer;
    const signer = this.#signer;
    this.#writer = undefined;
    this.#checkpointer = undefined;
    this.#signer = undefined;
    if (writer) {
      const w = writer.worker;
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
      writer.failAll(new Error('ledger writer thread closed'));
    }
    if (c) await c.close();
    if (signer) await signer.worker.terminate();
  }

  #notice(n: Notice): void {
    if ('closed' in n) {
      this.#closedByThread?.();
      return;
    }
    if ('synced' in n) {
      this.#unsynced.delete(n.synced);
      return;
    }
    this.fail(`WAL fsync failed after an early reply: ${n.syncFailed}`);
  }

  /**
   * From now on this ledger refuses every write (until the process restarts): a WAL fsync after an
   * early reply failed, here or for a batch the gate's thread ran itself. Reported through onError.
   */
  fail(reason: string): void {
    this.#failed ??= reason;
    this.#options.onError?.(`ledger ${this.#failed}; every ledger write is refused until the gate restarts`);
  }

  #startWriter(): RequestThread<Reply> {
    const { path, busyTimeoutMs, receiptFsync, faultWalSync } = this.#options;
    const writer: RequestThread<Reply> = new RequestThread<Reply>({ path, busyTimeoutMs, receiptFsync, faultWalSync }, 'ledger writer thread', {
      onNotice: (n) => this.#notice(n),
      // Synchronously, before the batch's caller runs: no inline commit may slip in before the fsync.
      onReply: (r) => { if (r.ok && r.fsync === 'after_reply') this.#unsynced.add(r.id); },
      onGone: () => this.#retire(writer),
    });
    this.#writer = writer;
    return writer;
  }

  #startSigner(): RequestThread<CheckpointReply> {
    const { path, busyTimeoutMs, receiptFsync } = this.#options;
    const signer: RequestThread<CheckpointReply> = new RequestThread<CheckpointReply>({ path, busyTimeoutMs, receiptFsync, role: 'checkpoint' }, 'ledger checkpoint thread', {
      onGone: () => this.#retire(signer),
    });
    this.#signer = signer;
    return signer;
  }

  /** A thread failed or exited: the next request starts a new one; until it has exited it may hold the write lock. */
  #retire(t: RequestThread<Reply> | RequestThread<CheckpointReply>): void {
    if (this.#writer === t) {
      this.#writer = undefined;
      // Its unconfirmed fsyncs will never be confirmed (a failed one was reported as syncFailed);
      // until it has exited, #dying keeps batches off the gate's thread. (Cleared only on 'exit',
      // these were never cleared after an 'error': that event retires the writer first.)
      this.#unsynced.clear();
    }
    if (this.#signer === t) this.#signer = undefined;
    if (!t.exited && !this.#dying.includes(t)) this.#dying.push(t);
    if (t.exited && this.#dying.length > 0) this.#dying = this.#dying.filter((d) => d !== t);
  }
}
