// `none` identity: one configured principal for every caller, without looking at the transport.
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { test } from 'node:test';
import { Hono } from 'hono';
import type { GateEnv } from '../../src/http/env.ts';
import { createIdentityProvider } from '../../src/identity/create.ts';

const cases: { name: string; config: unknown; principal: string; scopes?: string[] }[] = [
  { name: 'default principal is agent, any scope', config: { provider: 'none' }, principal: 'agent' },
  { name: 'configured principal, any scope', config: { provider: 'none', principal: 'dev-agent' }, principal: 'dev-agent' },
  { name: 'configured scopes', config: { provider: 'none', scopes: ['tools:call'] }, principal: 'agent', scopes: ['tools:call'] },
];

for (const c of cases) {
  test(`none: ${c.name}, no peer`, async () => {
    const provider = createIdentityProvider(c.config);
    assert.equal(provider.kind, 'none');
    // No socket at all (app.request) is fine: `none` never reads the transport.
    const app = new Hono<GateEnv>();
    app.get('/', async (c2) => c2.json(await provider.identify(c2)));
    const res = await app.request('/');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), c.scopes === undefined ? { principal: c.principal } : { principal: c.principal, scopes: c.scopes });
    assert.deepEqual(await provider.identify(new Socket()), { principal: c.principal, scopes: c.scopes });
  });
}

test('none: the identity is frozen', async () => {
  const identity = await createIdentityProvider({ provider: 'none', scopes: ['x'] }).identify(new Socket());
  assert.throws(() => {
    (identity as { principal: string }).principal = 'root';
  }, TypeError);
  assert.throws(() => (identity.scopes as string[]).push('admin'), TypeError);
});
