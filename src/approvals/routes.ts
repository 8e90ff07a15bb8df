// Approval routes. Operator (admin socket): list, show, approve, deny. Agent (client socket): poll.
// Approve = atomic claim -> audit the decision -> executeApproved (the pipeline's approved path) ->
// store the result; only the claim winner executes, and later approves replay the stored result.
import { Hono, type Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { AuditSink, OperatorIdentity } from '../contracts.ts';
import { GateError, errorBody, sanitizeReason, toGateError } from '../errors.ts';
import type { GateEnv } from '../http/env.ts';
import { readJsonBody } from '../app/common.ts';
import { verifyPlanHash } from './plan.ts';
import { DEFAULT_LIST_LIMIT } from './store.ts';
import { APPROVAL_STATES, type ApprovalRecord, type ApprovalState, type ApprovalStore, type StoredResult } from './types.ts';

/** The body of a successful execute (the pipeline owns its exact shape). */
export type ExecuteResponseBody = Record<string, unknown>;

/**
 * Runs an approved plan through the shared tail of the execute pipeline (grant onwards) using the
 * stored plan only, and returns the 200 body. Rejects only with GateError.
 */
export type ExecuteApproved = (
  record: ApprovalRecord,
  ctx: { operator: OperatorIdentity; learnDomain: string | undefined },
) => Promise<ExecuteResponseBody>;

export interface ApprovalAdminRoutesDeps {
  store: ApprovalStore;
  audit: AuditSink;
  executeApproved: ExecuteApproved;
}

const HOSTNAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A learn_domain value: a lowercase DNS hostname with an alphabetic TLD (no IP literals, no
 * wildcards). The approve route also requires it to be one of the plan's target hosts.
 */
export function parseLearnDomain(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const d = value.toLowerCase();
  if (!HOSTNAME.test(d)) throw new GateError('invalid_domain', 'learn_domain is not a hostname');
  return d;
}

/** Lowercase hostnames of a plan's targets (URLs or bare domains). */
export function targetHosts(r: ApprovalRecord): string[] {
  const hosts = r.plan.targets.map((t) => {
    try {
      return new URL(t).hostname.replace(/^\[|\]$/g, '').toLowerCase();
    } catch {
      return t.toLowerCase();
    }
  });
  return [...new Set(hosts)];
}

function operatorOf(c: Context<GateEnv>): OperatorIdentity {
  const op = c.get('operator') as OperatorIdentity | undefined;
  // Mounted without the operator auth middleware would be an open admin API: refuse.
  if (!op || typeof op.name !== 'string' || op.name.length === 0) throw new GateError('missing_auth_header', 'no operator identity on the request');
  return op;
}

function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_LIST_LIMIT;
  if (!/^\d{1,9}$/.test(raw) || Number(raw) < 1) throw new GateError('invalid_input', 'limit must be a positive integer', { extra: { reason: 'limit must be a positive integer' } });
  return Number(raw);
}

function parseStatus(raw: string | undefined): ApprovalState | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!(APPROVAL_STATES as readonly string[]).includes(raw)) {
    throw new GateError('invalid_input', 'unknown status', { extra: { reason: `status must be one of ${APPROVAL_STATES.join(', ')}` } });
  }
  return raw as ApprovalState;
}

/** The list view of a record. */
export function approvalSummary(r: ApprovalRecord): Record<string, unknown> {
  return {
    approval_id: r.approval_id,
    trace_id: r.plan.trace_id,
    action_id: r.plan.action_id,
    action_version: r.plan.action_version,
    risk_level: r.plan.risk_level,
    principal: r.plan.principal,
    session_id: r.plan.session_id,
    state: r.state,
    created_at: r.plan.created_at,
    expires_at: r.plan.expires_at,
    decided_by: r.decided_by,
    decided_at: r.decided_at,
  };
}

/** The review view: every plan field, the plan hash and whether it still verifies, and the lifecycle. */
export function approvalDetail(r: ApprovalRecord): Record<string, unknown> {
  return {
    ...r.plan,
    plan_hash: r.plan_hash,
    plan_hash_verified: verifyPlanHash(r),
    state: r.state,
    claimed_by: r.claimed_by,
    claimed_at: r.claimed_at,
    decided_by: r.decided_by,
    decided_at: r.decided_at,
    deny_reason: r.deny_reason,
    result: r.result,
  };
}

function denyResponse(r: ApprovalRecord): Record<string, unknown> {
  return {
    decision: 'deny',
    trace_id: r.plan.trace_id,
    action_id: r.plan.action_id,
    approval_id: r.approval_id,
    denied_by: r.decided_by,
    deny_reason: r.deny_reason,
  };
}

function notFound(): GateError {
  return new GateError('approval_not_found', 'approval not found or expired');
}

function conflict(state: ApprovalState): GateError {
  return new GateError('approval_conflict', `approval is ${state}`, { extra: { state } });
}

function replay(c: Context<GateEnv>, result: StoredResult): Response {
  return c.json(result.body, result.status as ContentfulStatusCode);
}

/** A deny body is `{reason}`; anything larger than this is refused while streaming (413). */
const MAX_DENY_BODY_BYTES = 64 * 1024;

async function readDenyReason(c: Context<GateEnv>): Promise<string | null> {
  const body = await readJsonBody(c, MAX_DENY_BODY_BYTES, { optional: true });
  if (body === undefined) return null;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new GateError('invalid_input', 'body must be an object', { extra: { reason: 'body must be an object' } });
  for (const k of Object.keys(body)) if (k !== 'reason') throw new GateError('invalid_input', `unknown field: ${k}`, { extra: { reason: `unknown field: ${k}` } });
  const reason = (body as { reason?: unknown }).reason;
  if (reason === undefined || reason === null) return null;
  if (typeof reason !== 'string') throw new GateError('invalid_input', 'reason must be a string', { extra: { reason: 'reason must be a string' } });
  const clean = sanitizeReason(reason);
  return clean.length > 0 ? clean : null;
}

function auditBase(r: ApprovalRecord, operator: string) {
  return {
    decision: 'admin' as const,
    operator,
    trace_id: r.plan.trace_id,
    action_id: r.plan.action_id,
    principal: r.plan.principal,
    session_id: r.plan.session_id,
  };
}

/** Operator routes for the admin socket. Expects `operator` set by the operator auth middleware. */
export function approvalAdminRoutes(deps: ApprovalAdminRoutesDeps): Hono<GateEnv> {
  const { store, audit, executeApproved } = deps;
  const app = new Hono<GateEnv>();

  app.get('/v1/approvals', async (c) => {
    operatorOf(c);
    const status = parseStatus(c.req.query('status'));
    const limit = parseLimit(c.req.query('limit'));
    const records = await store.list({ status, limit });
    return c.json({ approvals: records.map(approvalSummary), count: records.length });
  });

  app.get('/v1/approvals/:id', async (c) => {
    operatorOf(c);
    return c.json(approvalDetail(await store.get(c.req.param('id'))));
  });

  app.post('/v1/approvals/:id/approve', async (c) => {
    const operator = operatorOf(c);
    const id = c.req.param('id');
    const learnDomain = parseLearnDomain(c.req.query('learn_domain'));
    if (learnDomain !== undefined) {
      // Checked before the claim: a mistyped domain must not burn the approval.
      const hosts = targetHosts(await store.get(id));
      if (!hosts.includes(learnDomain)) {
        throw new GateError('invalid_domain', 'learn_domain is not one of the approved targets', { extra: { targets: hosts } });
      }
    }
    const outcome = await store.claim(id, operator.name);
    if (!outcome.won) {
      const cur = outcome.current;
      if (!cur || cur.state === 'expired') throw notFound();
      // Idempotent: a decided approval answers with the result of its one execution.
      if ((cur.state === 'approved' || cur.state === 'failed') && cur.result) return replay(c, cur.result);
      throw conflict(cur.state);
    }
    const { record, claim_token: token } = outcome.claimed;
    const base = auditBase(record, operator.name);

    if (!verifyPlanHash(record)) {
      // The stored plan changed since it was held: never execute it.
      await store.complete(id, 'failed', { status: 500, body: { error: 'internal_error' } }, token);
      await audit.append({ ...base, type: 'approval_plan_mismatch', decision: 'error', reason_code: 'plan_hash_mismatch', detail: { approval_id: id, plan_hash: record.plan_hash } });
      throw new GateError('internal_error', `approval ${id}: plan hash mismatch`);
    }

    try {
      await audit.append({ ...base, type: 'approval_approve', detail: { approval_id: id, plan_hash: record.plan_hash, learn_domain: learnDomain ?? null } });
    } catch (e) {
      // No ledger record of the decision -> no execution; the approval goes back to pending.
      await store.release(id, token).catch(() => false);
      throw e;
    }

    let result: StoredResult;
    let failure: GateError | undefined;
    try {
      result = { status: 200, body: await executeApproved(record, { operator, learnDomain }) };
    } catch (e) {
      failure = toGateError(e);
      result = { status: failure.status, body: errorBody(failure) };
    }
    let stored = false;
    try {
      stored = await store.complete(id, failure ? 'failed' : 'approved', result, token);
    } catch {
      stored = false;
    }
    if (!stored) {
      // The call ran (or failed) but its outcome could not be recorded on the approval; the
      // operator still gets the real answer, and the ledger gets a marker for reconciliation.
      await audit.append({ ...base, type: 'approval_result_not_stored', decision: 'error', detail: { approval_id: id, status: result.status } }).catch(() => {});
    }
    if (failure) throw failure;
    return c.json(result.body, 200);
  });

  app.post('/v1/approvals/:id/deny', async (c) => {
    const operator = operatorOf(c);
    const id = c.req.param('id');
    const reason = await readDenyReason(c);
    const outcome = await store.deny(id, operator.name, reason);
    if (!outcome.denied) {
      const cur = outcome.current;
      if (!cur || cur.state === 'expired') throw notFound();
      if (cur.state === 'denied') return c.json(denyResponse(cur)); // idempotent, already audited
      throw conflict(cur.state);
    }
    const r = outcome.record;
    await audit.append({ ...auditBase(r, operator.name), type: 'approval_deny', reason_code: 'approval_denied', detail: { approval_id: id, deny_reason: reason } });
    return c.json(denyResponse(r));
  });

  return app;
}

export interface ApprovalPollRoutesDeps {
  store: Pick<ApprovalStore, 'pollForSession'>;
}

/** Agent route for the client socket. Expects `lease` set by the lease/DPoP middleware. */
export function approvalPollRoutes(deps: ApprovalPollRoutesDeps): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  app.get('/v1/approvals/:id/poll', async (c) => {
    const lease = c.get('lease') as GateEnv['Variables']['lease'] | undefined;
    if (!lease || typeof lease.sessionId !== 'string' || lease.sessionId.length === 0) {
      throw new GateError('missing_auth_header', 'no lease on the request');
    }
    return c.json(await deps.store.pollForSession(c.req.param('id'), lease.sessionId));
  });
  return app;
}
