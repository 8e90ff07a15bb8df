// The configuration's JSON Schema (additionalProperties: false everywhere): the single source of
// truth for keys, types, defaults and bounds. Environment overrides are typed from it.

import { identityConfigSchema } from '../identity/config.ts';

export const configSchema = {
  $id: 'https://portcullis.dev/schemas/config.json',
  type: 'object',
  additionalProperties: false,
  required: ['mode', 'state_dir'],
  properties: {
    mode: { enum: ['embedded', 'production'] },
    state_dir: { type: 'string', minLength: 1 },
    client_socket: { type: 'string', minLength: 1 },
    admin_socket: { type: 'string', minLength: 1 },
    /** Group that owns the client socket (agents' group); the socket is 0660. */
    client_socket_group: { type: 'string', minLength: 1 },
    public_base_url: { type: 'string', pattern: '^https?://[^/?#]+$' },
    unsafe_expose_http: { type: 'boolean', default: false },
    /** Dev TCP listener (loopback only), used only with unsafe_expose_http. */
    http_listen: { type: 'string', pattern: '^(127\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}|\\[::1\\]|localhost):\\d{1,5}$' },
    unsafe_dev: { type: 'boolean', default: false },
    /** CIDRs that egress may reach over plain http (local testing only). */
    unsafe_egress_allow: { type: 'array', items: { type: 'string', pattern: '^[0-9a-fA-F:.]+/\\d{1,3}$' }, default: [] },
    redis_url: { type: 'string', pattern: '^(redis|rediss|redis\\+unix|unix)://' },
    database_url: { type: 'string', pattern: '^postgres(ql)?://' },
    manifests_dir: { type: 'string', minLength: 1 },
    policy_wasm: { type: 'string', minLength: 1 },
    lease_ttl_seconds: { type: 'integer', minimum: 30, maximum: 3600, default: 300 },
    dpop: {
      type: 'object',
      additionalProperties: false,
      properties: {
        max_age_seconds: { type: 'integer', minimum: 5, maximum: 300, default: 60 },
        max_future_seconds: { type: 'integer', minimum: 0, maximum: 60, default: 5 },
        require_nonce: { type: 'boolean', default: false },
      },
      default: {},
    },
    keys: {
      type: 'object',
      additionalProperties: false,
      properties: { dir: { type: 'string', minLength: 1 } },
      default: {},
    },
    identity: { ...identityConfigSchema, default: { provider: 'none', principal: 'agent' } },
    operators: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'api_key_sha256', 'dpop_jkt'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9_.@-]{1,64}$' },
          api_key_sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
          dpop_jkt: { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$' },
        },
      },
      default: [],
    },
    rate_limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        leases_per_second: { type: 'number', exclusiveMinimum: 0, default: 50 },
        admin_write_per_second: { type: 'number', exclusiveMinimum: 0, default: 20 },
        admin_read_per_second: { type: 'number', exclusiveMinimum: 0, default: 100 },
      },
      default: {},
    },
    secrets: {
      type: 'object',
      additionalProperties: false,
      properties: {
        /** Name of a systemd credential ($CREDENTIALS_DIRECTORY/<name>) holding the 32-byte key. */
        key_credential: { type: 'string', minLength: 1 },
        key_file: { type: 'string', minLength: 1 },
        /** Name of an environment variable holding the key in base64. */
        key_env: { type: 'string', pattern: '^[A-Z_][A-Z0-9_]*$' },
      },
      default: {},
    },
    approvals: {
      type: 'object',
      additionalProperties: false,
      properties: { ttl_seconds: { type: 'integer', minimum: 10, maximum: 604800, default: 3600 } },
      default: {},
    },
    ledger: {
      type: 'object',
      additionalProperties: false,
      properties: {
        checkpoint_every_events: { type: 'integer', minimum: 1, default: 100 },
        checkpoint_every_seconds: { type: 'integer', minimum: 1, default: 60 },
        // Embedded ledger only: see docs/ledger.md ("When a write is durable").
        receipt_fsync: { type: 'string', enum: ['after_reply', 'before_reply'], default: 'after_reply' },
        // Embedded ledger only: a lone request's ledger writes run on the event loop (docs/ledger.md, "Where a batch runs").
        inline_when_alone: { type: 'boolean', default: true },
      },
      default: {},
    },
  },
} as const;
