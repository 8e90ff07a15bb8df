// Work collected over one event-loop turn and run together at its end (the check phase): the
// state stores use it to put the writes that concurrent requests ask for in one turn into one
// SQLite transaction. Each caller is answered only after the whole batch ran (and committed), in
// the order the items arrived. One item's failure is its own (`run` reports it per item, e.g. from
// a savepoint); when the batch as a whole fails (BEGIN or COMMIT), every caller gets the refusal.

export type Settled<O> = { ok: true; value: O } | { ok: false; error: unknown };

interface Pending<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

export class TurnBatch<I, O> {
  #pending: Pending<I, O>[] = [];
  #scheduled = false;

  /**
   * `run` gets the items in arrival order and returns one outcome per item, synchronously (one
   * transaction); `refusal` maps a failure of the whole batch to what its callers are rejected with.
   */
  constructor(
    private readonly run: (items: readonly I[]) => Array<Settled<O>>,
    private readonly refusal: (err: unknown) => unknown,
    /**
     * Asked on each add with nothing pending: true runs the batch of one at once instead of at the
     * end of the turn (the gate: its request is the only one in flight, so nothing would join it
     * and the wait for the check phase is pure latency).
     */
    private readonly alone?: () => boolean,
  ) {}

  add(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      if (!this.#scheduled && this.#pending.length === 1 && this.alone?.() === true) {
        this.#flush();
        return;
      }
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    let outs: Array<Settled<O>>;
    try {
      outs = this.run(batch.map((p) => p.item));
    } catch (e) {
      let err: unknown;
      try {
        err = this.refusal(e);
      } catch (mapErr) {
        err = mapErr;
      }
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const o = outs[i];
      if (o?.ok) p.resolve(o.value);
      else p.reject(o ? o.error : new Error('batch returned no outcome for this item'));
    });
  }
}
