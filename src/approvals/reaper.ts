// Periodic reaping of expired approvals and abandoned claims. Runs never overlap; each reaped record
// is handed to the caller (who audits it) exactly once, even with several gate instances reaping.
import type { ApprovalStore, ReapedApproval } from './types.ts';

export interface ApprovalReaperOptions {
  /** Interval between runs in ms (default 5000). */
  intervalMs?: number;
  /** Called with the records moved by one run (only when there are any). */
  onReaped: (reaped: ReapedApproval[]) => Promise<void> | void;
  /** Called when a run fails (store down, or onReaped threw). */
  onError?: (err: unknown) => void;
}

export interface ApprovalReaper {
  /** Runs one pass now (also what the timer calls); resolves when it is done. */
  runOnce(): Promise<void>;
  /** Stops the timer and waits for a running pass. */
  stop(): Promise<void>;
}

/** Starts the timer (unref'd: it never keeps the process alive). */
export function startApprovalReaper(store: Pick<ApprovalStore, 'reapExpired'>, options: ApprovalReaperOptions): ApprovalReaper {
  const intervalMs = options.intervalMs ?? 5000;
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) throw new TypeError('intervalMs must be positive');
  let running: Promise<void> | undefined;
  const runOnce = (): Promise<void> => {
    running ??= (async () => {
      try {
        const reaped = await store.reapExpired();
        if (reaped.length > 0) await options.onReaped(reaped);
      } catch (e) {
        options.onError?.(e);
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const timer = setInterval(() => { void runOnce(); }, intervalMs);
  timer.unref();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
