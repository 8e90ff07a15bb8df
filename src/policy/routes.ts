// Admin routes for policy data (reference/latchgate-api-reference.txt: "Policy management",
// "Approval allowlist", "Learned domains", "Learned paths"). Every body is validated before
// anything changes; every mutation is audited (before it takes effect) with the operator's name.
import { Hono, type Context } from 'hono';
import { decodeJson, readCappedBody } from '../app/common.ts';
import { GateError } from '../errors.ts';
import type { AuditEventInput, AuditSink } from '../contracts.ts';
import type { GateEnv } from '../http/env.ts';
import { ajv } from './schemas.ts';
import type { MutationOptions, PolicyChange, PolicyDataStore } from './data-store.ts';

export interface PolicyAdminDeps {
  store: PolicyDataStore;
  audit: AuditSink;
  /** Cap on a request body in bytes (default 64 KiB; the contract's 1 MB transport cap applies first). */
  maxBodyBytes?: number;
}

// Shapes only: ids, domains and paths are checked by the store, so each gets its contract code.
const aclBody = ajv.compile<{ principal: string; actions: string[] }>({
  type: 'object',
  additionalProperties: false,
  required: ['principal', 'actions'],
  properties: {
    principal: { type: 'string' },
    actions: { type: 'array', minItems: 1, maxItems: 1024, items: { type: 'string' } },
  },
});
const allowlistBody = ajv.compile<{ action_id: string; agent_id: string }>({
  type: 'object',
  additionalProperties: false,
  required: ['action_id', 'agent_id'],
  properties: { action_id: { type: 'string' }, agent_id: { type: 'string' } },
});
const domainBody = ajv.compile<{ action_id: string; domain: string }>({
  type: 'object',
  additionalProperties: false,
  required: ['action_id', 'domain'],
  properties: { action_id: { type: 'string' }, domain: { type: 'string' } },
});
const pathBody = ajv.compile<{ action_id: string; path: string }>({
  type: 'object',
  additionalProperties: false,
  required: ['action_id', 'path'],
  properties: { action_id: { type: 'string' }, path: { type: 'string' } },
});

type Validator<T> = ((v: unknown) => v is T) & { errors?: unknown };

/** Admin routes for the policy ACL, the approval allowlist and learned domains/paths. */
export function policyAdminRoutes(deps: PolicyAdminDeps): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  const { store } = deps;
  const maxBody = deps.maxBodyBytes ?? 64 * 1024;

  async function body<T>(c: Context<GateEnv>, validate: Validator<T>, badShape: 'invalid_request' | 'invalid_input'): Promise<T> {
    // Streams with a byte cap: a chunked body is cut at maxBody, never buffered whole.
    const value = decodeJson(await readCappedBody(c, maxBody));
    if (!validate(value)) throw new GateError(badShape, 'body does not match the schema');
    return value;
  }

  // The audit event is appended before the change takes effect; if it cannot be written, the
  // change is abandoned (the store calls this between staging and commit).
  function audited(c: Context<GateEnv>, extra: Pick<AuditEventInput, 'principal' | 'action_id'> = {}): MutationOptions {
    return {
      beforeCommit: async (change: PolicyChange) => {
        await deps.audit.append({
          type: change.type,
          decision: 'admin',
          operator: c.get('operator').name,
          trace_id: c.get('traceId'),
          ...extra,
          detail: { ...change.detail, changed: change.changed, policy_version: change.policy_version },
        });
      },
    };
  }

  app.get('/v1/admin/policy', (c) => c.json(store.listAcl()));

  app.get('/v1/admin/policy/:principal', (c) => c.json(store.describePrincipal(c.req.param('principal'))));

  app.post('/v1/admin/policy/grant', async (c) => {
    const b = await body(c, aclBody, 'invalid_request');
    return c.json(await store.grant(b.principal, b.actions, audited(c, { principal: b.principal })));
  });

  app.post('/v1/admin/policy/revoke', async (c) => {
    const b = await body(c, aclBody, 'invalid_request');
    return c.json(await store.revoke(b.principal, b.actions, audited(c, { principal: b.principal })));
  });

  // The contract names invalid_input for every bad allowlist id, so a bad shape is invalid_input too.
  app.post('/v1/admin/policy/allowlist', async (c) => {
    const b = await body(c, allowlistBody, 'invalid_input');
    await store.allowlistAdd(b.action_id, b.agent_id, audited(c, { principal: b.agent_id, action_id: b.action_id }));
    return c.json({ ok: true, action_id: b.action_id, agent_id: b.agent_id });
  });

  app.delete('/v1/admin/policy/allowlist', async (c) => {
    const b = await body(c, allowlistBody, 'invalid_input');
    await store.allowlistRemove(b.action_id, b.agent_id, audited(c, { principal: b.agent_id, action_id: b.action_id }));
    return c.json({ ok: true, action_id: b.action_id, agent_id: b.agent_id });
  });

  app.get('/v1/admin/domains', (c) => c.json({ domains: store.listDomains() }));

  app.post('/v1/admin/domains', async (c) => {
    const b = await body(c, domainBody, 'invalid_request');
    const entry = await store.addDomain(b.action_id, b.domain, 'cli', audited(c, { action_id: b.action_id }));
    return c.json({ domain: entry.domain, action_id: entry.action_id });
  });

  app.delete('/v1/admin/domains/clear', async (c) => {
    await store.clearDomains(audited(c));
    return c.json({ cleared: true });
  });

  app.delete('/v1/admin/domains', async (c) => {
    const b = await body(c, domainBody, 'invalid_request');
    await store.removeDomain(b.action_id, b.domain, audited(c, { action_id: b.action_id }));
    return c.json({ removed: true });
  });

  app.get('/v1/admin/paths', (c) => c.json({ paths: store.listPaths() }));

  app.post('/v1/admin/paths', async (c) => {
    const b = await body(c, pathBody, 'invalid_request');
    const entry = await store.addPath(b.action_id, b.path, 'cli', audited(c, { action_id: b.action_id }));
    return c.json({ path: entry.path, action_id: entry.action_id });
  });

  app.delete('/v1/admin/paths/clear', async (c) => {
    await store.clearPaths(audited(c));
    return c.json({ cleared: true });
  });

  app.delete('/v1/admin/paths', async (c) => {
    const b = await body(c, pathBody, 'invalid_request');
    await store.removePath(b.action_id, b.path, audited(c, { action_id: b.action_id }));
    return c.json({ removed: true });
  });

  return app;
}
