// DPoP / lease / operator attack suite over the real Unix sockets, run against the embedded
// (SQLite) stores and against a throwaway Redis. Each case names the attack and asserts the code.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { Hono } from 'hono';
import type { GateEnv } from '../../src/http/env.ts';
import type { AuditEventInput } from '../../src/contracts.ts';
import type { Extension } from '../../src/runtime/bootstrap.ts';
import { openKeystore } from '../../src/keys/index.ts';
import { signLease, LEASE_AUDIENCE } from '../../src/auth/lease.ts';
import { startTestGate, newP256, proof, getLease, operatorHeaders, type TestGate, type TestKey } from '../helpers/gate.ts';
import { startRedis, serviceSkipReason, type RedisServer } from '../helpers/services.ts';

const BASE = 'http://localhost';
const PATH = '/v1/test/whoami';

/** A test extension: collects audit events, exposes one lease-authenticated route. */
function testExtension(events: AuditEventInput[]) {
  return async (): Promise<Extension> => {
    const app = new Hono<GateEnv>();
    const whoami = (c: any) => c.json({ principal: c.get('lease').principal, session_id: c.get('lease').sessionId });
    app.post(PATH, whoami);
    app.get(PATH, whoami);
    return {
      audit: { append: async (e) => { events.push(e); } },
      modules: [{ socket: 'client', auth: 'lease', app }],
      health: async () => ({ opa: true, ledger: true, approval_store: true, egress_proxy: null, actions_registered: 0 }),
      close: async () => {},
    };
  };
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** Sends raw header lines (duplicates allowed) to a unix socket. */
function rawRequest(socketPath: string, method: string, path: string, headers: Array<[string, string]>): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: headers.flat() as unknown as Record<string, string>, setHost: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Ctx {
  g: TestGate;
  key: TestKey;
  lease: string;
  session: string;
}

interface Case {
  name: string;
  expect: [number, string];
  headers(ctx: Ctx): Promise<Record<string, string>> | Record<string, string>;
  method?: string;
}

const now = () => Math.floor(Date.now() / 1000);
const p = (ctx: Ctx, over: Partial<Parameters<typeof proof>[0]> = {}) =>
  proof({ key: ctx.key, htm: 'POST', htu: BASE + PATH, token: ctx.lease, ...over });
const auth = (ctx: Ctx, dpop: string, lease = ctx.lease) => ({ authorization: `DPoP ${lease}`, dpop });

function leaseParts(lease: string) {
  const [h, pl] = lease.split('.');
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), payload: JSON.parse(Buffer.from(pl!, 'base64url').toString()) };
}

const cases: Case[] = [
  { name: 'no authorization and no dpop header', expect: [401, 'missing_auth_header'], headers: () => ({}) },
  { name: 'dpop proof without authorization header', expect: [401, 'missing_auth_header'], headers: (c) => ({ dpop: p(c) }) },
  { name: 'authorization without dpop proof', expect: [401, 'missing_auth_header'], headers: (c) => ({ authorization: `DPoP ${c.lease}` }) },
  { name: 'bearer scheme instead of DPoP', expect: [401, 'invalid_lease'], headers: (c) => ({ authorization: `Bearer ${c.lease}`, dpop: p(c) }) },
  { name: 'lease is garbage', expect: [401, 'invalid_lease'], headers: (c) => auth(c, p(c, { token: 'garbage.x.y' }), 'garbage.x.y') },
  {
    name: 'lease with alg none and no signature', expect: [401, 'invalid_lease'], headers: (c) => {
      const { header, payload } = leaseParts(c.lease);
      const forged = `${b64({ ...header, alg: 'none' })}.${b64(payload)}.`;
      return auth(c, p(c, { token: forged }), forged);
    },
  },
  {
    name: 'lease re-signed HS256 with the public JWKS as the secret (alg confusion)', expect: [401, 'invalid_lease'], headers: async (c) => {
      const { header, payload } = leaseParts(c.lease);
      const jwks = JSON.stringify((await c.g.client.send('GET', '/.well-known/jwks.json', {})).body);
      const input = `${b64({ ...header, alg: 'HS256' })}.${b64(payload)}`;
      const forged = `${input}.${createHmac('sha256', jwks).update(input).digest('base64url')}`;
      return auth(c, p(c, { token: forged }), forged);
    },
  },
  {
    name: 'lease payload tampered (principal changed, signature kept)', expect: [401, 'invalid_lease'], headers: (c) => {
      const [h, , s] = c.lease.split('.');
      const { payload } = leaseParts(c.lease);
      const forged = `${h}.${b64({ ...payload, sub: 'root' })}.${s}`;
      return auth(c, p(c, { token: forged }), forged);
    },
  },
  {
    name: 'lease signed by another gate key with the same kid', expect: [401, 'invalid_lease'], headers: async (c) => {
      const dir = mkdtempSync(join(tmpdir(), 'other-gate-'));
      try {
        const other = await openKeystore({ dir });
        const { header, payload } = leaseParts(c.lease);
        const forged = await signLease({ kid: header.kid, privateKey: other.lease.privateKey, publicKey: other.lease.publicKey }, payload);
        return auth(c, p(c, { token: forged }), forged);
      } finally { rmSync(dir, { recursive: true, force: true }); }
    },
  },
  { name: 'proof is not a JWS', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, 'not-a-proof') },
  { name: 'proof alg none', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { header: { alg: 'none' }, signature: '' })) },
  {
    name: 'proof alg HS256 keyed with the public jwk', expect: [401, 'invalid_dpop'], headers: (c) => {
      const header = { typ: 'dpop+jwt', alg: 'HS256', jwk: c.key.jwk };
      const payload = { htm: 'POST', htu: BASE + PATH, iat: now(), jti: `j-${Math.random()}`, ath: createHash('sha256').update(c.lease).digest('base64url') };
      const input = `${b64(header)}.${b64(payload)}`;
      return auth(c, `${input}.${createHmac('sha256', JSON.stringify(c.key.jwk)).update(input).digest('base64url')}`);
    },
  },
  {
    name: 'proof with a P-384 key (wrong curve)', expect: [401, 'invalid_dpop'], headers: (c) => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
      const j = publicKey.export({ format: 'jwk' }) as Record<string, string>;
      return auth(c, proof({ key: { privateKey, jwk: j as any, privateJwk: {} }, htm: 'POST', htu: BASE + PATH, token: c.lease, header: { alg: 'ES384' } }));
    },
  },
  { name: 'proof typ is JWT, not dpop+jwt', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { header: { typ: 'JWT' } })) },
  { name: 'proof signed by another key than its embedded jwk', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { signWith: newP256().privateKey })) },
  { name: 'proof by another key, self-consistent (not the leased key)', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { key: newP256() })) },
  { name: 'proof jwk carries its private part', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { header: { jwk: c.key.privateJwk } })) },
  { name: 'proof with a crit header', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { header: { crit: ['exp'] } })) },
  { name: 'wrong htm (GET proof on POST)', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { htm: 'GET' })) },
  { name: 'htm in lower case', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { htm: 'post' })) },
  { name: 'htu for another path', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { htu: `${BASE}/v1/leases` })) },
  { name: 'htu for another host', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { htu: `http://evil.example${PATH}` })) },
  { name: 'htu with a query string', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { htu: `${BASE}${PATH}?a=1` })) },
  { name: 'htu with a trailing slash', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { htu: `${BASE}${PATH}/` })) },
  { name: 'htu with https scheme instead of http', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { htu: `https://localhost${PATH}` })) },
  { name: 'stale iat (61 s old)', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { iat: now() - 61 })) },
  { name: 'future iat (6 s ahead)', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { iat: now() + 6 })) },
  { name: 'iat as a string', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { payload: { iat: String(now()) } })) },
  { name: 'wrong ath (hash of another token)', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { payload: { ath: createHash('sha256').update('x').digest('base64url') } })) },
  { name: 'missing ath', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { omit: ['ath'] })) },
  { name: 'missing jti', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { omit: ['jti'] })) },
  { name: 'jti too short', expect: [401, 'invalid_dpop'], headers: (c) => auth(c, p(c, { jti: 'x' })) },
  { name: 'control: a valid call passes', expect: [200, ''], headers: (c) => auth(c, p(c)) },
];

function suite(backend: 'embedded' | 'redis') {
  describe(`DPoP attack suite (${backend} stores)`, { skip: backend === 'redis' ? serviceSkipReason('redis') : undefined }, () => {
    let redis: RedisServer | undefined;
    let g: TestGate;
    const events: AuditEventInput[] = [];
    let ctx: Ctx;
    const start = async (dir?: string) => startTestGate({
      dir,
      mode: backend === 'redis' ? 'production' : 'embedded',
      redisUrl: redis?.url,
      databaseUrl: backend === 'redis' ? 'postgresql://unused@/x' : undefined,
      extend: testExtension(events),
    });
    before(async () => {
      if (backend === 'redis') redis = await startRedis();
      g = await start();
      const key = newP256();
      const l = await getLease(g.client, key);
      ctx = { g, key, lease: l.lease_jwt, session: l.session_id };
    });
    after(async () => {
      await g?.stop();
      await redis?.stop();
    });

    for (const c of cases) {
      test(`attack: ${c.name} -> ${c.expect[0]} ${c.expect[1]}`, async () => {
        const res = await g.client.send(c.method ?? 'POST', PATH, await c.headers(ctx));
        assert.equal(res.status, c.expect[0], res.text);
        if (c.expect[1]) {
          assert.deepEqual(res.body, { error: c.expect[1] }, 'constant-shape error body');
          assert.match(String(res.headers['www-authenticate']), /^DPoP /);
        } else {
          assert.equal((res.body as any).principal, 'agent');
          assert.equal((res.body as any).session_id, ctx.session);
        }
      });
    }

    test('attack: duplicated Authorization header -> 401 invalid_lease', async () => {
      const res = await rawRequest(g.config.client_socket, 'POST', PATH, [['host', 'localhost'], ['authorization', `DPoP ${ctx.lease}`], ['authorization', `DPoP ${ctx.lease}`], ['dpop', p(ctx)]]);
      assert.deepEqual([res.status, res.body], [401, { error: 'invalid_lease' }]);
    });

    test('attack: duplicated DPoP header -> 401 invalid_dpop', async () => {
      const res = await rawRequest(g.config.client_socket, 'POST', PATH, [['host', 'localhost'], ['authorization', `DPoP ${ctx.lease}`], ['dpop', p(ctx)], ['dpop', p(ctx)]]);
      assert.deepEqual([res.status, res.body], [401, { error: 'invalid_dpop' }]);
    });

    test('attack: replayed proof (same jti) -> 401 replay_detected', async () => {
      const pr = p(ctx);
      assert.equal((await g.client.send('POST', PATH, auth(ctx, pr))).status, 200);
      const res = await g.client.send('POST', PATH, auth(ctx, pr));
      assert.deepEqual([res.status, res.body], [401, { error: 'replay_detected' }]);
    });

    test('attack: lease request with a private JWK -> 400 invalid_request', async () => {
      const res = await g.client.send('POST', '/v1/leases', {}, JSON.stringify({ scopes: ['tools:call'], dpop_jwk: ctx.key.privateJwk }));
      assert.equal(res.status, 400);
      assert.equal((res.body as any).error, 'invalid_request');
    });

    test('attack: lease request with a P-384 JWK / no scopes / unknown field -> 400', async () => {
      const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'jwk' });
      for (const body of [{ scopes: ['tools:call'], dpop_jwk: p384 }, { dpop_jwk: ctx.key.jwk }, { scopes: [], dpop_jwk: ctx.key.jwk }, { scopes: ['tools:call'], dpop_jwk: ctx.key.jwk, admin: true }]) {
        const res = await g.client.send('POST', '/v1/leases', {}, JSON.stringify(body));
        assert.equal(res.status, 400, JSON.stringify(body));
      }
    });

    test('lease JWT carries the contract claims and JWKS publishes its kid', async () => {
      const { header, payload } = leaseParts(ctx.lease);
      assert.equal(header.alg, 'ES256');
      const jwks = (await g.client.send('GET', '/.well-known/jwks.json', {})).body as { keys: Array<{ kid: string }> };
      assert.ok(jwks.keys.some((k) => k.kid === header.kid));
      assert.equal(payload.aud, LEASE_AUDIENCE);
      assert.equal(payload.sub, 'agent');
      assert.equal(payload.sid, ctx.session);
      assert.deepEqual(payload.scopes, ['tools:call']);
      assert.equal(payload.exp - payload.iat, 300);
      assert.match(payload.cnf.jkt, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(typeof payload.epoch, 'number');
    });

    test('renewal keeps the session and needs the current lease', async () => {
      const res = await g.client.send('POST', '/v1/leases', { authorization: `DPoP ${ctx.lease}`, dpop: proof({ key: ctx.key, htm: 'POST', htu: `${BASE}/v1/leases`, token: ctx.lease }) },
        JSON.stringify({ scopes: ['tools:call'], dpop_jwk: ctx.key.jwk }));
      assert.equal(res.status, 200, res.text);
      assert.equal((res.body as any).session_id, ctx.session);
      const bad = await g.client.send('POST', '/v1/leases', { authorization: `DPoP ${ctx.lease}`, dpop: 'x' }, JSON.stringify({ scopes: ['tools:call'], dpop_jwk: ctx.key.jwk }));
      assert.deepEqual([bad.status, bad.body], [401, { error: 'invalid_dpop' }]);
    });

    test('operator auth: missing, wrong key, client lease, other proof key -> 401; valid -> 200', async () => {
      const path = '/v1/admin/epoch';
      const noAuth = await g.admin.send('GET', path, {});
      assert.deepEqual([noAuth.status, noAuth.body], [401, { error: 'missing_auth_header' }]);
      const good = operatorHeaders(g.operator, 'GET', path);
      const wrongKey = await g.admin.send('GET', path, { ...operatorHeaders({ ...g.operator, api_key: 'pck_wrong' }, 'GET', path) });
      assert.deepEqual([wrongKey.status, wrongKey.body], [401, { error: 'invalid_dpop' }]);
      const withLease = await g.admin.send('GET', path, { authorization: `DPoP ${ctx.lease}`, dpop: proof({ key: ctx.key, htm: 'GET', htu: BASE + path, token: ctx.lease }) });
      assert.deepEqual([withLease.status, withLease.body], [401, { error: 'invalid_dpop' }]);
      const otherKey = newP256();
      const wrongProofKey = await g.admin.send('GET', path, { authorization: `DPoP ${g.operator.api_key}`, dpop: proof({ key: otherKey, htm: 'GET', htu: BASE + path, token: g.operator.api_key }) });
      assert.deepEqual([wrongProofKey.status, wrongProofKey.body], [401, { error: 'invalid_dpop' }]);
      const bearer = await g.admin.send('GET', path, { ...good, authorization: `Bearer ${g.operator.api_key}` });
      assert.deepEqual([bearer.status, bearer.body], [401, { error: 'invalid_dpop' }]);
      const ok = await g.admin.send('GET', path, good);
      assert.equal(ok.status, 200, ok.text);
      const replay = await g.admin.send('GET', path, good);
      assert.deepEqual([replay.status, replay.body], [401, { error: 'replay_detected' }]);
    });

    test('health and readiness on both sockets', async () => {
      for (const t of [g.client, g.admin]) {
        assert.deepEqual((await t.send('GET', '/healthz', {})).body, { status: 'ok' });
        const r = await t.send('GET', '/readyz', {});
        assert.equal(r.status, 200);
        assert.equal((r.body as any).status, 'ready');
        assert.equal((r.body as any).redis, true);
      }
    });

    test('attack: revoke one session, then one principal -> invalid_lease', async () => {
      const k = newP256();
      const l = await getLease(g.client, k);
      const call = (lease: string, key: TestKey) => g.client.send('POST', PATH, { authorization: `DPoP ${lease}`, dpop: proof({ key, htm: 'POST', htu: BASE + PATH, token: lease }) });
      assert.equal((await call(l.lease_jwt, k)).status, 200);
      const rs = await g.admin.send('POST', '/v1/admin/revoke', operatorHeaders(g.operator, 'POST', '/v1/admin/revoke'), JSON.stringify({ session_id: l.session_id }));
      assert.equal(rs.status, 200, rs.text);
      assert.deepEqual((await call(l.lease_jwt, k)).body, { error: 'invalid_lease' });
      assert.equal((await call(ctx.lease, ctx.key)).status, 200, 'other sessions unaffected');
      const rp = await g.admin.send('POST', '/v1/admin/revoke', operatorHeaders(g.operator, 'POST', '/v1/admin/revoke'), JSON.stringify({ principal: 'agent' }));
      assert.equal(rp.status, 200);
      assert.deepEqual((await call(ctx.lease, ctx.key)).body, { error: 'invalid_lease' });
      assert.ok(events.some((e) => e.type === 'admin_revoke_session' && e.operator === 'alice'));
      // A lease issued after the revocation instant works (iat has 1 s precision).
      await new Promise((r) => setTimeout(r, 1100));
      const fresh = await getLease(g.client, k);
      assert.equal((await call(fresh.lease_jwt, k)).status, 200);
    });

    test('attack: lease after revoke-all, and after a restart that followed it -> invalid_lease', async () => {
      const k = newP256();
      const l = await getLease(g.client, k);
      const call = (gate: TestGate) => gate.client.send('POST', PATH, { authorization: `DPoP ${l.lease_jwt}`, dpop: proof({ key: k, htm: 'POST', htu: BASE + PATH, token: l.lease_jwt }) });
      assert.equal((await call(g)).status, 200);
      const before = (await g.admin.send('GET', '/v1/admin/epoch', operatorHeaders(g.operator, 'GET', '/v1/admin/epoch'))).body as any;
      const r = await g.admin.send('POST', '/v1/admin/revoke-all', operatorHeaders(g.operator, 'POST', '/v1/admin/revoke-all'));
      assert.deepEqual(r.body, { previous_epoch: before.current_epoch, current_epoch: before.current_epoch + 1 });
      assert.deepEqual((await call(g)).body, { error: 'invalid_lease' });
      assert.ok(events.some((e) => e.type === 'admin_revoke_all' && e.operator === 'alice'));
      // Restart on the same state (and the same Redis): the old lease is still refused, a new one works.
      const dir = g.dir;
      await g.stop({ keepDir: true });
      g = await start(dir);
      ctx.g = g;
      assert.deepEqual((await call(g)).body, { error: 'invalid_lease' });
      const k2 = newP256();
      const l2 = await getLease(g.client, k2);
      const ok = await g.client.send('POST', PATH, { authorization: `DPoP ${l2.lease_jwt}`, dpop: proof({ key: k2, htm: 'POST', htu: BASE + PATH, token: l2.lease_jwt }) });
      assert.equal(ok.status, 200);
      ctx = { g, key: k2, lease: l2.lease_jwt, session: l2.session_id };
    });

    test('drain: client calls and leases get 503 draining, admin keeps working, idempotent', async () => {
      const d1 = await g.admin.send('POST', '/v1/admin/drain', operatorHeaders(g.operator, 'POST', '/v1/admin/drain'));
      assert.deepEqual(d1.body, { draining: true, already_draining: false, in_flight_executions: 0 });
      const d2 = await g.admin.send('POST', '/v1/admin/drain', operatorHeaders(g.operator, 'POST', '/v1/admin/drain'));
      assert.equal((d2.body as any).already_draining, true);
      assert.deepEqual((await g.client.send('POST', PATH, auth(ctx, p(ctx)))).body, { error: 'draining' });
      const lease = await g.client.send('POST', '/v1/leases', {}, JSON.stringify({ scopes: ['tools:call'], dpop_jwk: ctx.key.jwk }));
      assert.deepEqual([lease.status, lease.body], [503, { error: 'draining' }]);
      const st = await g.admin.send('GET', '/v1/admin/status', operatorHeaders(g.operator, 'GET', '/v1/admin/status'));
      assert.equal((st.body as any).status, 'draining');
    });

    if (backend === 'redis') {
      test('attack: proof replayed against a second gate sharing the Redis -> replay_detected', async () => {
        const g2 = await startTestGate({ mode: 'production', redisUrl: redis!.url, databaseUrl: 'postgresql://unused@/x', extend: testExtension(events), overrides: { keys: { dir: join(g.dir, 'keys') } } });
        try {
          const k = newP256();
          const l = await getLease(g2.client, k);
          const pr = proof({ key: k, htm: 'POST', htu: BASE + PATH, token: l.lease_jwt });
          const h = { authorization: `DPoP ${l.lease_jwt}`, dpop: pr };
          assert.equal((await g2.client.send('POST', PATH, h)).status, 200);
          // g is draining from the previous test, so a third gate on the same keys stands in.
          const g3 = await startTestGate({ mode: 'production', redisUrl: redis!.url, databaseUrl: 'postgresql://unused@/x', extend: testExtension(events), overrides: { keys: { dir: join(g.dir, 'keys') } } });
          try {
            const res = await g3.client.send('POST', PATH, h);
            assert.deepEqual([res.status, res.body], [401, { error: 'replay_detected' }]);
            // Redis stopped mid-run: fail closed with 503, never 200.
            await redis!.pause();
            const down = await g3.client.send('POST', PATH, { authorization: `DPoP ${l.lease_jwt}`, dpop: proof({ key: k, htm: 'POST', htu: BASE + PATH, token: l.lease_jwt }) });
            assert.deepEqual([down.status, down.body], [503, { error: 'replay_cache_unavailable' }]);
            const ready = await g3.client.send('GET', '/readyz', {});
            assert.equal(ready.status, 503);
            await redis!.start();
            let back;
            for (let i = 0; i < 100; i++) {
              back = await g3.client.send('POST', PATH, { authorization: `DPoP ${l.lease_jwt}`, dpop: proof({ key: k, htm: 'POST', htu: BASE + PATH, token: l.lease_jwt }) });
              if (back.status === 200) break;
              await new Promise((r) => setTimeout(r, 50));
            }
            assert.equal(back!.status, 200, 'recovers without a restart');
          } finally { await g3.stop(); }
        } finally { await g2.stop(); }
      });
    }
  });
}

suite('embedded');
suite('redis');
