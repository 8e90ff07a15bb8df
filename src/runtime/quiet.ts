// Background work that must not sit in front of a request: it runs once no client request is in
// flight. The sandbox prewarms its next instance through this. A timer is not enough: a 0 ms
// timer fires in the next loop iteration's timers phase, which comes before the check phase where
// the ledger commits the request that scheduled it, so the work landed on that request's critical
// path (≈ 0.25 ms at concurrency 1; docs/benchmarks.md, "Eighth session").

export class QuietQueue {
  #tasks: Array<() => void> = [];
  #scheduled = false;

  /** `busy`: whether a request is in flight now. */
  constructor(private readonly busy: () => boolean) {}

  /**
   * Runs `task` once the gate is quiet: in the next check phase when nothing is in flight, else
   * after the last request in flight has answered ({@link settled}). Under unbroken load a task
   * waits; work that may be skipped (a prewarm) is what belongs here. A task's throw is its own.
   */
  run(task: () => void): void {
    this.#tasks.push(task);
    this.#kick();
  }

  /** The gate calls this when its last request in flight has answered. */
  settled(): void {
    if (this.#tasks.length > 0) this.#kick();
  }

  #kick(): void {
    if (this.#scheduled || this.busy()) return;
    this.#scheduled = true;
    // setImmediate: after the answer of the request that just ended has been written (microtasks).
    setImmediate(() => {
      this.#scheduled = false;
      if (this.busy()) return;
      const tasks = this.#tasks;
      this.#tasks = [];
      for (const task of tasks) {
        try {
          task();
        } catch {
          // a task's failure is its own (a prewarm reports nothing; the next call instantiates)
        }
      }
    });
  }
}
