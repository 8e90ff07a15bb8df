// Admin routes for the write-only secrets store: set (PUT), list names (GET), remove (DELETE).
// No route ever returns a value; every change is audited with the operator's name and the secret's
// name only. Errors are thrown as GateError for the admin app's error handler.
import { Hono, type Context } from 'hono';
import { decodeJson, readCappedBody } from '../app/common.ts';
import { GateError } from '../errors.ts';
import type { AuditSink } from '../contracts.ts';
import type { GateEnv } from '../http/env.ts';
import { MAX_SECRET_VALUE_BYTES, validateSecretName, validateSecretValue, type SecretsStore } from './store.ts';

export interface SecretsAdminDeps {
  store: SecretsStore;
  audit: AuditSink;
}

/** Room for a maximal value, JSON escaping (up to 6x) and the envelope. */
const MAX_BODY_BYTES = MAX_SECRET_VALUE_BYTES * 6 + 1024;

function operatorName(c: Context<GateEnv>): string {
  const op = c.get('operator');
  // Mounted only behind operator authentication; without an identity (a wiring bug) nothing happens.
  if (!op || typeof op.name !== 'string' || op.name.length === 0) {
    throw new GateError('internal_error', 'secrets admin routes reached without an authenticated operator');
  }
  return op.name;
}

async function readValue(c: Context<GateEnv>): Promise<string> {
  const ct = c.req.header('content-type');
  if (ct === undefined || !/^application\/json\s*(;|$)/i.test(ct)) throw new GateError('unsupported_media_type');
  // Streams with a byte cap: a chunked body is cut at the cap, never buffered whole.
  const body = decodeJson(await readCappedBody(c, MAX_BODY_BYTES));
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new GateError('invalid_input', 'body must be {"value": string}', { extra: { reason: 'body_invalid' } });
  }
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== 'value') {
    throw new GateError('invalid_input', 'body must be {"value": string}', { extra: { reason: 'body_invalid' } });
  }
  return validateSecretValue((body as { value: unknown }).value);
}

/** `PUT/GET/DELETE /v1/admin/secrets[/:name]` for the admin socket. */
export function secretsAdminRoutes(deps: SecretsAdminDeps): Hono<GateEnv> {
  const app = new Hono<GateEnv>();

  app.put('/v1/admin/secrets/:name', async (c) => {
    const operator = operatorName(c);
    const name = validateSecretName(c.req.param('name'));
    const value = await readValue(c);
    const result = await deps.store.set(name, value);
    await deps.audit.append({
      type: 'admin_secret_set',
      decision: 'admin',
      operator,
      trace_id: c.get('traceId'),
      detail: { name, created: result.created },
    });
    return c.json({ name, updated: true });
  });

  app.get('/v1/admin/secrets', async (c) => {
    operatorName(c);
    const secrets = await deps.store.list();
    return c.json({ secrets: secrets.map((s) => ({ name: s.name, updated_at: s.updated_at })), count: secrets.length });
  });

  app.delete('/v1/admin/secrets/:name', async (c) => {
    const operator = operatorName(c);
    const name = validateSecretName(c.req.param('name'));
    if (!(await deps.store.remove(name))) throw new GateError('secret_not_found', 'no such secret', { extra: { name } });
    await deps.audit.append({
      type: 'admin_secret_removed',
      decision: 'admin',
      operator,
      trace_id: c.get('traceId'),
      detail: { name },
    });
    return c.json({ name, deleted: true });
  });

  return app;
}
