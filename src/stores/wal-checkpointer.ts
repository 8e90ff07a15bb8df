// WAL checkpoints off the commit path. SQLite normally checkpoints inside whichever COMMIT pushes
// the WAL past 1000 pages, so one commit in a few dozen waits while the WAL is copied into the
// database file and both are fsynced (4–17 ms measured here, on the event loop for the state
// database). With this thread, connections raise that threshold to WAL_RESTART_PAGES and the
// thread runs PASSIVE checkpoints on a timer: they never take the write lock and never make a
// commit wait, and they copy nearly every frame soon after it is written. Under steady writes a
// PASSIVE checkpoint is never complete when the next commit begins, so SQLite would never start
// the WAL over: the COMMIT that passes WAL_RESTART_PAGES still runs SQLite's own checkpoint, which
// then has only the last few frames left to copy, completes, and lets the next commit restart the
// WAL. The file stays bounded (test/stores/wal-checkpointer.test.ts).
import { statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

const ENTRY = new URL('./wal-checkpointer-worker.mjs', import.meta.url);

/** `wal_autocheckpoint` of connections whose file a WalCheckpointer thread checkpoints (16 MiB of 4 KiB pages). */
export const WAL_RESTART_PAGES = 4096;

/** The WAL size at which a commit checkpoints itself (WAL_RESTART_PAGES pages of 4 KiB). */
const WAL_RESTART_BYTES = WAL_RESTART_PAGES * 4096;

/**
 * `journal_size_limit` of those connections: when a writer starts the WAL over, a file that grew
 * past this (a reader held an old snapshot, a large transaction) is truncated back to it. Without
 * it the `-wal` file keeps its largest size until the last connection closes. Twice the size at
 * which commits checkpoint themselves, so a WAL in its normal cycle is never truncated.
 */
export const WAL_SIZE_LIMIT_BYTES = 2 * WAL_RESTART_BYTES;

/** A checkpoint that leaves at most this many frames uncopied has kept up with the writers. */
export const WAL_KEPT_UP_FRAMES = 1024;

export interface WalCheckpointerOptions {
  /** Database files (in WAL mode, already created) to checkpoint. */
  paths: readonly string[];
  /** Milliseconds between checkpoints (default 200). */
  intervalMs?: number;
  /**
   * Told about a failed checkpoint or a dead thread. A dead thread is started again after a delay
   * that doubles from `restartDelayMs` (default 1 s) up to 60 s while it keeps dying, and returns
   * to `restartDelayMs` once a thread has run for 60 s.
   */
  onError?: (message: string) => void;
  restartDelayMs?: number;
}

const MAX_RESTART_DELAY_MS = 60_000;

/** One database file's WAL as its checkpointer last saw it (GET /v1/admin/status, /metrics). */
export interface WalHealth {
  /** Size of the `-wal` file now, in bytes (0 when there is none). */
  wal_bytes: number;
  /** Whether the checkpointer thread runs (false between a crash and its restart). */
  checkpointer_running: boolean;
  /**
   * Seconds since a checkpoint last kept up (left at most WAL_KEPT_UP_FRAMES uncopied); null while
   * the thread is younger than WAL_STALE_SECONDS and none has yet. Grows while a reader's snapshot
   * (or a failing thread) keeps the WAL from being copied back.
   */
  last_checkpoint_age_seconds: number | null;
  /** Frames the last checkpoint left uncopied (a reader still needs them); null before the first. */
  frames_pending: number | null;
}

/**
 * Past these, a WAL is reported as not healthy (`problem` in the gate's status; `status` itself
 * is unchanged): no checkpoint has kept up for WAL_STALE_SECONDS, or the file has grown to four
 * times the size at which commits checkpoint themselves.
 */
export const WAL_STALE_SECONDS = 30;
export const WAL_MAX_HEALTHY_BYTES = 4 * WAL_RESTART_BYTES;

/** Why a WAL is not healthy, or null. */
export function walProblem(h: WalHealth): string | null {
  if (!h.checkpointer_running) return 'checkpointer thread is not running';
  if (h.last_checkpoint_age_seconds !== null && h.last_checkpoint_age_seconds > WAL_STALE_SECONDS) return `no checkpoint has kept up for ${Math.round(h.last_checkpoint_age_seconds)} s`;
  if (h.wal_bytes > WAL_MAX_HEALTHY_BYTES) return `WAL is ${h.wal_bytes} bytes`;
  return null;
}

export class WalCheckpointer {
  readonly #options: WalCheckpointerOptions;
  #worker: Worker | undefined;
  #restart: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #baseDelayMs: number;
  #delayMs: number;
  /** Written by the thread (see the worker), kept across restarts. */
  readonly #progress: Float64Array;
  readonly #createdAt = Date.now();

  constructor(options: WalCheckpointerOptions) {
    this.#options = options;
    this.#baseDelayMs = options.restartDelayMs ?? 1000;
    this.#delayMs = this.#baseDelayMs;
    this.#progress = new Float64Array(new SharedArrayBuffer(options.paths.length * 3 * Float64Array.BYTES_PER_ELEMENT));
    this.#start();
  }

  #start(): void {
    const o = this.#options;
    const worker = new Worker(ENTRY, {
      workerData: {
        paths: [...o.paths], intervalMs: o.intervalMs ?? 200, progress: this.#progress.buffer,
        keptUpFrames: WAL_KEPT_UP_FRAMES, journalSizeLimit: WAL_SIZE_LIMIT_BYTES,
      },
    });
    this.#worker = worker;
    const startedAt = Date.now();
    worker.on('message', (m: { path: string; message: string }) => this.#options.onError?.(`WAL checkpoint of ${m.path} failed: ${m.message}`));
    worker.on('error', (e) => this.#options.onError?.(`WAL checkpointer thread failed: ${e.message}`));
    worker.on('exit', () => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      if (this.#closed) return;
      // A thread that keeps dying (e.g. a file it cannot open) is retried less and less often.
      if (Date.now() - startedAt >= MAX_RESTART_DELAY_MS) this.#delayMs = this.#baseDelayMs;
      const delay = this.#delayMs;
      this.#delayMs = Math.min(this.#delayMs * 2, MAX_RESTART_DELAY_MS);
      this.#restart = setTimeout(() => {
        if (!this.#closed) this.#start();
      }, delay);
      this.#restart.unref();
    });
    // Never keeps the process alive (unref after the listeners: adding one refs the worker again).
    worker.unref();
  }

  /** True while the thread runs (false between a crash and its restart, and after close). */
  get running(): boolean {
    return this.#worker !== undefined;
  }

  /**
   * Each file's WAL: its size now and what the thread last reported. Until a checkpoint has kept
   * up, the age counts from this checkpointer's creation (a thread that never manages one, or keeps
   * dying, is reported once WAL_STALE_SECONDS have passed).
   */
  health(now = Date.now()): WalHealth[] {
    return this.#options.paths.map((path, i) => {
      const ran = this.#progress[i * 3]!;
      const at = this.#progress[i * 3 + 2]!;
      const since = at > 0 ? at : this.#createdAt;
      let bytes = 0;
      try {
        bytes = statSync(`${path}-wal`).size;
      } catch {
        // no WAL file (yet, or after a clean close): nothing pending
      }
      const age = Math.max(0, (now - since) / 1000);
      return {
        wal_bytes: bytes,
        checkpointer_running: this.running,
        last_checkpoint_age_seconds: at > 0 || age > WAL_STALE_SECONDS ? Math.round(age * 10) / 10 : null,
        frames_pending: ran > 0 ? this.#progress[i * 3 + 1]! : null,
      };
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#restart);
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }
}
