// Operator operations beyond the contract's core: unresolved intents, receipt key rotation,
// signed audit export, reload, and per-principal budgets. Mutations are audited by name.
import { Hono } from 'hono';
import { GateError, sanitizeReason } from '../errors.ts';
import type { GateEnv } from '../http/env.ts';
import type { AuditSink } from '../contracts.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { Keystore } from '../keys/index.ts';
import type { BudgetStore } from '../budgets/types.ts';
import { validatePrincipalBudget } from '../budgets/index.ts';
import type { ApprovalStore } from '../approvals/types.ts';
import { exportBundle } from '../ledger/bundle.ts';
import { readJsonBody } from './common.ts';

export interface AdminOpsDeps {
  ledger: Ledger;
  keystore: Keystore;
  budgets: BudgetStore;
  approvals: ApprovalStore;
  audit: AuditSink;
  reload(): Promise<Record<string, unknown>>;
}

const PRINCIPAL = /^[A-Za-z0-9_.:@-]{1,128}$/;

export function adminOpsRoutes(d: AdminOpsDeps): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  const op = (c: { get(k: 'operator'): { name: string } }) => c.get('operator').name;

  app.get('/v1/admin/intents', async (c) => {
    const intents = await d.ledger.unresolvedIntents({ limit: 500 });
    return c.json({
      count: await d.ledger.countUnresolvedIntents(),
      intents: intents.map((i) => ({
        intent_id: i.intent_id, trace_id: i.trace_id, grant_id: i.grant_id, action_id: i.action_id, action_version: i.action_version,
        principal: i.principal, session_id: i.session_id, request_hash: i.request_hash, plan_hash: i.plan_hash, created_at: i.created_at,
      })),
    });
  });

  app.post('/v1/admin/keys/rotate', async (c) => {
    const previous = d.keystore.receipt.kid;
    const key = await d.keystore.rotateReceiptKey();
    await d.audit.append({ type: 'admin_receipt_key_rotated', decision: 'admin', operator: op(c), trace_id: c.get('traceId'), detail: { previous_kid: previous, kid: key.kid } });
    return c.json({ kid: key.kid, previous_kid: previous, keys_served: d.keystore.receiptJwks().keys.length });
  });

  app.get('/v1/admin/audit/export', async (c) => {
    const bundle = await exportBundle(d.ledger, d.keystore);
    await d.audit.append({ type: 'admin_audit_export', decision: 'admin', operator: op(c), trace_id: c.get('traceId'), detail: { events: bundle.events.length } });
    return c.json(bundle);
  });

  app.post('/v1/admin/reload', async (c) => {
    let result: Record<string, unknown>;
    try {
      result = await d.reload();
    } catch (e) {
      const reason = e instanceof GateError && e.code === 'reload_failed' && e.cause instanceof Error ? e.cause.message : e instanceof Error ? e.message : String(e);
      await d.audit.append({ type: 'admin_reload', decision: 'error', operator: op(c), trace_id: c.get('traceId'), reason_code: 'reload_failed', detail: { reason: reason.slice(0, 500) } }).catch(() => {});
      // An operator needs the reason to fix the file: reload_failed carries it (admin socket only).
      return c.json({ error: 'reload_failed', reason: sanitizeReason(reason) }, 500);
    }
    await d.audit.append({ type: 'admin_reload', decision: 'admin', operator: op(c), trace_id: c.get('traceId'), detail: result as Record<string, unknown> });
    return c.json({ manifests_loaded: result.manifests_loaded, policy_reloaded: result.policy_reloaded, reloaded_at: result.reloaded_at });
  });

  app.get('/v1/admin/budgets', async (c) => c.json({ budgets: await d.budgets.listPrincipalBudgets() }));

  app.put('/v1/admin/budgets', async (c) => {
    const body = await readJsonBody(c, 16 * 1024);
    let budget;
    try {
      budget = validatePrincipalBudget(body);
    } catch (e) {
      throw new GateError('invalid_input', e instanceof Error ? e.message : 'invalid budget', { extra: { detail: e instanceof Error ? e.message : 'invalid budget' } });
    }
    const saved = await d.budgets.setPrincipalBudget(budget);
    await d.audit.append({ type: 'admin_budget_set', decision: 'admin', operator: op(c), principal: saved.principal, trace_id: c.get('traceId'), detail: saved as unknown as Record<string, unknown> });
    return c.json(saved);
  });

  app.delete('/v1/admin/budgets', async (c) => {
    const body = (await readJsonBody(c, 4096)) as { principal?: unknown };
    if (typeof body?.principal !== 'string' || !PRINCIPAL.test(body.principal)) throw new GateError('invalid_input', 'body must be {"principal": …}');
    const removed = await d.budgets.removePrincipalBudget(body.principal);
    if (!removed) throw new GateError('principal_not_found');
    await d.audit.append({ type: 'admin_budget_removed', decision: 'admin', operator: op(c), principal: body.principal, trace_id: c.get('traceId') });
    return c.json({ removed: true });
  });
  return app;
}
