// Lease scopes against an identity's allowance: a request outside the allowance is refused whole,
// never silently narrowed, so an agent learns at once that it asked for too much.
import { GateError } from '../errors.ts';
import type { Identity } from './types.ts';

/**
 * Returns the requested scopes (deduplicated, in request order) when every one is allowed for
 * `identity` (exact string match; `scopes: undefined` allows any). Throws `identity_denied` otherwise.
 */
export function authorizeScopes(identity: Identity, requested: readonly string[]): string[] {
  const unique = [...new Set(requested)];
  const allowed = identity.scopes;
  if (allowed === undefined) return unique;
  const denied = unique.filter((scope) => !allowed.includes(scope));
  if (denied.length > 0) {
    throw new GateError('identity_denied', `principal ${identity.principal} may not request scopes: ${denied.join(', ')}`);
  }
  return unique;
}
