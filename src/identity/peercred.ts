// `peercred` identity: the kernel-recorded uid of the connecting process (SO_PEERCRED) selects a
// principal and its allowed scopes. Unmapped uids are refused unless an `unmapped` grant is
// configured; credentials that cannot be read are `identity_unavailable`, never a guess.
import { readFileSync } from 'node:fs';
import { GateError } from '../errors.ts';
import { IdentityConfigError, type PeercredIdentityConfig, type PrincipalGrant } from './config.ts';
import { loadIdentityAddon, type PeerCredentials } from './native.ts';
import { readPeerCredentials, type PeerSource } from './peer-socket.ts';
import type { Identity, IdentityProvider } from './types.ts';

export interface PeercredProviderDeps {
  /** Reads the peer's credentials; throws when it cannot. Default: SO_PEERCRED via the addon. */
  readCredentials?: (source: PeerSource) => PeerCredentials;
  /** The kernel's overflow uid. Default: /proc/sys/kernel/overflowuid, else 65534. */
  overflowUid?: number;
  /** Key of the identity section in the config file, for error messages. Default `identity`. */
  configKey?: string;
}

interface Grant {
  principal: string;
  scopes: readonly string[] | undefined;
}

function toGrant(grant: PrincipalGrant): Grant {
  return Object.freeze({
    principal: grant.principal,
    scopes: grant.scopes === undefined ? undefined : Object.freeze([...grant.scopes]),
  });
}

function kernelOverflowUid(): number {
  try {
    const value = Number(readFileSync('/proc/sys/kernel/overflowuid', 'utf8').trim());
    if (Number.isSafeInteger(value) && value >= 0) return value;
  } catch {
    // Not Linux procfs: use the kernel default below.
  }
  return 65534;
}

/**
 * Builds the provider from a parsed config (see `parseIdentityConfig`). Throws
 * {@link IdentityConfigError} for a map entry that names the overflow uid, and the addon's load
 * error when the default credential reader is used but the addon is not built: a gate configured
 * for peercred never starts without it.
 */
export function createPeercredProvider(config: PeercredIdentityConfig, deps: PeercredProviderDeps = {}): IdentityProvider {
  const key = deps.configKey ?? 'identity';
  const overflowUid = deps.overflowUid ?? kernelOverflowUid();
  const grants = new Map<number, Grant>();
  for (const [uid, grant] of Object.entries(config.map)) {
    const n = Number(uid);
    // Peers whose uid has no mapping in our user namespace appear as the overflow uid, so
    // mapping it would admit unrelated processes from other containers.
    if (n === overflowUid) {
      throw new IdentityConfigError(
        `${key}.map.${uid}`,
        `is the kernel overflow uid: processes from other user namespaces appear as it; map their real uids instead`,
      );
    }
    grants.set(n, toGrant(grant));
  }
  const unmapped = config.unmapped === undefined ? undefined : toGrant(config.unmapped);
  let readCredentials = deps.readCredentials;
  if (readCredentials === undefined) {
    loadIdentityAddon();
    readCredentials = readPeerCredentials;
  }
  const read = readCredentials;

  return {
    kind: 'peercred',
    identify(source: PeerSource): Promise<Identity> {
      let peer: PeerCredentials;
      try {
        peer = read(source);
      } catch (err) {
        return Promise.reject(new GateError('identity_unavailable', 'cannot read peer credentials', { cause: err }));
      }
      const grant = grants.get(peer.uid) ?? unmapped;
      if (grant === undefined) {
        return Promise.reject(new GateError('identity_denied', `peer uid ${peer.uid} is not mapped to a principal`));
      }
      return Promise.resolve({ principal: grant.principal, scopes: grant.scopes, peer: Object.freeze({ ...peer }) });
    },
  };
}
