// Action manifests: the JSON Schema check (additionalProperties false everywhere) plus the load-time
// rules a schema cannot express. A manifest that passes is deep-frozen; one that fails names its file
// and every reason. Nothing here touches the module bytes (the sandbox pins those).
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule, { type FormatsPlugin } from 'ajv-formats';
import type { EgressProfile, RiskLevel, SecretDeclaration } from '../contracts.ts';

const addFormats = addFormatsModule as unknown as FormatsPlugin;

export type SideEffect = 'http_read' | 'http_write' | 'notify' | 'vcs_write' | 'chat_write';

export const WRITE_SIDE_EFFECTS: readonly SideEffect[] = ['http_write', 'notify', 'vcs_write', 'chat_write'];

/** A JSON Schema object as written in a manifest (compiled by ajv at load). */
export type JsonSchema = { type: 'object' } & Record<string, unknown>;

export type Verifier =
  | { kind: 'http_status'; expected_status: number[]; required_fields: string[] }
  | { kind: 'none' };

export interface ResourceLimits {
  /** Fuel units per call (one per function entry and loop iteration), across every step. */
  fuel: number;
  /** Cap on the module's linear memory and, separately, on host-side Extism buffers. */
  memory_mb: number;
  /** Wall-clock budget for the whole call, host I/O included. */
  timeout_ms: number;
  /** HTTP requests the provider may ask the host to perform per call. */
  max_io_calls: number;
  /** Body bytes handed back to the provider per response (longer bodies are cut and flagged). */
  max_host_response_bytes: number;
}

export interface ProviderRef {
  /** `providers/<id>`: the AssemblyScript source folder. */
  source: string;
  /** The committed, digest-pinned module, relative to the project root. */
  module: string;
}

/** One action's manifest (`manifests/<action_id>.json`). Frozen once loaded. */
export interface ActionManifest {
  action_id: string;
  version: string;
  description: string;
  tags: string[];
  provider_module_digest: string;
  provider: ProviderRef;
  request_schema: JsonSchema;
  response_schema?: JsonSchema;
  max_request_bytes: number;
  max_response_bytes: number;
  resource_limits: ResourceLimits;
  egress: EgressProfile;
  secrets: SecretDeclaration[];
  risk_level: RiskLevel;
  verifier: Verifier;
  declared_side_effects: SideEffect[];
  required_scopes: string[];
}

/** A manifest that could not be loaded: the file and every reason. Fails the whole registry load. */
export class ManifestError extends Error {
  readonly file: string;
  readonly reasons: string[];

  constructor(file: string, reasons: string[]) {
    super(`${file}: ${reasons.join('; ')}`);
    this.name = 'ManifestError';
    this.file = file;
    this.reasons = reasons;
  }
}

const MANIFEST_SCHEMA_URL = new URL('./manifest.schema.json', import.meta.url);

/** The manifest JSON Schema (src/registry/manifest.schema.json). */
export const MANIFEST_SCHEMA: Record<string, unknown> = JSON.parse(readFileSync(MANIFEST_SCHEMA_URL, 'utf8')) as Record<
  string,
  unknown
>;

let manifestValidator: ValidateFunction | undefined;

function validateManifestShape(doc: unknown): ErrorObject[] {
  if (!manifestValidator) {
    const ajv = new Ajv({ allErrors: true, strict: true });
    manifestValidator = ajv.compile(MANIFEST_SCHEMA);
  }
  return manifestValidator(doc) ? [] : [...(manifestValidator.errors ?? [])];
}

function describe(e: ErrorObject): string {
  const where = e.instancePath === '' ? '(root)' : e.instancePath;
  if (e.keyword === 'additionalProperties') {
    return `${where}: unknown property ${JSON.stringify((e.params as { additionalProperty?: string }).additionalProperty)}`;
  }
  return `${where}: ${e.message ?? e.keyword}`;
}

/** A fresh ajv for one registry's action schemas: strict (unknown keywords and formats are errors). */
export function createSchemaCompiler(): Ajv {
  const ajv = new Ajv({ strict: true, allErrors: false, validateFormats: true });
  addFormats(ajv);
  return ajv;
}

const FORBIDDEN_INJECTION_HEADERS = new Set([
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'upgrade',
  'te',
  'trailer',
  'keep-alive',
  'expect',
]);

/** Rules a JSON Schema cannot express. Returns every violated rule (empty when the manifest is sound). */
export function manifestRuleViolations(m: ActionManifest, expectedId: string): string[] {
  const out: string[] = [];
  if (m.action_id !== expectedId) out.push(`action_id ${JSON.stringify(m.action_id)} does not match the file name ${JSON.stringify(expectedId)}`);
  if (!m.provider.module.startsWith(`${m.provider.source}/`)) out.push('provider.module must live inside provider.source');
  const high = m.risk_level === 'high' || m.risk_level === 'critical';
  if (high && m.verifier.kind === 'none') out.push(`risk_level ${m.risk_level} requires a verifier other than none`);
  if (high && !m.response_schema) out.push(`risk_level ${m.risk_level} requires a response_schema`);
  const io = m.resource_limits.max_io_calls;
  if (m.verifier.kind === 'http_status' && io === 0) out.push('verifier http_status requires max_io_calls >= 1');
  if (io > 0) {
    if (m.egress.allowed_domains.length === 0) out.push('max_io_calls > 0 requires egress.allowed_domains');
    if (m.egress.allowed_methods.length === 0) out.push('max_io_calls > 0 requires egress.allowed_methods');
    if (m.resource_limits.max_host_response_bytes === 0) out.push('max_io_calls > 0 requires max_host_response_bytes > 0');
    if (m.declared_side_effects.length === 0) out.push('an action that performs I/O must declare its side effects');
  } else if (m.secrets.length > 0) {
    out.push('secrets are only injected into host I/O: an action with max_io_calls 0 cannot declare any');
  }
  const writes = m.egress.allowed_methods.filter((x) => x !== 'GET' && x !== 'HEAD');
  if (writes.length > 0 && !m.declared_side_effects.some((s) => WRITE_SIDE_EFFECTS.includes(s))) {
    out.push(`egress allows ${writes.join(', ')} but declared_side_effects names no write sink`);
  }
  const names = new Set<string>();
  const headers = new Set<string>();
  for (const s of m.secrets) {
    if (names.has(s.name)) out.push(`secret ${s.name} is declared twice`);
    names.add(s.name);
    const header = s.inject.type === 'basic' ? 'authorization' : s.inject.header.toLowerCase();
    if (s.inject.type === 'header' && (FORBIDDEN_INJECTION_HEADERS.has(header) || header.startsWith('proxy-'))) {
      out.push(`secret ${s.name} may not be injected into ${s.inject.header}`);
    }
    if (headers.has(header)) out.push(`two secrets are injected into the same header (${header})`);
    headers.add(header);
  }
  return out;
}

/** A loaded manifest with its compiled validators. */
export interface CompiledManifest {
  manifest: ActionManifest;
  validateRequest: ValidateFunction;
  validateResponse: ValidateFunction | undefined;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Validates one parsed manifest document (schema, then rules, then schema compilation) and returns
 * it frozen with its validators. `file` is used in errors; `expectedId` is the file's base name.
 */
export function compileManifest(doc: unknown, file: string, expectedId: string, ajv: Ajv): CompiledManifest {
  const shapeErrors = validateManifestShape(doc);
  if (shapeErrors.length > 0) throw new ManifestError(file, shapeErrors.map(describe));
  const manifest = deepFreeze(structuredClone(doc) as ActionManifest);
  const reasons = manifestRuleViolations(manifest, expectedId);
  if (reasons.length > 0) throw new ManifestError(file, reasons);
  const compile = (schema: JsonSchema, what: string): ValidateFunction => {
    try {
      return ajv.compile(schema);
    } catch (err) {
      throw new ManifestError(file, [`${what} does not compile: ${err instanceof Error ? err.message : String(err)}`]);
    }
  };
  const validateRequest = compile(manifest.request_schema, 'request_schema');
  const validateResponse = manifest.response_schema ? compile(manifest.response_schema, 'response_schema') : undefined;
  return { manifest, validateRequest, validateResponse };
}
