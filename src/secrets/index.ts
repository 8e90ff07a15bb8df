// Re-exports of the secrets store's public surface.
export {
  loadSecretKey,
  generateKeyFile,
  loadOrCreateKeyFile,
  decodeSecretKey,
  SecretKeyError,
  SECRET_KEY_BYTES,
  type SecretKeyConfig,
  type SecretKeySource,
  type LoadedSecretKey,
} from './key.ts';
export { SecretCipher, type EncryptedSecret } from './cipher.ts';
export {
  SqliteSecretsStore,
  validateSecretName,
  validateSecretValue,
  SECRET_NAME,
  MAX_SECRET_VALUE_BYTES,
  type SecretsStore,
  type SecretInfo,
  type SqliteSecretsStoreOptions,
} from './store.ts';
export { secretsAdminRoutes, type SecretsAdminDeps } from './routes.ts';
