// `none` identity: every caller is the one configured principal (with the configured scopes, or
// any). For embedded and dev use, where the socket's file mode is the only access control.
import { DEFAULT_PRINCIPAL, type NoneIdentityConfig } from './config.ts';
import type { Identity, IdentityProvider } from './types.ts';

/** A provider that answers every request with the configured principal (default `agent`). */
export function createNoneProvider(config: NoneIdentityConfig): IdentityProvider {
  const identity: Identity = Object.freeze({
    principal: config.principal ?? DEFAULT_PRINCIPAL,
    scopes: config.scopes === undefined ? undefined : Object.freeze([...config.scopes]),
  });
  return {
    kind: 'none',
    identify: () => Promise.resolve(identity),
  };
}
