export {
  DEFAULT_PRINCIPAL,
  IDENTITY_PROVIDER_KINDS,
  IdentityConfigError,
  MAX_UID,
  identityConfigSchema,
  noneIdentityConfigSchema,
  parseIdentityConfig,
  peercredIdentityConfigSchema,
} from './config.ts';
export type { IdentityConfig, IdentityProviderKind, NoneIdentityConfig, PeercredIdentityConfig, PrincipalGrant } from './config.ts';
export { createIdentityProvider } from './create.ts';
export {
  IDENTITY_ADDON_BUILD_COMMAND,
  IDENTITY_ADDON_PATH,
  IdentityAddonError,
  loadIdentityAddon,
  peercred,
  sdNotify,
} from './native.ts';
export type { IdentityAddon, PeerCredentials } from './native.ts';
export { createNoneProvider } from './none.ts';
export { PeerSocketError, peerSocket, readPeerCredentials, socketFd } from './peer-socket.ts';
export type { PeerSource } from './peer-socket.ts';
export { createPeercredProvider } from './peercred.ts';
export type { PeercredProviderDeps } from './peercred.ts';
export { authorizeScopes } from './scopes.ts';
export type { Identity, IdentityProvider } from './types.ts';
