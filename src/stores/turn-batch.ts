// Work collected over one event-loop turn and run together at its end (the check phase): the
// state stores use it to put the writes that concurrent requests ask for in one turn into one
// SQLite transaction. Each caller is answered only after the whole batch ran (and committed), in
// the order the items arrived; when the batch fails, every caller gets the same refusal.

interface Pending<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

export class TurnBatch<I, O> {
  #pending: Pending<I, O>[] = [];
  #scheduled = false;

  /**
   * `run` gets the items in arrival order and returns one result per item (synchronously: one
   * transaction); `refusal` maps its failure to what every caller of that batch is rejected with.
   */
  constructor(
    private readonly run: (items: readonly I[]) => O[],
    private readonly refusal: (err: unknown) => unknown,
  ) {}

  add(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
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
    let outs: O[];
    try {
      outs = this.run(batch.map((p) => p.item));
      if (outs.length !== batch.length) throw new Error(`batch returned ${outs.length} results for ${batch.length} items`);
    } catch (e) {
      const err = this.refusal(e);
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => p.resolve(outs[i]!));
  }
}
