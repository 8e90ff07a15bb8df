// Discovery routes (unauthenticated, no side effects): the action list, one action's public
// manifest, and its request schema. Secrets appear by name and required flag only; the list carries
// no digests, schemas or secrets. `getRegistry` is read per request so a reload swap is seen at once.
import { Hono } from 'hono';
import { errorBody, GateError } from '../errors.ts';
import type { GateEnv } from '../http/env.ts';
import type { ActionManifest } from './manifest.ts';
import type { Registry } from './registry.ts';

/** The public view of a manifest: everything except how secrets are injected. */
export type PublicManifest = Omit<ActionManifest, 'secrets'> & {
  secrets: { name: string; required: boolean; description?: string }[];
};

export function publicManifest(m: ActionManifest): PublicManifest {
  return {
    ...m,
    secrets: m.secrets.map((s) => (s.description === undefined ? { name: s.name, required: s.required } : { name: s.name, required: s.required, description: s.description })),
  };
}

function notFound(): [Record<string, unknown>, 404] {
  return [errorBody(new GateError('action_not_found')), 404];
}

export function registryRoutes(getRegistry: () => Registry): Hono<GateEnv> {
  const app = new Hono<GateEnv>();

  app.get('/v1/actions', (c) => c.json(getRegistry().summaries()));

  app.get('/v1/actions/:id', (c) => {
    const action = getRegistry().get(c.req.param('id'));
    if (!action) return c.json(...notFound());
    return c.json(publicManifest(action.manifest));
  });

  app.get('/v1/actions/:id/schema/request', (c) => {
    const action = getRegistry().get(c.req.param('id'));
    if (!action || !action.manifest.request_schema) return c.json(...notFound());
    return c.json(action.manifest.request_schema);
  });

  return app;
}
