export { loadRegistry, Registry, type ActionSummary, type LoadRegistryOptions, type RegisteredAction } from './registry.ts';
export {
  compileManifest,
  createSchemaCompiler,
  manifestRuleViolations,
  ManifestError,
  MANIFEST_SCHEMA,
  WRITE_SIDE_EFFECTS,
  type ActionManifest,
  type CompiledManifest,
  type JsonSchema,
  type ProviderRef,
  type ResourceLimits,
  type SideEffect,
  type Verifier,
} from './manifest.ts';
export { assertRequest, assertResponse, type SchemaViolation } from './validate.ts';
export { publicManifest, registryRoutes, type PublicManifest } from './routes.ts';
