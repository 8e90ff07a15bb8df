// Admin core: status, drain (idempotent, irreversible), the kill switch (revoke-all + epoch),
// and revocation of one session or of every lease of one principal. Mutations are audited.
import { Hono } from 'hono';
import { Ajv } from 'ajv';
import { GateError } from '../errors.ts';
import type { GateEnv } from '../http/env.ts';
import type { GateServices } from '../gate.ts';
import { readJsonBody } from './common.ts';

const ajv = new Ajv({ strict: true });
const ID = '^[A-Za-z0-9_.:@-]{1,128}$';
const validateRevoke = ajv.compile({
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  maxProperties: 1,
  properties: { session_id: { type: 'string', pattern: ID }, principal: { type: 'string', pattern: ID } },
});

export function adminCoreRoutes(s: GateServices): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  // Revocation marks must outlive every lease they cover, and every approval held by one of those
  // leases (the approved path re-checks the requester's session and principal before it runs).
  const revokeTtlMs = (Math.max(s.config.lease_ttl_seconds, s.config.approvals.ttl_seconds) + 60) * 1000;

  app.get('/v1/admin/status', async (c) => {
    const h = await s.health().catch(() => undefined);
    const extra = (await s.status?.().catch(() => undefined)) ?? {};
    const epoch = await s.revocation.currentEpoch().catch(() => null);
    const depsOk = Boolean(h?.redis && h?.opa && h?.ledger);
    return c.json({
      status: s.state.draining ? 'draining' : depsOk ? 'ok' : 'degraded',
      version: s.version,
      uptime_seconds: Math.floor((s.clock.now() - s.state.startedAt) / 1000),
      actions_registered: h?.actions_registered ?? 0,
      pending_approvals: 0,
      revocation_epoch: epoch,
      draining: s.state.draining,
      in_flight_executions: s.state.inFlight,
      unresolved_intents: 0,
      dependencies: { redis: h?.redis ?? false, opa: h?.opa ?? false, ledger: h?.ledger ?? false },
      webhooks: { active: false, pending_deliveries: 0 },
      ...extra,
    });
  });

  app.post('/v1/admin/drain', async (c) => {
    const already = s.state.draining;
    s.state.draining = true;
    if (!already) {
      await s.audit.append({ type: 'admin_drain', decision: 'admin', operator: c.get('operator').name, trace_id: c.get('traceId') });
    }
    return c.json({ draining: true, already_draining: already, in_flight_executions: s.state.inFlight });
  });

  app.post('/v1/admin/revoke-all', async (c) => {
    const [previous, current] = await s.revocation.advanceEpoch();
    await s.hooks.onEpochAdvanced?.(previous, current, c.get('operator').name);
    await s.audit.append({
      type: 'admin_revoke_all', decision: 'admin', operator: c.get('operator').name, trace_id: c.get('traceId'),
      detail: { previous_epoch: previous, current_epoch: current },
    });
    return c.json({ previous_epoch: previous, current_epoch: current });
  });

  app.get('/v1/admin/epoch', async (c) => c.json({ current_epoch: await s.revocation.currentEpoch() }));

  app.post('/v1/admin/revoke', async (c) => {
    const body = await readJsonBody(c, 4096);
    if (!validateRevoke(body)) throw new GateError('invalid_input', 'body must be {"session_id": …} or {"principal": …}');
    const b = body as { session_id?: string; principal?: string };
    if (b.session_id) await s.revocation.revokeSession(b.session_id, revokeTtlMs);
    else await s.revocation.revokePrincipal(b.principal!, s.clock.now(), revokeTtlMs);
    await s.audit.append({
      type: b.session_id ? 'admin_revoke_session' : 'admin_revoke_principal', decision: 'admin',
      operator: c.get('operator').name, trace_id: c.get('traceId'),
      ...(b.session_id ? { session_id: b.session_id } : { principal: b.principal }),
    });
    return c.json({ revoked: true, ...b });
  });
  return app;
}
