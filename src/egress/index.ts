// Re-exports of the egress guard's public surface.
export {
  classifyAddress,
  isPublicAddress,
  isMetadataHostname,
  parseAddress,
  parseCidr,
  UnsafeRanges,
  METADATA_HOSTNAMES,
  type AddressCategory,
  type AddressClassification,
  type Cidr,
  type ParsedAddress,
} from './address.ts';
export {
  precheck,
  parseTarget,
  hasForbiddenUrlChars,
  normalizeDomainPattern,
  compileDomainPatterns,
  hostMatches,
  type DomainPattern,
  type EgressTarget,
  type HostKind,
  type PrecheckOptions,
  type PrecheckResult,
} from './url.ts';
export { scrubSecrets, secretForms, SecretScrubber, REDACTED } from './scrub.ts';
export { prepareSecrets, sanitizeProviderHeaders, filterResponseHeaders, isReservedHeader, type SecretMaterial } from './inject.ts';
export {
  EgressGuard,
  systemResolver,
  type EgressAuditNote,
  type EgressFetchContext,
  type EgressGuardOptions,
  type EgressLimits,
  type ResolvedAddress,
  type Resolver,
} from './guard.ts';
