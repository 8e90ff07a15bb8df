// fdatasync of an SQLite WAL file after a commit made with synchronous=NORMAL: what FULL does at
// COMMIT, done after the commit was acknowledged (ledger.receipt_fsync = "after_reply"; see
// docs/ledger.md, "When a write is durable"). Used by the writer thread (synchronously, after its
// reply) and by the gate's thread for the batches it runs itself (on the libuv pool).
import { closeSync, fdatasync, fdatasyncSync, fstatSync, openSync, statSync } from 'node:fs';

export class WalSync {
  readonly #path: string;
  readonly #fault: boolean;
  #fd = -1;
  #ino = -1;
  /** fdatasyncs running on the pool, and descriptors to close once none is (never under one). */
  #inflight = 0;
  #retired: number[] = [];

  /** `fault`: tests only, every sync throws. */
  constructor(walPath: string, fault = false) {
    this.#path = walPath;
    this.#fault = fault;
  }

  /**
   * Opens (or re-opens, if the WAL was re-created) the descriptor before the commit it will sync:
   * Linux reports a writeback error to the descriptors open when it happened, so one opened after
   * the commit could miss an error another descriptor already saw. No WAL file yet: nothing to do.
   */
  open(): void {
    try {
      this.#descriptor();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /** A descriptor for the file the path names now (re-opened if the WAL was re-created). */
  #descriptor(): number {
    const ino = statSync(this.#path).ino;
    if (this.#fd >= 0 && ino !== this.#ino) this.#retire();
    if (this.#fd < 0) {
      this.#fd = openSync(this.#path, 'r');
      this.#ino = fstatSync(this.#fd).ino;
    }
    return this.#fd;
  }

  /** fdatasync now, on this thread. */
  syncNow(): void {
    if (this.#fault) throw new Error('injected WAL fsync failure (test)');
    fdatasyncSync(this.#descriptor());
  }

  /** fdatasync on the libuv thread pool; the descriptor is checked on this thread first. */
  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#fault) throw new Error('injected WAL fsync failure (test)');
      const fd = this.#descriptor();
      this.#inflight++;
      fdatasync(fd, (err) => {
        if (--this.#inflight === 0) this.#closeRetired();
        if (err) reject(err);
        else resolve();
      });
    });
  }

  /** Stops using the current descriptor; it is closed once no fdatasync runs on it. */
  #retire(): void {
    this.#retired.push(this.#fd);
    this.#fd = -1;
    this.#ino = -1;
    if (this.#inflight === 0) this.#closeRetired();
  }

  #closeRetired(): void {
    for (const fd of this.#retired.splice(0)) closeSync(fd);
  }

  close(): void {
    if (this.#fd >= 0) this.#retire();
  }
}
