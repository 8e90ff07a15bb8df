// Core features beside the attack suite: peercred identity wired into lease issuance, the DPoP
// server nonce with the client's single retry, the lease rate limit, and config validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Hono } from 'hono';
import type { GateEnv } from '../../src/http/env.ts';
import type { Extension } from '../../src/runtime/bootstrap.ts';
import { PortcullisClient } from '../../src/client/index.ts';
import { resolveConfig, ConfigError } from '../../src/config/load.ts';
import { startTestGate, newP256, getLease } from '../helpers/gate.ts';

const ext = async (): Promise<Extension> => {
  const app = new Hono<GateEnv>();
  app.get('/v1/test/whoami', (c) => c.json({ principal: c.get('lease').principal }));
  return {
    audit: { append: async () => {} },
    modules: [{ socket: 'client', auth: 'lease', app }],
    health: async () => ({ opa: true, ledger: true, approval_store: true, egress_proxy: null, actions_registered: 0 }),
    close: async () => {},
  };
};

test('peercred: the peer uid maps to its principal; an unmapped uid is refused 403 identity_denied', async () => {
  const uid = process.getuid!();
  const g = await startTestGate({ extend: ext, overrides: { identity: { provider: 'peercred', map: { [String(uid)]: { principal: 'ops-bot', scopes: ['tools:call'] } } } } });
  try {
    const key = newP256();
    const l = await getLease(g.client, key);
    const sub = JSON.parse(Buffer.from(l.lease_jwt.split('.')[1]!, 'base64url').toString()).sub;
    assert.equal(sub, 'ops-bot');
    const wide = await g.client.send('POST', '/v1/leases', {}, JSON.stringify({ scopes: ['tools:call', 'admin:all'], dpop_jwk: key.jwk }));
    assert.deepEqual([wide.status, (wide.body as any).error], [403, 'identity_denied']);
  } finally { await g.stop(); }
  const other = uid === 4242 ? 4243 : 4242;
  const g2 = await startTestGate({ extend: ext, overrides: { identity: { provider: 'peercred', map: { [String(other)]: { principal: 'someone' } } } } });
  try {
    const res = await g2.client.send('POST', '/v1/leases', {}, JSON.stringify({ scopes: ['tools:call'], dpop_jwk: newP256().jwk }));
    assert.deepEqual([res.status, res.body], [403, { error: 'identity_denied' }]);
  } finally { await g2.stop(); }
});

test('DPoP nonce required: the client retries use_dpop_nonce once and succeeds', async () => {
  const g = await startTestGate({ extend: ext, overrides: { dpop: { require_nonce: true } } });
  const c = new PortcullisClient({ socketPath: g.config.client_socket });
  try {
    await c.connect();
    const res = await c.call('GET', '/v1/test/whoami');
    assert.equal(res.status, 200, res.text);
    assert.equal(typeof res.headers['dpop-nonce'], 'string');
  } finally { c.close(); await g.stop(); }
});

test('lease issuance is rate limited: 429 rate_limit_exceeded past the bucket', async () => {
  const g = await startTestGate({ extend: ext, overrides: { rate_limits: { leases_per_second: 3 } } });
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await g.client.send('POST', '/v1/leases', {}, JSON.stringify({ scopes: ['tools:call'], dpop_jwk: newP256().jwk }));
      statuses.push(r.status);
      if (r.status === 429) assert.deepEqual(r.body, { error: 'rate_limit_exceeded' });
    }
    assert.ok(statuses.filter((s) => s === 200).length <= 4, statuses.join(','));
    assert.ok(statuses.includes(429));
  } finally { await g.stop(); }
});

const configCases: Array<{ name: string; doc: Record<string, unknown>; key: string }> = [
  { name: 'unknown top-level key', doc: { bogus: 1 }, key: 'bogus' },
  { name: 'lease ttl above 3600', doc: { lease_ttl_seconds: 3601 }, key: 'lease_ttl_seconds' },
  { name: 'public_base_url with a path', doc: { public_base_url: 'http://localhost/x' }, key: 'public_base_url' },
  { name: 'dev TCP on a non-loopback address', doc: { unsafe_expose_http: true, http_listen: '0.0.0.0:8080' }, key: 'http_listen' },
  { name: 'dev TCP without unsafe_expose_http', doc: { http_listen: '127.0.0.1:8080' }, key: 'http_listen' },
  { name: 'production without redis_url', doc: { mode: 'production', database_url: 'postgresql://x@/y' }, key: 'redis_url' },
  { name: 'production with identity none', doc: { mode: 'production', redis_url: 'redis://x', database_url: 'postgresql://x@/y' }, key: 'identity.provider' },
  { name: 'unsafe egress in production without unsafe_dev', doc: { mode: 'production', redis_url: 'redis://x', database_url: 'postgresql://x@/y', identity: { provider: 'peercred', map: { '1000': { principal: 'a' } } }, unsafe_egress_allow: ['127.0.0.0/8'] }, key: 'unsafe_egress_allow' },
  { name: 'operator api key hash malformed', doc: { operators: [{ name: 'a', api_key_sha256: 'zz', dpop_jkt: 'A'.repeat(43) }] }, key: 'operators.0.api_key_sha256' },
  { name: 'unknown nested key', doc: { dpop: { max_age: 3 } }, key: 'dpop.max_age' },
];
for (const c of configCases) {
  test(`config refused: ${c.name} -> names ${c.key}`, () => {
    assert.throws(() => resolveConfig({ mode: 'embedded', state_dir: '/tmp/x', ...c.doc }, { configDir: '/tmp' }), (e: unknown) => e instanceof ConfigError && e.key === c.key);
  });
}

test('config: environment overrides are typed; an unknown PORTCULLIS_ variable is refused', () => {
  const cfg = resolveConfig({ mode: 'embedded', state_dir: '/tmp/x' }, { configDir: '/tmp', env: { PORTCULLIS_LEASE_TTL_SECONDS: '900', PORTCULLIS_DPOP__REQUIRE_NONCE: 'true' } });
  assert.equal(cfg.lease_ttl_seconds, 900);
  assert.equal(cfg.dpop.require_nonce, true);
  assert.throws(() => resolveConfig({ mode: 'embedded', state_dir: '/tmp/x' }, { configDir: '/tmp', env: { PORTCULLIS_NOPE: '1' } }), ConfigError);
  assert.throws(() => resolveConfig({ mode: 'embedded', state_dir: '/tmp/x' }, { configDir: '/tmp', env: { PORTCULLIS_LEASE_TTL_SECONDS: 'soon' } }), ConfigError);
});
