// The identity stage's contract: who is calling, and which lease scopes that caller may hold.
import type { PeerCredentials } from './native.ts';
import type { PeerSource } from './peer-socket.ts';

/** The caller as established by an identity provider. Arrays are frozen. */
export interface Identity {
  principal: string;
  /** Scopes the caller may request in a lease; `undefined` = any scope. */
  scopes: readonly string[] | undefined;
  /** The peer's kernel credentials, when the provider read them (for the audit log). */
  peer?: PeerCredentials;
}

/**
 * Establishes who is on the other end of a request. Rejects only with `GateError`:
 * `identity_denied` (403) for a known caller that is not admitted, `identity_unavailable` (503)
 * when the caller cannot be determined.
 */
export interface IdentityProvider {
  readonly kind: 'none' | 'peercred';
  identify(source: PeerSource): Promise<Identity>;
}
