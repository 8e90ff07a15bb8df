// HTTP entry points of the pipeline: POST /v1/actions/{id}/execute and /preflight on the client
// socket (lease-authenticated), and the approved path called by the operator's approve route.
import { Hono } from 'hono';
import type { GateEnv } from '../http/env.ts';
import { GateError } from '../errors.ts';
import { readJsonBody } from '../app/common.ts';
import type { ExecContext, PipelineDeps } from './context.ts';
import { APPROVED, EXECUTE, runPreflight, runStages, type Outcome } from './pipeline.ts';
import type { ApprovalRecord } from '../approvals/types.ts';
import type { OperatorIdentity } from '../contracts.ts';
import { IDEMPOTENCY_KEY, idempotencyFingerprint, type IdempotencyStore } from '../idempotency/index.ts';
import { hashRequest } from './stages/input.ts';
import { publish } from '../observe.ts';

const ACTION_ID = /^[a-z][a-z0-9_]{0,63}$/;

export interface PipelineRouteDeps extends PipelineDeps {
  idempotency?: IdempotencyStore;
}

function newCtx(c: import('hono').Context<GateEnv>, deps: PipelineDeps, mode: 'execute' | 'preflight', body: unknown): ExecContext {
  const id = c.req.param('id') ?? '';
  if (!ACTION_ID.test(id)) throw new GateError('action_not_found');
  const l = c.get('lease');
  return {
    mode,
    traceId: c.get('traceId'),
    actionId: id,
    lease: { principal: l.principal, sessionId: l.sessionId, scopes: l.scopes, budgets: l.budgets, epoch: l.epoch, jkt: l.jkt },
    body,
    startedAt: deps.clock.now(),
    config: deps.active(),
  };
}

function send(c: import('hono').Context<GateEnv>, out: Outcome) {
  if (typeof out.body.warning === 'string') c.header('Portcullis-Warning', String(out.body.warning).replace(/[\r\n]/g, ' '));
  return c.json(out.body, out.status as 200);
}

export function pipelineRoutes(deps: PipelineRouteDeps): Hono<GateEnv> {
  const app = new Hono<GateEnv>();

  app.post('/v1/actions/:id/execute', async (c) => {
    const body = await readJsonBody(c);
    const ctx = newCtx(c, deps, 'execute', body);
    const key = c.req.header('idempotency-key');
    if (key === undefined || !deps.idempotency) return send(c, await runStages(EXECUTE, ctx, deps));
    if (!IDEMPOTENCY_KEY.test(key)) throw new GateError('invalid_request', 'Idempotency-Key must be 1-255 visible ASCII characters');
    // The fingerprint binds the key to this action and this exact (canonical) payload.
    const fingerprint = idempotencyFingerprint(ctx.actionId, hashRequest(body).requestHash);
    const scope = ctx.lease.principal;
    const begun = await deps.idempotency.begin(scope, key, fingerprint);
    if (begun.state === 'replay') {
      c.header('Idempotent-Replayed', 'true');
      return c.json(begun.response.body, begun.response.status as 200);
    }
    let out: Outcome | undefined;
    try {
      out = await runStages(EXECUTE, ctx, deps);
    } finally {
      // Transient failures (5xx before anything ran) release the key so the retry can proceed;
      // every other outcome (incl. 202, 4xx, and post-dispatch results) is what a retry gets back.
      const token = begun.token;
      const done = out && (out.status < 500 || ctx.intentId);
      try {
        if (done) await deps.idempotency.finish(scope, key, fingerprint, { status: out!.status, body: out!.body }, token);
        else await deps.idempotency.release(scope, key, fingerprint, token);
      } catch (e) {
        // Never let the key store replace the real outcome (the action may have run) with a 5xx
        // the caller would retry. The key stays held (idempotency_in_progress) until its lock expires.
        publish('error', { trace_id: ctx.traceId, code: 'idempotency_store_unavailable', path: `execute:${ctx.actionId}`, message: 'could not record the Idempotency-Key outcome', cause: e });
      }
    }
    return send(c, out!);
  });

  app.post('/v1/actions/:id/preflight', async (c) => {
    const body = await readJsonBody(c);
    return send(c, await runPreflight(newCtx(c, deps, 'preflight', body), deps));
  });

  return app;
}

/** The approve route's executor: the stored plan only, re-checked, through the shared tail. */
export function approvedExecutor(deps: PipelineDeps) {
  return async (record: ApprovalRecord, opts: { operator: OperatorIdentity; learnDomain: string | undefined }): Promise<Record<string, unknown>> => {
    const plan = record.plan;
    const epoch = await deps.revocation.currentEpoch();
    const hosts = plan.targets.map((t) => new URL(t).hostname.replace(/^\[|\]$/g, '').toLowerCase());
    if (opts.learnDomain && !hosts.includes(opts.learnDomain)) {
      throw new GateError('invalid_domain', 'learn_domain must be one of the approved targets\' hosts', { extra: { targets: hosts } });
    }
    const ctx: ExecContext = {
      mode: 'approved',
      traceId: plan.trace_id,
      actionId: plan.action_id,
      lease: { principal: plan.principal, sessionId: plan.session_id, scopes: [], budgets: undefined, epoch, jkt: plan.lease_jkt },
      body: plan.request,
      startedAt: deps.clock.now(),
      config: deps.active(),
      planHash: record.plan_hash,
      approved: {
        approvalId: record.approval_id, operator: opts.operator.name, operatorJkt: opts.operator.jkt,
        planHash: record.plan_hash, requestHash: plan.request_hash, approvedHosts: hosts, heldAtMs: Date.parse(plan.created_at),
        ...(opts.learnDomain ? { learnDomain: opts.learnDomain } : {}),
      },
    };
    // The stored plan must still describe what would run now: same version, same module digest,
    // same request hash. Otherwise the operator approved something else.
    const current = ctx.config.registry.get(plan.action_id)?.manifest;
    if (!current || current.version !== plan.action_version || current.provider_module_digest !== plan.provider_module_digest) {
      throw new GateError('approval_conflict', 'the action changed since the approval was requested (version or module digest)');
    }
    const out = await runStages(APPROVED, ctx, deps);
    if (out.error) throw out.error;
    if (opts.learnDomain) {
      await deps.policyData.addDomain(plan.action_id, opts.learnDomain, 'approval', {
        beforeCommit: async (change) => {
          await deps.audit.append({ type: 'admin_domain_learned', decision: 'admin', operator: opts.operator.name, action_id: plan.action_id, trace_id: plan.trace_id, detail: { domain: opts.learnDomain!, approval_id: record.approval_id, policy_version: String((change as { policy_version?: unknown }).policy_version ?? '') } });
        },
      })
        .catch((e: unknown) => { if (!(e instanceof GateError && e.code === 'domain_already_exists')) throw e; });
    }
    return out.body;
  };
}
