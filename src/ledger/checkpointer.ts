// Periodic signed checkpoints: every N committed events, every T milliseconds, and once at stop
// (shutdown). Failures never throw into the caller's path; they go to `onError` and to the
// `portcullis:ledger` diagnostics channel.
import { channel } from 'node:diagnostics_channel';
import type { Ledger } from './ledger.ts';
import type { Checkpoint } from './types.ts';

export interface CheckpointerOptions {
  /** Checkpoint after this many committed events (default 100; 0 disables). */
  everyEvents?: number;
  /** Checkpoint at this interval when the head moved (default 60000 ms; 0 disables). */
  intervalMs?: number;
  /** Called with each checkpoint failure (in addition to the diagnostics channel). */
  onError?: (err: unknown) => void;
  /** Called with each new checkpoint. */
  onCheckpoint?: (cp: Checkpoint) => void;
}

export interface Checkpointer {
  /** Checkpoint now (outside the schedule); resolves to null on failure or when nothing is new. */
  flush(): Promise<Checkpoint | null>;
  /** Stops the timers and writes a final checkpoint (call at shutdown, before closing the database). */
  stop(): Promise<Checkpoint | null>;
}

export const LEDGER_CHANNEL = 'portcullis:ledger';
const diag = channel(LEDGER_CHANNEL);

/** Starts checkpointing `ledger` on a schedule. The timer is unref'd: it never keeps the process alive. */
export function startCheckpointer(ledger: Ledger, options: CheckpointerOptions = {}): Checkpointer {
  const everyEvents = Math.max(0, Math.trunc(options.everyEvents ?? 100));
  const intervalMs = Math.max(0, Math.trunc(options.intervalMs ?? 60_000));
  let sinceLast = 0;
  let stopped = false;
  let inFlight: Promise<Checkpoint | null> | null = null;

  const run = (): Promise<Checkpoint | null> => {
    inFlight ??= (async () => {
      const counted = sinceLast;
      try {
        const cp = await ledger.checkpoint();
        sinceLast = Math.max(0, sinceLast - counted);
        if (cp) {
          options.onCheckpoint?.(cp);
          if (diag.hasSubscribers) diag.publish({ type: 'checkpoint', checkpoint: cp });
        }
        return cp;
      } catch (err) {
        options.onError?.(err);
        if (diag.hasSubscribers) diag.publish({ type: 'checkpoint_failed', error: err });
        return null;
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  };

  const unsubscribe = ledger.onCommitted((n) => {
    sinceLast += n;
    if (!stopped && everyEvents > 0 && sinceLast >= everyEvents) void run();
  });
  const timer = intervalMs > 0 ? setInterval(() => void run(), intervalMs) : null;
  timer?.unref();

  return {
    flush: run,
    async stop() {
      if (stopped) return null;
      stopped = true;
      if (timer) clearInterval(timer);
      unsubscribe();
      if (inFlight) await inFlight;
      return run();
    },
  };
}
