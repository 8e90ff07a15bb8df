// Idempotency-Key store for execute: a key (scoped by principal) is bound to one request fingerprint
// and, once finished, to one final response that every retry gets back. Fails closed: any store
// failure is idempotency_store_unavailable, never "run it again".

/** The final response of an execute (status + JSON body), replayed verbatim. */
export interface IdempotentResponse {
  status: number;
  body: Record<string, unknown>;
}

/** `new`: this caller owns the key and must `finish` or `release` it. `replay`: the stored response. */
export type IdempotencyBegin =
  | { state: 'new'; token: string }
  | { state: 'replay'; response: IdempotentResponse };

export interface IdempotencyStore {
  /**
   * Claims `key` in `scope` for `fingerprint`. Throws `idempotency_key_conflict` when the key was
   * used with another fingerprint, `idempotency_in_progress` while the first request still runs.
   */
  begin(scope: string, key: string, fingerprint: string): Promise<IdempotencyBegin>;
  /** Stores the final response (kept for the TTL). False when this caller no longer holds the key. */
  finish(scope: string, key: string, fingerprint: string, response: IdempotentResponse, token?: string): Promise<boolean>;
  /** Gives the key up without a response (nothing ran; a retry may proceed). False when not held. */
  release(scope: string, key: string, fingerprint: string, token?: string): Promise<boolean>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export interface IdempotencyStoreOptions {
  /** How long a finished response is replayed (default 86400 s). */
  ttlSeconds?: number;
  /**
   * How long a started request holds its key (default 300 s, longer than any execution). After a
   * crash the key frees up when this passes.
   */
  inProgressTtlSeconds?: number;
}
