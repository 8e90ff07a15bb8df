// A provider that may do I/O starts only once its execution intent is durable; one that can only
// compute (max_io_calls 0) gets its intent one-phase, with its receipt, after the run
// (src/pipeline/stages/dispatch.ts). These tests hold the intent's write open and check that
// nothing leaves the gate before it is durable, that an intent that fails fails the call, and that
// a one-phase run records nothing before it ends and can never reach the egress guard.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { GateError } from '../../src/errors.ts';
import { runStages } from '../../src/pipeline/pipeline.ts';
import { dispatch, executionIntent } from '../../src/pipeline/stages/dispatch.ts';
import type { ExecContext, PipelineDeps, Stage } from '../../src/pipeline/context.ts';

interface Harness {
  ctx: ExecContext;
  deps: PipelineDeps;
  events: string[];
  refunds: string[];
  /** recordIntent calls. */
  asked: string[];
  settleIntent: (ok: boolean) => void;
}

/** Fake deps around the real executionIntent and dispatch stages; the intent settles when told. */
function harness(provider: 'io' | 'pure', options: { abortedSignal?: boolean } = {}): Harness {
  const events: string[] = [];
  const refunds: string[] = [];
  const asked: string[] = [];
  let settle!: (ok: boolean) => void;
  const intent = new Promise<{ intent_id: string }>((resolve, reject) => {
    settle = (ok) => {
      events.push(ok ? 'intent durable' : 'intent failed');
      if (ok) resolve({ intent_id: 'int_1' });
      else reject(new GateError('ledger_unavailable', 'ledger down'));
    };
  });
  const sandbox = {
    run: async (_id: string, _body: unknown, opts: { io: (req: unknown, c: { signal: AbortSignal }) => Promise<unknown> }) => {
      events.push('provider started');
      if (provider === 'io') {
        try {
          const ac = new AbortController();
          if (options.abortedSignal) ac.abort(new Error('deadline'));
          await opts.io({ method: 'POST', url: 'https://api.example.com/x', headers: {}, body: '' }, { signal: ac.signal });
        } catch (e) {
          events.push('provider io failed');
          throw e;
        }
      }
      events.push('provider done');
      return { output: { ok: true }, runtime: { duration_ms: 1, exit_code: 0, fuel_consumed: 1, io_calls: provider === 'io' ? 1 : 0 } };
    },
  };
  const deps = {
    clock: { now: () => Date.now() },
    ledger: { recordIntent: async () => { asked.push('intent asked'); return intent; }, checkGrant: () => 'grant text' },
    egress: {
      fetch: async () => {
        events.push('request left the gate');
        return { status: 200, headers: {}, body: '{}', truncated: false };
      },
    },
    audit: { append: async () => undefined },
    budgets: { refund: async (id: string) => { refunds.push(id); return true; } },
    state: { inFlight: 0 },
  } as unknown as PipelineDeps;
  const ctx = {
    mode: 'execute', traceId: 'trc_1', actionId: 'act', startedAt: Date.now(), body: {},
    lease: { principal: 'agent', sessionId: 'ses_1', scopes: [], budgets: undefined, epoch: 0, jkt: 'A'.repeat(43) },
    config: { sandbox },
    action: { manifest: { action_id: 'act', egress: {}, secrets: [], resource_limits: { max_host_response_bytes: 1024, timeout_ms: 1000, max_io_calls: provider === 'io' ? 2 : 0 } } },
    grant: { module_digest: 'sha256:11' },
    debit: { debit_id: 'dbt_1' },
    requestHash: 'sha256:22',
  } as unknown as ExecContext;
  return { ctx, deps, events, refunds, asked, settleIntent: settle };
}

/** Stands for everything after dispatch (receipt, evidence, answer). */
const after = (events: string[]): Stage => async (ctx) => {
  events.push(`after dispatch (intent ${ctx.intentId ?? 'missing'})`);
  ctx.response = { status: 200, body: {} };
};

test('a provider that may do I/O starts only once its intent is durable (the wait is not part of its timeout)', async () => {
  const h = harness('io');
  const out = runStages([executionIntent, dispatch, after(h.events)], h.ctx, h.deps);
  await delay(20);
  assert.deepEqual(h.events, [], 'the provider started before its intent was durable');
  h.settleIntent(true);
  assert.equal((await out).status, 200);
  assert.deepEqual(h.events, ['intent durable', 'provider started', 'request left the gate', 'provider done', 'after dispatch (intent int_1)']);
  assert.deepEqual(h.refunds, []);
});

test('attack: host I/O asked for after the call ended (signal aborted) never reaches the egress guard', async () => {
  const h = harness('io', { abortedSignal: true });
  const out = runStages([executionIntent, dispatch, after(h.events)], h.ctx, h.deps);
  h.settleIntent(true);
  await out;
  assert.equal(h.events.includes('request left the gate'), false, h.events.join(' | '));
  assert.ok(h.events.includes('provider io failed'));
});

test('a provider without I/O records no intent before or during its run (one-phase: written with its receipt)', async () => {
  const h = harness('pure');
  const out = runStages([executionIntent, dispatch, after(h.events)], h.ctx, h.deps);
  assert.equal((await out).status, 200);
  assert.deepEqual(h.events, ['provider started', 'provider done', 'after dispatch (intent missing)']);
  assert.equal(h.ctx.intentWithReceipt, true);
  assert.deepEqual(h.asked, [], 'an intent was written before the run');
});

test('attack: an unverifiable grant never reaches a provider without I/O (checked before dispatch, as recordIntent would)', async () => {
  const h = harness('pure');
  (h.deps.ledger as unknown as { checkGrant: () => string }).checkGrant = () => { throw new GateError('internal_error', 'grant signature signature_invalid'); };
  const r = await runStages([executionIntent, dispatch, after(h.events)], h.ctx, h.deps);
  assert.equal(r.status, 500);
  assert.deepEqual(h.events, [], 'the provider ran');
  assert.deepEqual(h.refunds, ['dbt_1']);
});

test('attack: a provider without I/O that asks for I/O anyway never reaches the egress guard (no durable intent)', async () => {
  const h = harness('io');
  // The manifest says max_io_calls 0, but the provider asks: the host must refuse on its own.
  (h.ctx.action!.manifest.resource_limits as { max_io_calls: number }).max_io_calls = 0;
  const out = runStages([executionIntent, dispatch, after(h.events)], h.ctx, h.deps);
  await out;
  assert.equal(h.events.includes('request left the gate'), false, h.events.join(' | '));
  assert.ok(h.events.includes('provider io failed'));
  assert.deepEqual(h.asked, []);
});

test('attack: the intent cannot be recorded -> the I/O provider never starts, 503 ledger_unavailable, debit refunded, no receipt', async () => {
  const h = harness('io');
  const out = runStages([executionIntent, dispatch, after(h.events)], h.ctx, h.deps);
  await delay(20);
  h.settleIntent(false);
  const r = await out;
  assert.equal(r.status, 503);
  assert.deepEqual(r.body, { error: 'ledger_unavailable' });
  assert.equal(h.events.includes('request left the gate'), false, h.events.join(' | '));
  assert.equal(h.events.some((e) => e.startsWith('after dispatch')), false, 'a stage after dispatch ran');
  assert.deepEqual(h.refunds, ['dbt_1']);
  assert.equal(h.events.includes('provider started'), false, 'an I/O provider started without a durable intent');
});
