import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import type { GateEnv } from '../../src/http/env.ts';
import { loadRegistry, registryRoutes, type Registry } from '../../src/registry/index.ts';

const dir = fileURLToPath(new URL('../../manifests/', import.meta.url));

function appWith(get: () => Registry): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  app.route('/', registryRoutes(get));
  return app;
}

describe('discovery routes', () => {
  const registry = loadRegistry(dir);
  const app = appWith(() => registry);

  test('GET /v1/actions lists summaries only, sorted', async () => {
    const res = await app.request('/v1/actions');
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, unknown>[];
    assert.deepEqual(body.map((a) => a.action_id), registry.ids());
    for (const a of body) {
      assert.deepEqual(Object.keys(a).sort(), ['action_id', 'database_mode', 'description', 'risk_level', 'version']);
      assert.equal(a.database_mode, null);
    }
    const text = JSON.stringify(body);
    assert.ok(!text.includes('sha256:') && !text.includes('Bearer'), 'no digests or secret injection in the list');
  });

  test('GET /v1/actions/:id returns the manifest with secrets by name and required flag only', async () => {
    const res = await app.request('/v1/actions/slack_post');
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, unknown>;
    const m = registry.require('slack_post').manifest;
    assert.equal(body.provider_module_digest, m.provider_module_digest);
    assert.deepEqual(body.request_schema, m.request_schema);
    assert.deepEqual(body.resource_limits, m.resource_limits);
    assert.deepEqual(body.egress, m.egress);
    assert.deepEqual(body.secrets, [{ name: 'slack_bot_token', required: true, description: m.secrets[0]?.description }]);
    assert.ok(!JSON.stringify(body).includes('{value}'), 'injection format not disclosed');
  });

  const notFound = [
    { name: 'unknown action', path: '/v1/actions/nope' },
    { name: 'unknown action schema', path: '/v1/actions/nope/schema/request' },
    { name: 'attack: path traversal id', path: '/v1/actions/..%2Fmanifests%2Fecho' },
    { name: 'attack: prototype key as id', path: '/v1/actions/__proto__' },
    { name: 'attack: prototype key schema', path: '/v1/actions/constructor/schema/request' },
  ];
  for (const c of notFound) {
    test(`${c.name} -> 404 action_not_found`, async () => {
      const res = await app.request(c.path);
      assert.equal(res.status, 404);
      assert.deepEqual(await res.json(), { error: 'action_not_found' });
    });
  }

  test('GET /v1/actions/:id/schema/request returns the request schema', async () => {
    for (const id of registry.ids()) {
      const res = await app.request(`/v1/actions/${id}/schema/request`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), registry.require(id).manifest.request_schema);
    }
  });

  test('a reload swap is visible to the next request', async () => {
    let current = registry;
    const swapping = appWith(() => current);
    assert.equal((await swapping.request('/v1/actions/echo')).status, 200);
    current = new (registry.constructor as new (a: unknown[]) => Registry)(registry.actions().filter((a) => a.manifest.action_id !== 'echo'));
    assert.equal((await swapping.request('/v1/actions/echo')).status, 404);
    assert.equal(((await (await swapping.request('/v1/actions')).json()) as unknown[]).length, registry.size - 1);
  });
});
