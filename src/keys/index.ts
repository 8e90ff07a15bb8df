export { openKeystore, Keystore, type KeystoreOptions, type SigningKey } from './keystore.ts';
export { KeystoreError, type KeystoreErrorCode } from './errors.ts';
export { PublicKeySet, toKeySet, type SignatureCheck } from './key-set.ts';
export {
  jwkThumbprint, makeKid, kidMatchesKey, parsePublicJwk, publicJwkOf, algForPurpose, KEY_PURPOSES,
  type KeyPurpose, type PublicJwk, type OkpPublicJwk, type EcPublicJwk, type Jwks,
} from './jwk.ts';
