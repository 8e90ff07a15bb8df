// Execution intent, then dispatch: a fresh sandbox instance runs the provider; its HTTP goes
// through the egress guard, which injects the credentials. A provider failure does not throw here:
// it becomes a receipt with a failure class.
//
// The intent exists so that a crash never leaves an effect without a record of what was allowed.
// A provider that may do I/O gets it two-phase: the intent (consuming the grant) is durable before
// the provider starts, so the wait never counts against its timeout_ms, and its host I/O checks
// for it again. A provider that may not do I/O (`max_io_calls` 0) can only compute: it has no
// effect to protect, so its intent is written one-phase, with its receipt and final audit event in
// one transaction after the run (Ledger.complete, in receiptAndFinalize; docs/design.md). A crash
// during such a run leaves nothing, as nothing happened; a ledger that cannot record it fails the
// call with 503 `ledger_unavailable`, the output is dropped and the debit refunded.
import { GateError } from '../../errors.ts';
import { publish } from '../../observe.ts';
import type { DispatchFailure, Stage } from '../context.ts';
import { executionFailure } from '../../sandbox/sandbox.ts';
import { assertResponse } from '../../registry/index.ts';

export const executionIntent: Stage = async (ctx, deps) => {
  if (ctx.action!.manifest.resource_limits.max_io_calls === 0) {
    // The grant's checks run now, as recordIntent's would (a memo hit for a grant signed here):
    // an unverifiable grant never reaches dispatch, on either path.
    deps.ledger.checkGrant(ctx.grant!, 'executionIntent');
    ctx.intentWithReceipt = true;
    return;
  }
  const r = await deps.ledger.recordIntent({ grant: ctx.grant! });
  ctx.intentId = r.intent_id;
};

const iso = (ms: number) => new Date(ms).toISOString();

export const dispatch: Stage = async (ctx, deps) => {
  const m = ctx.action!.manifest;
  if (!ctx.intentId && !ctx.intentWithReceipt) throw new GateError('internal_error', 'dispatch without an execution intent');
  const started = deps.clock.now();
  deps.state.inFlight++;
  try {
    const result = await ctx.config.sandbox.run(m.action_id, ctx.body, {
      digest: ctx.grant!.module_digest,
      // No request leaves the gate before the intent is durable, nor after the call has ended.
      io: async (req, io) => {
        // Defence in depth: the sandbox refuses I/O past max_io_calls (0 for a one-phase run).
        if (!ctx.intentId) throw new GateError('internal_error', 'host I/O without a durable execution intent');
        io.signal.throwIfAborted();
        return deps.egress.fetch(req, {
          profile: m.egress,
          extraDomains: ctx.extraDomains ?? [],
          secrets: ctx.secretValues ? { declarations: m.secrets, values: ctx.secretValues } : undefined,
          limits: { max_host_response_bytes: m.resource_limits.max_host_response_bytes, timeout_ms: m.resource_limits.timeout_ms },
          signal: io.signal,
          audit: async (note) => {
            await deps.audit.append({ ...note, trace_id: ctx.traceId, action_id: m.action_id, principal: ctx.lease.principal, session_id: ctx.lease.sessionId });
          },
        });
      },
    });
    const finished = deps.clock.now();
    ctx.run = { output: result.output, runtime: result.runtime, startedAt: iso(started), finishedAt: iso(finished) };
  } catch (e) {
    const finished = deps.clock.now();
    const f = executionFailure(e);
    let failure: DispatchFailure;
    if (f) {
      failure = { failureClass: f.failure_class, reason: f.reason, code: 'action_execution_failed' };
      const cause = (e as { cause?: unknown }).cause;
      // An egress refusal surfaces as a 403 with its own stable code (the call never left the gate).
      if (cause instanceof GateError && cause.code.startsWith('egress_')) {
        failure = { failureClass: 'egress', reason: String(cause.extra?.reason ?? cause.code), code: cause.code, extra: { reason: cause.extra?.reason } };
      }
    } else if (e instanceof GateError && (e.code.startsWith('egress_') || e.code === 'secret_missing')) {
      failure = { failureClass: 'egress', reason: String(e.extra?.reason ?? e.code), code: e.code, extra: e.extra?.reason ? { reason: e.extra.reason } : undefined };
    } else if (e instanceof GateError && (e.code === 'action_digest_mismatch' || e.code === 'action_not_registered')) {
      failure = { failureClass: 'provider_error', reason: e.code, code: e.code };
    } else {
      failure = { failureClass: 'provider_error', reason: 'internal', code: 'action_execution_failed' };
      publish('error', { trace_id: ctx.traceId, code: 'dispatch_failed', path: 'dispatch', message: 'unexpected dispatch failure', cause: e });
    }
    const rt = f?.runtime ?? { duration_ms: finished - started, exit_code: 1, fuel_consumed: 0, io_calls: 0 };
    ctx.run = { failure, runtime: rt, startedAt: iso(started), finishedAt: iso(finished) };
  } finally {
    deps.state.inFlight--;
  }
  publish('provider_run', { action_id: m.action_id, ok: !ctx.run!.failure, failure_class: ctx.run!.failure?.failureClass, duration_ms: ctx.run!.runtime.duration_ms });
};

/** The provider's output must match the manifest's response schema and size cap. */
export const responseSchema: Stage = async (ctx) => {
  const run = ctx.run!;
  if (run.failure) return;
  const m = ctx.action!.manifest;
  const size = Buffer.byteLength(JSON.stringify(run.output) ?? '', 'utf8');
  try {
    if (size > m.max_response_bytes) throw new GateError('response_schema_violation', 'output exceeds max_response_bytes');
    assertResponse(ctx.action!, run.output);
  } catch (e) {
    const reason = e instanceof GateError && e.code === 'response_schema_violation' && size > m.max_response_bytes ? 'output_too_large' : 'response_schema_violation';
    run.failure = { failureClass: 'response_schema', reason, code: 'action_execution_failed' };
    run.output = undefined;
    publish('provider_run', { action_id: m.action_id, ok: false, failure_class: 'response_schema', duration_ms: 0 });
  }
};
