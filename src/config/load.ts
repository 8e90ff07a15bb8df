// Loads the gate's configuration: TOML file -> PORTCULLIS_* environment overrides -> JSON Schema
// (unknown keys rejected, defaults filled) -> cross-key rules -> resolved paths.
// A bad config throws ConfigError naming the key and the reason; the gate never half-starts.
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve, join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { Ajv, type ErrorObject } from 'ajv';
import { configSchema } from './schema.ts';

export interface OperatorConfig { name: string; api_key_sha256: string; dpop_jkt: string }
export type IdentityConfig =
  | { provider: 'none'; principal?: string; scopes?: string[] }
  | {
    provider: 'peercred';
    map: Record<string, { principal: string; scopes?: string[] }>;
    unmapped?: { principal: string; scopes?: string[] };
  };

/** The validated, fully-defaulted configuration with every path made absolute. */
export interface GateConfig {
  mode: 'embedded' | 'production';
  state_dir: string;
  client_socket: string;
  admin_socket: string;
  client_socket_group?: string;
  public_base_url: string;
  unsafe_expose_http: boolean;
  http_listen?: string;
  unsafe_dev: boolean;
  unsafe_egress_allow: string[];
  redis_url?: string;
  database_url?: string;
  manifests_dir: string;
  policy_wasm: string;
  lease_ttl_seconds: number;
  dpop: { max_age_seconds: number; max_future_seconds: number; require_nonce: boolean };
  keys: { dir: string };
  identity: IdentityConfig;
  operators: OperatorConfig[];
  rate_limits: { leases_per_second: number; admin_write_per_second: number; admin_read_per_second: number };
  secrets: { key_credential?: string; key_file?: string; key_env?: string };
  approvals: { ttl_seconds: number };
  ledger: { checkpoint_every_events: number; checkpoint_every_seconds: number; receipt_fsync: 'after_reply' | 'before_reply'; inline_when_alone: boolean };
  /** Directory holding the file the config was read from (relative paths resolve against it). */
  config_dir: string;
}

export class ConfigError extends Error {
  constructor(readonly key: string, readonly reason: string) {
    super(`config: ${key}: ${reason}`);
    this.name = 'ConfigError';
  }
}

const PROJECT_ROOT = resolve(import.meta.dirname, '..', '..');
const ENV_PREFIX = 'PORTCULLIS_';

const ajv = new Ajv({ allErrors: false, useDefaults: true, strict: true, allowUnionTypes: true });
const validate = ajv.compile(configSchema);

type SchemaNode = { type?: string | readonly string[]; properties?: Record<string, SchemaNode>; enum?: readonly unknown[] };

/** Coerces an environment string to the schema type of the key it overrides. */
function coerce(key: string, raw: string, node: SchemaNode | undefined): unknown {
  if (!node) throw new ConfigError(key, 'unknown key (from environment)');
  const type = Array.isArray(node.type) ? node.type[0] : node.type;
  switch (type) {
    case 'boolean':
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new ConfigError(key, `expected true/false, got ${JSON.stringify(raw)}`);
    case 'integer':
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError(key, `expected a number, got ${JSON.stringify(raw)}`);
      return n;
    }
    case 'array':
      if (raw.trim().startsWith('[')) return parseJson(key, raw);
      return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'object':
      return parseJson(key, raw);
    default:
      if (node.properties === undefined && node.type === undefined && node.enum === undefined) return parseJson(key, raw);
      return raw;
  }
}

function parseJson(key: string, raw: string): unknown {
  try { return JSON.parse(raw); } catch { throw new ConfigError(key, 'expected JSON'); }
}

/** Applies PORTCULLIS_KEY and PORTCULLIS_SECTION__KEY overrides (unknown ones are an error). */
export function applyEnv(doc: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  const ignored = new Set(['PORTCULLIS_STATE_DIR_DEFAULT', 'PORTCULLIS_CONFIG', 'PORTCULLIS_ADMIN_SOCKET', 'PORTCULLIS_CREDENTIAL', 'PORTCULLIS_SECRETS_KEY']);
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || ignored.has(name)) continue;
    const path = name.slice(ENV_PREFIX.length).toLowerCase().split('__');
    const keyName = path.join('.');
    let node: SchemaNode | undefined = configSchema as unknown as SchemaNode;
    let target: Record<string, unknown> = doc;
    for (let i = 0; i < path.length; i++) {
      const part = path[i]!;
      node = node?.properties?.[part];
      if (!node) throw new ConfigError(keyName, `unknown key (from environment variable ${name})`);
      if (i === path.length - 1) {
        target[part] = coerce(keyName, raw, node);
      } else {
        const next = target[part];
        if (next === undefined) target[part] = {};
        else if (typeof next !== 'object' || next === null) throw new ConfigError(keyName, 'not a table');
        target = target[part] as Record<string, unknown>;
      }
    }
  }
}

function describe(err: ErrorObject): ConfigError {
  const key = err.instancePath.replace(/^\//, '').replaceAll('/', '.') || '(root)';
  if (err.keyword === 'additionalProperties') {
    const extra = (err.params as { additionalProperty: string }).additionalProperty;
    return new ConfigError(key === '(root)' ? extra : `${key}.${extra}`, 'unknown key');
  }
  if (err.keyword === 'required') {
    const missing = (err.params as { missingProperty: string }).missingProperty;
    return new ConfigError(key === '(root)' ? missing : `${key}.${missing}`, 'required key is missing');
  }
  return new ConfigError(key, err.message ?? 'invalid');
}

/** Validates a parsed document (TOML or built in code) and resolves it into a GateConfig. */
export function resolveConfig(input: Record<string, unknown>, opts: { configDir: string; env?: NodeJS.ProcessEnv }): GateConfig {
  const doc = structuredClone(input);
  applyEnv(doc, opts.env ?? {});
  if (!validate(doc)) throw describe(validate.errors![0]!);
  const c = doc as unknown as Omit<GateConfig, 'config_dir'> & Record<string, unknown>;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(opts.configDir, p));
  const stateDir = abs(c.state_dir);
  const cfg: GateConfig = {
    ...c,
    state_dir: stateDir,
    client_socket: abs(c.client_socket ?? join(stateDir, 'gate.sock')),
    admin_socket: abs(c.admin_socket ?? join(stateDir, 'gate-admin.sock')),
    public_base_url: c.public_base_url ?? 'http://localhost',
    manifests_dir: abs(c.manifests_dir ?? join(PROJECT_ROOT, 'manifests')),
    policy_wasm: abs(c.policy_wasm ?? join(PROJECT_ROOT, 'policy', 'policy.wasm')),
    keys: { dir: abs(c.keys.dir ?? join(stateDir, 'keys')) },
    config_dir: opts.configDir,
  };
  if (cfg.secrets.key_file) cfg.secrets.key_file = abs(cfg.secrets.key_file);
  checkCrossKeyRules(cfg);
  return cfg;
}

function checkCrossKeyRules(cfg: GateConfig): void {
  if (cfg.mode === 'production') {
    if (!cfg.redis_url) throw new ConfigError('redis_url', 'required in production mode');
    if (!cfg.database_url) throw new ConfigError('database_url', 'required in production mode');
    if (cfg.identity.provider === 'none' && !cfg.unsafe_dev) {
      throw new ConfigError('identity.provider', '"none" is for embedded/dev use; production needs "peercred" (or unsafe_dev = true)');
    }
  }
  if (cfg.unsafe_egress_allow.length > 0 && cfg.mode === 'production' && !cfg.unsafe_dev) {
    throw new ConfigError('unsafe_egress_allow', 'refused in production unless unsafe_dev = true');
  }
  if (cfg.unsafe_expose_http && !cfg.http_listen) {
    throw new ConfigError('http_listen', 'required when unsafe_expose_http = true (a loopback address:port)');
  }
  if (cfg.http_listen && !cfg.unsafe_expose_http) {
    throw new ConfigError('http_listen', 'set, but unsafe_expose_http is false');
  }
  if (cfg.client_socket === cfg.admin_socket) throw new ConfigError('admin_socket', 'must differ from client_socket');
  const names = new Set<string>();
  for (const op of cfg.operators) {
    if (names.has(op.name)) throw new ConfigError('operators', `duplicate operator name ${op.name}`);
    names.add(op.name);
  }
}

/** Reads, overrides and validates a TOML config file. */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): GateConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError('(file)', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError('(file)', `TOML syntax error in ${path}: ${(e as Error).message.split('\n')[0]}`);
  }
  return resolveConfig(doc, { configDir: resolve(path, '..'), env });
}
