// Interfaces of the gate-core stores. Each has a Redis (production) and a SQLite (embedded)
// implementation; any failure throws the store's *_unavailable GateError, never a silent allow.

/** Single-use DPoP `jti`s. */
export interface ReplayStore {
  /**
   * Records `key` for `ttlMs`; true when it was new, false when already seen (a replay). `nowMs`
   * is the caller's clock reading the mark is judged on (the DPoP verifier passes the reading it
   * judged freshness on); a store that keeps expiry times counts from it, Redis counts the TTL itself.
   */
  markUsed(key: string, ttlMs: number, nowMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/** The revocation state checked on every call. */
export interface RevocationState {
  epoch: number;
  /** True when this session was revoked individually. */
  sessionRevoked: boolean;
  /** Leases of this principal issued at or before this time (ms) are revoked; 0 when none. */
  principalRevokedBefore: number;
}

/** The persisted revocation epoch (kill switch) plus per-session and per-principal revocations. */
export interface RevocationStore {
  currentEpoch(): Promise<number>;
  /** Atomically advances the epoch; returns [previous, current]. */
  advanceEpoch(): Promise<[number, number]>;
  /** One round trip: epoch + the session's and principal's revocation marks. */
  state(sessionId: string, principal: string): Promise<RevocationState>;
  revokeSession(sessionId: string, ttlMs: number): Promise<void>;
  /** Revokes every lease of `principal` issued up to `atMs`. */
  revokePrincipal(principal: string, atMs: number, ttlMs: number): Promise<void>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
