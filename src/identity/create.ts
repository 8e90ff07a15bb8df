// One entry point from the `identity` config section to a provider; an unknown provider id is
// refused with the list of known ones.
import { IDENTITY_PROVIDER_KINDS, IdentityConfigError, parseIdentityConfig } from './config.ts';
import { createNoneProvider } from './none.ts';
import { createPeercredProvider, type PeercredProviderDeps } from './peercred.ts';
import type { IdentityProvider } from './types.ts';

/**
 * Validates `config` (the `identity` section, unparsed) and builds its provider. Throws
 * `IdentityConfigError` for a bad config and `IdentityAddonError` when `peercred` is configured
 * but the addon is not built.
 */
export function createIdentityProvider(config: unknown, deps: PeercredProviderDeps = {}): IdentityProvider {
  const key = deps.configKey ?? 'identity';
  const parsed = parseIdentityConfig(config, key);
  switch (parsed.provider) {
    case 'none':
      return createNoneProvider(parsed);
    case 'peercred':
      return createPeercredProvider(parsed, deps);
    default: {
      // parseIdentityConfig already refused any other provider; this keeps the switch exhaustive.
      const unknown: never = parsed;
      const provider = JSON.stringify((unknown as { provider?: unknown }).provider);
      throw new IdentityConfigError(`${key}.provider`, `unknown identity provider ${provider}; known: ${IDENTITY_PROVIDER_KINDS.join(', ')}`);
    }
  }
}
