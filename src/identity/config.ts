// Identity configuration: the TypeScript shapes, the JSON Schema fragment the gate's config schema
// embeds under `identity`, and a parser that validates against that same schema plus the rules a
// schema cannot express (uid range). A config that could never admit anyone is refused.
import { Ajv, type ErrorObject } from 'ajv';

/** A principal and the scopes it may request in a lease (absent = any scope). */
export interface PrincipalGrant {
  principal: string;
  scopes?: string[];
}

/** `none`: every caller is one configured principal. Embedded/dev mode only. */
export interface NoneIdentityConfig {
  provider: 'none';
  /** Defaults to {@link DEFAULT_PRINCIPAL}. */
  principal?: string;
  /** Scopes that principal may request (absent = any scope). */
  scopes?: string[];
}

/** `peercred`: the caller's uid (SO_PEERCRED) selects the principal. */
export interface PeercredIdentityConfig {
  provider: 'peercred';
  /** Decimal uid (no sign, no leading zeros, 0..4294967294) → grant. */
  map: Record<string, PrincipalGrant>;
  /** Grant for any uid not in `map`; when absent, unmapped uids are refused (`identity_denied`). */
  unmapped?: PrincipalGrant;
}

export type IdentityConfig = NoneIdentityConfig | PeercredIdentityConfig;
export type IdentityProviderKind = IdentityConfig['provider'];

export const IDENTITY_PROVIDER_KINDS: readonly IdentityProviderKind[] = ['none', 'peercred'];
export const DEFAULT_PRINCIPAL = 'agent';
/** The largest uid a peer can have: (uid_t)-1 means "no uid" to the kernel. */
export const MAX_UID = 4294967294;

const principalSchema = {
  type: 'string',
  pattern: '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$',
  description: 'Principal name: 1-128 characters, [A-Za-z0-9._:@-], starting with a letter or digit.',
} as const;

const scopesSchema = {
  type: 'array',
  uniqueItems: true,
  items: { type: 'string', pattern: '^[\\x21-\\x7e]{1,128}$' },
  description: 'Scopes this principal may request in a lease (printable ASCII, no spaces). Absent = any scope.',
} as const;

const grantSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['principal'],
  properties: { principal: principalSchema, scopes: scopesSchema },
} as const;

/** JSON Schema (draft-07) for `{ provider: 'none', principal?, scopes? }`. */
export const noneIdentityConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['provider'],
  properties: {
    provider: { const: 'none' },
    principal: principalSchema,
    scopes: scopesSchema,
  },
} as const;

/** JSON Schema (draft-07) for `{ provider: 'peercred', map, unmapped? }`. */
export const peercredIdentityConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['provider', 'map'],
  properties: {
    provider: { const: 'peercred' },
    map: {
      type: 'object',
      description: 'Decimal uid (0..4294967294, no leading zeros) → { principal, scopes? }.',
      propertyNames: { pattern: '^(0|[1-9][0-9]{0,9})$' },
      additionalProperties: grantSchema,
    },
    unmapped: grantSchema,
  },
} as const;

/**
 * JSON Schema (draft-07) fragment for the `identity` section of the gate config. Uses only core
 * keywords (no ajv options needed). Parse with {@link parseIdentityConfig} for the checks a schema
 * cannot express (uid ≤ 4294967294, at least one admissible caller).
 */
export const identityConfigSchema = {
  oneOf: [noneIdentityConfigSchema, peercredIdentityConfigSchema],
} as const;

/** A bad identity configuration: `key` is the dotted path (`identity.map.1000.principal`). */
export class IdentityConfigError extends Error {
  readonly code = 'ERR_IDENTITY_CONFIG';
  readonly key: string;
  readonly reason: string;

  constructor(key: string, reason: string) {
    super(`${key}: ${reason}`);
    this.name = 'IdentityConfigError';
    this.key = key;
    this.reason = reason;
  }
}

const ajv = new Ajv({ allErrors: false, strict: true });
const validateNone = ajv.compile<NoneIdentityConfig>(noneIdentityConfigSchema);
const validatePeercred = ajv.compile<PeercredIdentityConfig>(peercredIdentityConfigSchema);

// ajv marks an error raised inside `propertyNames` with the offending key (the map's uid key is
// the only `propertyNames` in these schemas).
type AjvError = ErrorObject & { propertyName?: string };

function keyOf(base: string, error: AjvError): string {
  const segments = error.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (error.keyword === 'additionalProperties') segments.push(String(error.params.additionalProperty));
  if (error.keyword === 'required') segments.push(String(error.params.missingProperty));
  if (error.propertyName !== undefined) segments.push(error.propertyName);
  return [base, ...segments].join('.');
}

function reasonOf(error: AjvError): string {
  if (error.keyword === 'additionalProperties') return 'unknown key';
  if (error.propertyName !== undefined) return 'not a decimal uid (0..4294967294, no sign, no leading zeros)';
  return error.message ?? error.keyword;
}

/**
 * Validates an `identity` config section and returns it typed. Throws {@link IdentityConfigError}
 * naming the key and the reason. `key` is the section's own path in the config file.
 */
export function parseIdentityConfig(value: unknown, key = 'identity'): IdentityConfig {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new IdentityConfigError(key, 'must be a table/object');
  }
  const provider = (value as { provider?: unknown }).provider;
  if (provider === 'none') {
    if (!validateNone(value)) throw schemaError(key, validateNone.errors);
    return value;
  }
  if (provider === 'peercred') {
    if (!validatePeercred(value)) throw schemaError(key, validatePeercred.errors);
    for (const uid of Object.keys(value.map)) {
      if (Number(uid) > MAX_UID) throw new IdentityConfigError(`${key}.map.${uid}`, `uid must be <= ${MAX_UID}`);
    }
    if (Object.keys(value.map).length === 0 && value.unmapped === undefined) {
      throw new IdentityConfigError(`${key}.map`, 'is empty and no `unmapped` grant is set: no caller could ever be admitted');
    }
    return value;
  }
  throw new IdentityConfigError(
    `${key}.provider`,
    `unknown identity provider ${JSON.stringify(provider)}; known: ${IDENTITY_PROVIDER_KINDS.join(', ')}`,
  );
}

function schemaError(key: string, errors: ErrorObject[] | null | undefined): IdentityConfigError {
  const first = errors?.[0];
  if (!first) return new IdentityConfigError(key, 'invalid');
  return new IdentityConfigError(keyOf(key, first), reasonOf(first));
}
