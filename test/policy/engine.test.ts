// The engine through the real compiled policy.wasm: every rule and boundary, enforcement modes,
// and fail-closed behaviour (corrupt wasm, invalid answers, throwing evaluation, time limit, swaps).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as opaWasm from '@open-policy-agent/opa-wasm';
import { GateError, type GateErrorCode } from '../../src/errors.ts';
import {
  POLICY_ENTRYPOINT, PolicyEngine, loadPolicyEngine, parseDecision, policyHash,
  type LoadedPolicyLike, type PolicyInstantiator, type WasmMemoryDescriptor, type WasmModule,
} from '../../src/policy/engine.ts';
import type { EvaluatedDecision, PolicyData, PolicyDecision, PolicyInput } from '../../src/policy/types.ts';
import { WASM, engineWith, makeData, makeInput } from './fixtures.ts';

const learned = (domain: string, action_id = 'http_fetch') => ({ domain, action_id, source: 'cli' as const, added_at: '2026-01-01T00:00:00Z' });
const learnedPath = (path: string, action_id = 'http_fetch') => ({ path, action_id, source: 'cli' as const, added_at: '2026-01-01T00:00:00Z' });

interface Case {
  name: string;
  input?: PolicyInput;
  data?: PolicyData;
  verdict: EvaluatedDecision['verdict'];
  deny?: string;
  approval?: string[];
  wouldDeny?: string;
  warning?: boolean;
  check?: (ev: EvaluatedDecision) => void;
}

const monitor = (principal: string) => makeData({ modes: { principals: { [principal]: 'monitor' }, actions: {} } });

const cases: Case[] = [
  { name: 'allow: granted low-risk call', verdict: 'allow', check: (ev) => {
    assert.deepEqual(ev.decision.approved_sinks, ['http_read']);
    assert.deepEqual(ev.decision.budgets_after, { remaining_calls: 9 });
    assert.equal(ev.decision.policy_version, 'test-1');
    assert.equal(ev.decision.matched_rules.at(-1), 'allow');
  } },
  { name: 'deny: caller named `*` (ACL defaults entry impersonation)', input: makeInput({ principal: '*' }),
    data: makeData({ acl: { '*': { actions: ['http_fetch'], sinks: ['http_read'] } } }), verdict: 'deny', deny: 'invalid_input' },
  { name: 'deny: untrusted module digest', input: makeInput({ action: { digest_trusted: false } }), verdict: 'deny', deny: 'untrusted_digest' },
  { name: 'deny: untrusted digest wins over not_in_acl', input: makeInput({ principal: 'nobody', action: { digest_trusted: false } }), verdict: 'deny', deny: 'untrusted_digest' },
  { name: 'deny: principal without ACL entry', input: makeInput({ principal: 'agent-9' }), verdict: 'deny', deny: 'not_in_acl',
    check: (ev) => assert.equal(ev.decision.deny_reason, "action 'http_fetch' not in ACL for principal 'agent-9'") },
  { name: 'deny: action granted only to another principal', input: makeInput({ principal: 'agent-2' }), verdict: 'deny', deny: 'not_in_acl' },
  { name: 'allow: `*` entry supplies defaults', input: makeInput({ principal: 'agent-new' }),
    data: makeData({ acl: { '*': { actions: ['http_fetch'], sinks: ['http_read'] } } }), verdict: 'allow' },
  { name: 'deny: lease without tools:call', input: makeInput({ scopes: [] }), verdict: 'deny', deny: 'missing_scope' },
  { name: 'deny: lease without an action scope', input: makeInput({ action: { required_scopes: ['net:read'] } }), verdict: 'deny', deny: 'missing_scope',
    check: (ev) => assert.equal(ev.decision.deny_reason, 'lease is missing scopes: net:read') },
  { name: 'deny: budget flagged exhausted', input: makeInput({ budget: { exhausted: true } }), verdict: 'deny', deny: 'budget_exhausted' },
  { name: 'allow: remaining calls == cost (boundary)', input: makeInput({ budget: { remaining_calls: 1, cost: 1 } }), verdict: 'allow',
    check: (ev) => assert.deepEqual(ev.decision.budgets_after, { remaining_calls: 0 }) },
  { name: 'deny: remaining calls < cost (boundary)', input: makeInput({ budget: { remaining_calls: 0, cost: 1 } }), verdict: 'deny', deny: 'budget_exhausted' },
  { name: 'allow: no call budget', input: makeInput({ budget: { remaining_calls: null } }), verdict: 'allow' },
  { name: 'deny: requested sink outside the principal sinks', input: makeInput({ requested_sinks: ['email_send'] }), verdict: 'deny', deny: 'sink_not_allowed' },
  { name: 'deny: declared side effect outside sinks even when none requested (empty-request bypass)',
    input: makeInput({ principal: 'agent-2', action: { id: 'github_read', declared_side_effects: ['http_write'] } }), verdict: 'deny', deny: 'sink_not_allowed' },
  { name: 'hold: high risk', input: makeInput({ action: { id: 'http_delete', risk_level: 'high', declared_side_effects: ['http_write'] } }),
    verdict: 'require_approval', approval: ['risk_high'] },
  { name: 'hold: critical risk', input: makeInput({ action: { id: 'db_drop', risk_level: 'critical', declared_side_effects: ['db_write'] } }),
    verdict: 'require_approval', approval: ['risk_critical'] },
  { name: 'allow: medium risk needs no approval (boundary)', input: makeInput({ action: { risk_level: 'medium' } }), verdict: 'allow' },
  { name: 'hold: risk override raises low to high', data: makeData({ risk_overrides: { http_fetch: 'high' } }), verdict: 'require_approval', approval: ['risk_high'],
    check: (ev) => assert.equal(ev.decision.risk_level, 'high') },
  { name: 'allow: risk override lowers critical', input: makeInput({ action: { risk_level: 'critical' } }), data: makeData({ risk_overrides: { http_fetch: 'low' } }), verdict: 'allow' },
  { name: 'hold: unresolved domain', input: makeInput({ egress: { unresolved_domains: ['api.new.example'] } }), verdict: 'require_approval', approval: ['unresolved_domains'] },
  { name: 'allow: unresolved domain learned for this action', input: makeInput({ egress: { unresolved_domains: ['api.new.example'] } }),
    data: makeData({ learned_domains: [learned('api.new.example')] }), verdict: 'allow' },
  { name: 'hold: domain learned for another action does not carry over', input: makeInput({ egress: { unresolved_domains: ['api.new.example'] } }),
    data: makeData({ learned_domains: [learned('api.new.example', 'github_read')] }), verdict: 'require_approval', approval: ['unresolved_domains'] },
  { name: 'hold: *.suffix does not cover a look-alike (evilexample.com)', input: makeInput({ egress: { unresolved_domains: ['evilexample.com'] } }),
    data: makeData({ learned_domains: [learned('*.example.com')] }), verdict: 'require_approval', approval: ['unresolved_domains'] },
  { name: 'allow: *.suffix covers a subdomain', input: makeInput({ egress: { unresolved_domains: ['a.example.com'] } }),
    data: makeData({ learned_domains: [learned('*.example.com')] }), verdict: 'allow' },
  { name: 'hold: unresolved path', input: makeInput({ egress: { unresolved_paths: ['/data/x'] } }), verdict: 'require_approval', approval: ['unresolved_paths'] },
  { name: 'allow: path below a learned path', input: makeInput({ egress: { unresolved_paths: ['/data/reports/q1.csv'] } }),
    data: makeData({ learned_paths: [learnedPath('/data/reports')] }), verdict: 'allow' },
  { name: 'hold: learned path prefix without separator (/data/reportsX)', input: makeInput({ egress: { unresolved_paths: ['/data/reportsX'] } }),
    data: makeData({ learned_paths: [learnedPath('/data/reports')] }), verdict: 'require_approval', approval: ['unresolved_paths'] },
  { name: 'hold: sensitive path even under a learned path', input: makeInput({ egress: { sensitive_paths: ['/etc/shadow'] } }),
    data: makeData({ learned_paths: [learnedPath('/etc')] }), verdict: 'require_approval', approval: ['sensitive_paths'] },
  { name: 'allow: allowlist skips the approval hold', input: makeInput({ action: { id: 'db_drop', risk_level: 'critical', declared_side_effects: ['db_write'] } }),
    data: makeData({ allowlist: { db_drop: { 'agent-1': true } } }), verdict: 'allow',
    check: (ev) => assert.ok(ev.decision.matched_rules.includes('allowlist.skip_approval')) },
  { name: 'deny: allowlist does not skip the ACL', input: makeInput({ principal: 'agent-9' }),
    data: makeData({ allowlist: { http_fetch: { 'agent-9': true } } }), verdict: 'deny', deny: 'not_in_acl' },
  { name: 'deny: allowlist does not skip the trust check', input: makeInput({ action: { digest_trusted: false } }),
    data: makeData({ allowlist: { http_fetch: { 'agent-1': true } } }), verdict: 'deny', deny: 'untrusted_digest' },
  { name: 'deny: allowlist does not skip the sink check', input: makeInput({ requested_sinks: ['email_send'] }),
    data: makeData({ allowlist: { http_fetch: { 'agent-1': true } } }), verdict: 'deny', deny: 'sink_not_allowed' },
  // Modes
  { name: 'monitor: ACL deny becomes allow, recorded, no warning', input: makeInput({ principal: 'agent-9' }), data: monitor('agent-9'),
    verdict: 'allow', wouldDeny: 'not_in_acl', warning: false },
  { name: 'warn: ACL deny becomes allow with a warning for the caller', input: makeInput({ principal: 'agent-9' }),
    data: makeData({ modes: { principals: {}, actions: { http_fetch: 'warn' } } }), verdict: 'allow', wouldDeny: 'not_in_acl', warning: true },
  { name: 'monitor: untrusted digest is never downgraded', input: makeInput({ action: { digest_trusted: false } }), data: monitor('agent-1'), verdict: 'deny', deny: 'untrusted_digest' },
  { name: 'monitor: exhausted budget is never downgraded', input: makeInput({ principal: 'agent-9', budget: { exhausted: true } }), data: monitor('agent-9'),
    verdict: 'deny', deny: 'budget_exhausted' },
  { name: 'monitor: a downgraded deny still holds a high-risk call', input: makeInput({ principal: 'agent-9', action: { risk_level: 'high' } }), data: monitor('agent-9'),
    verdict: 'require_approval', approval: ['risk_high'], wouldDeny: 'not_in_acl' },
  { name: 'stricter mode wins: action enforce over principal monitor', input: makeInput({ principal: 'agent-9' }),
    data: makeData({ modes: { principals: { 'agent-9': 'monitor' }, actions: { http_fetch: 'enforce' } } }), verdict: 'deny', deny: 'not_in_acl' },
];

for (const c of cases) {
  test(`decision: ${c.name}`, async () => {
    const engine = await engineWith(c.data ?? makeData());
    const ev = engine.evaluate(c.input ?? makeInput());
    assert.equal(ev.verdict, c.verdict);
    assert.equal(ev.decision.deny_reason_code, c.deny ?? null);
    assert.deepEqual(ev.decision.approval_reasons, c.approval ?? []);
    assert.equal(ev.would_deny?.code ?? null, c.wouldDeny ?? null);
    if (c.warning !== undefined) assert.equal(ev.warning !== null, c.warning);
    if (ev.warning !== null) assert.match(ev.warning, /^[\x20-\x7e]+$/);
    assert.equal(ev.decision.allow, c.verdict === 'allow');
    assert.equal(ev.policy_hash, engine.info().policy_hash);
    c.check?.(ev);
  });
}

// ------------------------------------------------------------------------------------------------
// Input guards
// ------------------------------------------------------------------------------------------------

const badInputs: Array<{ name: string; input: unknown }> = [
  { name: 'not an object', input: 42 },
  { name: 'missing egress', input: (({ egress: _e, ...rest }) => rest)(makeInput()) },
  { name: 'extra top-level key (smuggled field)', input: { ...makeInput(), allow: true } },
  { name: 'digest_trusted as string "true"', input: makeInput({ action: { digest_trusted: 'true' as unknown as boolean } }) },
  { name: 'negative cost (budget credit)', input: makeInput({ budget: { cost: -1 } }) },
  { name: 'unknown risk level', input: makeInput({ action: { risk_level: 'none' as 'low' } }) },
  { name: 'too many unresolved domains', input: makeInput({ egress: { unresolved_domains: Array.from({ length: 300 }, (_, i) => `d${i}.example`) } }) },
];

for (const c of badInputs) {
  test(`input guard: ${c.name} -> invalid_input, never evaluated`, async () => {
    const engine = await engineWith();
    assert.throws(() => engine.evaluate(c.input as PolicyInput), (e: unknown) => e instanceof GateError && e.code === 'invalid_input');
  });
}

test('input guard: serialized input over maxInputBytes -> invalid_input', async () => {
  const engine = await engineWith(makeData(), { maxInputBytes: 512 });
  assert.ok(engine.evaluate(makeInput()).verdict === 'allow');
  const big = makeInput({ egress: { unresolved_domains: Array.from({ length: 40 }, (_, i) => `host-${i}.example.com`) } });
  assert.throws(() => engine.evaluate(big), (e: unknown) => e instanceof GateError && e.code === 'invalid_input');
});

// ------------------------------------------------------------------------------------------------
// Fail closed: loading
// ------------------------------------------------------------------------------------------------

const badWasm: Array<{ name: string; bytes: Uint8Array }> = [
  { name: 'random bytes', bytes: new Uint8Array(Array.from({ length: 256 }, (_, i) => (i * 37) & 0xff)) },
  { name: 'truncated policy.wasm', bytes: WASM.slice(0, WASM.length >> 1) },
  { name: 'empty', bytes: new Uint8Array() },
  { name: 'valid but empty wasm module (not an OPA policy)', bytes: new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) },
  { name: 'bad magic number', bytes: (() => { const b = WASM.slice(); b[1] = 0x62; return b; })() },
];

for (const c of badWasm) {
  test(`load: corrupt wasm (${c.name}) -> policy_engine_unavailable`, async () => {
    await assert.rejects(loadPolicyEngine(c.bytes, makeData()), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_unavailable');
  });
}

test('reload: corrupt wasm keeps the previous policy active', async () => {
  const engine = await engineWith();
  const before = engine.info();
  await assert.rejects(engine.reload(badWasm[0]!.bytes, makeData({ policy_version: 'test-2' })), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_unavailable');
  assert.deepEqual(engine.info(), before);
  assert.equal(engine.evaluate(makeInput()).verdict, 'allow');
});

// A wrapper around the real policy: the load-time self-test (object input) goes to the real wasm,
// request evaluations (ArrayBuffer input) get `onEvaluate`.
const realLoad = (opaWasm as unknown as { default: { loadPolicySync(m: WasmModule, d: WasmMemoryDescriptor): LoadedPolicyLike } }).default.loadPolicySync;
function wrapped(onEvaluate: (real: LoadedPolicyLike, input: unknown, ep?: number | string) => unknown, counter?: { n: number }): PolicyInstantiator {
  return (module, memory) => {
    if (counter) counter.n++;
    const real = realLoad(module, memory);
    return {
      entrypoints: real.entrypoints,
      setData: (d) => real.setData(d),
      evaluate: (input, ep) => (input instanceof ArrayBuffer ? onEvaluate(real, input, ep) : real.evaluate(input, ep)),
    };
  };
}

test('load: wasm without the entrypoint -> policy_engine_unavailable', async () => {
  const instantiate: PolicyInstantiator = (m, mem) => ({ ...realLoad(m, mem), entrypoints: { 'other/entry': 0 }, evaluate: () => [], setData: () => undefined });
  await assert.rejects(loadPolicyEngine(WASM, makeData(), { instantiate }), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_unavailable');
});

test('load: a policy that allows an untrusted module fails its self-test (allow-all policy swapped in)', async () => {
  const allowAll = (version: string) => [{ result: allowDecision(version) }];
  const instantiate: PolicyInstantiator = (m, mem) => {
    const real = realLoad(m, mem);
    let version = '';
    return { entrypoints: real.entrypoints, setData: (d) => { version = (d as PolicyData).policy_version; real.setData(d); }, evaluate: () => allowAll(version) };
  };
  await assert.rejects(loadPolicyEngine(WASM, makeData(), { instantiate }), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_unavailable');
});

// ------------------------------------------------------------------------------------------------
// Fail closed: invalid answers
// ------------------------------------------------------------------------------------------------

function allowDecision(version = 'test-1'): PolicyDecision {
  return {
    allow: true, requires_approval: false, deny_reason_code: null, deny_reason: null, would_deny_reason_code: null, would_deny_reason: null,
    approval_reasons: [], budgets_after: { remaining_calls: null }, approved_sinks: ['http_read'], policy_version: version,
    matched_rules: ['allow'], enforcement_mode: 'enforce', risk_level: 'low',
  };
}

const invalidAnswers: Array<{ name: string; raw: unknown }> = [
  { name: 'undefined entrypoint (empty result set)', raw: [] },
  { name: 'two results', raw: [{ result: allowDecision() }, { result: allowDecision() }] },
  { name: 'result missing', raw: [{}] },
  { name: 'bare true (allow as boolean)', raw: [{ result: true }] },
  { name: 'missing field', raw: [{ result: (({ matched_rules: _m, ...r }) => r)(allowDecision()) }] },
  { name: 'extra field', raw: [{ result: { ...allowDecision(), admin: true } }] },
  { name: 'allow as string "true"', raw: [{ result: { ...allowDecision(), allow: 'true' } }] },
  { name: 'allow and requires_approval both true', raw: [{ result: { ...allowDecision(), requires_approval: true, approval_reasons: ['risk_high'] } }] },
  { name: 'allow carrying a deny code', raw: [{ result: { ...allowDecision(), deny_reason_code: 'not_in_acl', deny_reason: 'x' } }] },
  { name: 'deny without a code', raw: [{ result: { ...allowDecision(), allow: false, approved_sinks: [], matched_rules: ['deny.'] } }] },
  { name: 'unknown deny code', raw: [{ result: { ...allowDecision(), allow: false, approved_sinks: [], deny_reason_code: 'nope', deny_reason: 'x', matched_rules: ['deny.nope'] } }] },
  { name: 'another policy_version than the loaded data (stale data)', raw: [{ result: allowDecision('test-0') }] },
  { name: 'would-deny in enforce mode', raw: [{ result: { ...allowDecision(), would_deny_reason_code: 'not_in_acl', would_deny_reason: 'x' } }] },
  { name: 'hard deny downgraded', raw: [{ result: { ...allowDecision(), enforcement_mode: 'monitor', would_deny_reason_code: 'untrusted_digest', would_deny_reason: 'x' } }] },
  { name: 'matched_rules not ending in the verdict', raw: [{ result: { ...allowDecision(), matched_rules: ['approval.required'] } }] },
  { name: 'hold without reasons', raw: [{ result: { ...allowDecision(), allow: false, requires_approval: true, matched_rules: ['approval.required'] } }] },
  { name: 'unknown enforcement mode', raw: [{ result: { ...allowDecision(), enforcement_mode: 'off' } }] },
];

for (const c of invalidAnswers) {
  test(`answer: ${c.name} -> policy_engine_invalid_response`, async () => {
    const engine = await engineWith(makeData(), { instantiate: wrapped(() => c.raw) });
    assert.throws(() => engine.evaluate(makeInput()), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_invalid_response');
  });
}

test('answer: parseDecision accepts the real deny shape', async () => {
  const engine = await engineWith();
  const ev = engine.evaluate(makeInput({ principal: 'agent-9' }));
  assert.doesNotThrow(() => parseDecision([{ result: ev.decision }], 'test-1'));
});

// ------------------------------------------------------------------------------------------------
// Fail closed: throwing evaluation, time limit
// ------------------------------------------------------------------------------------------------

test('evaluate throws (wasm abort) -> policy_engine_unavailable, then a fresh instance serves', async () => {
  let throws = 1;
  const builds = { n: 0 };
  const engine = await engineWith(makeData(), {
    instantiate: wrapped((real, input, ep) => {
      if (throws-- > 0) throw 'opa_abort: internal error';
      return real.evaluate(input, ep);
    }, builds),
  });
  assert.equal(builds.n, 1);
  assert.throws(() => engine.evaluate(makeInput()), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_unavailable');
  assert.equal(builds.n, 2, 'the failed instance was replaced');
  assert.equal(engine.isHealthy(), true);
  assert.equal(engine.evaluate(makeInput()).verdict, 'allow');
});

test('evaluate throws and the instance cannot be rebuilt -> broken, every call fails closed until reload', async () => {
  const builds = { n: 0 };
  let failBuild = false;
  const inner = wrapped(() => { throw new RangeError('memory access out of bounds'); }, builds);
  const engine = await engineWith(makeData(), {
    instantiate: (m, mem) => {
      if (failBuild) throw new Error('instantiate failed');
      return inner(m, mem);
    },
  });
  failBuild = true;
  for (let i = 0; i < 2; i++) {
    assert.throws(() => engine.evaluate(makeInput()), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_unavailable');
  }
  assert.equal(engine.isHealthy(), false);
  failBuild = false;
  await engine.reload(WASM, makeData({ policy_version: 'test-2' }));
  assert.equal(engine.isHealthy(), true);
});

test('evaluation over the time limit -> policy_engine_timeout (answer discarded, even an allow)', async () => {
  let now = 0;
  let slow = false;
  const engine = await engineWith(makeData(), {
    evalTimeoutMs: 50,
    monotonicNow: () => now,
    instantiate: wrapped((real, input, ep) => {
      if (slow) now += 51;
      return real.evaluate(input, ep);
    }),
  });
  assert.equal(engine.evaluate(makeInput()).verdict, 'allow');
  slow = true;
  assert.throws(() => engine.evaluate(makeInput()), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_timeout');
});

test('evaluation at exactly the time limit is accepted (boundary)', async () => {
  let now = 0;
  const engine = await engineWith(makeData(), {
    evalTimeoutMs: 50,
    monotonicNow: () => now,
    instantiate: wrapped((real, input, ep) => { now += 50; return real.evaluate(input, ep); }),
  });
  assert.equal(engine.evaluate(makeInput()).verdict, 'allow');
});

test('a NaN clock reading counts as a timeout', async () => {
  let nan = false;
  const engine = await engineWith(makeData(), { monotonicNow: () => (nan ? Number.NaN : 0) });
  nan = true;
  assert.throws(() => engine.evaluate(makeInput()), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_timeout');
});

// ------------------------------------------------------------------------------------------------
// Atomic swaps
// ------------------------------------------------------------------------------------------------

test('setData takes effect on the next call and changes the policy hash', async () => {
  const engine = await engineWith(makeData({ acl: {} }));
  assert.equal(engine.evaluate(makeInput()).verdict, 'deny');
  const h1 = engine.info().policy_hash;
  engine.setData(makeData({ policy_version: 'test-2' }));
  const ev = engine.evaluate(makeInput());
  assert.equal(ev.verdict, 'allow');
  assert.notEqual(ev.policy_hash, h1);
  assert.equal(ev.policy_hash, policyHash(engine.info().wasm_sha256, 'test-2'));
});

test('staged data is invisible until activated', async () => {
  const engine = await engineWith(makeData({ acl: {} }));
  const staged = engine.stageData(makeData({ policy_version: 'test-2' }));
  assert.equal(engine.evaluate(makeInput()).verdict, 'deny');
  engine.activate(staged);
  assert.equal(engine.evaluate(makeInput()).verdict, 'allow');
});

test('a stale staging cannot overwrite a newer activation (revert attack)', async () => {
  const engine = await engineWith(makeData({ acl: {} }));
  const older = engine.stageData(makeData({ policy_version: 'test-2' }));
  engine.setData(makeData({ policy_version: 'test-3', acl: {} }));
  assert.throws(() => engine.activate(older), (e: unknown) => e instanceof GateError && e.code === 'policy_engine_unavailable');
  assert.equal(engine.info().policy_version, 'test-3');
  assert.equal(engine.evaluate(makeInput()).verdict, 'deny');
});

test('an evaluation in flight during a swap finishes against the pair it started with', async () => {
  const holder: { engine?: PolicyEngine } = {};
  let swapInside = true;
  const engine = await engineWith(makeData(), {
    instantiate: wrapped((real, input, ep) => {
      if (swapInside) {
        swapInside = false;
        holder.engine!.setData(makeData({ policy_version: 'test-2', acl: {} }));
      }
      return real.evaluate(input, ep);
    }),
  });
  holder.engine = engine;
  const ev = engine.evaluate(makeInput());
  assert.equal(ev.verdict, 'allow');
  assert.equal(ev.decision.policy_version, 'test-1');
  const next = engine.evaluate(makeInput());
  assert.equal(next.verdict, 'deny');
  assert.equal(next.decision.policy_version, 'test-2');
});

test('reload swaps the wasm and data together and bumps the generation', async () => {
  const engine = await engineWith(makeData({ acl: {} }));
  const info = await engine.reload(WASM, makeData({ policy_version: 'test-9' }));
  assert.equal(info.wasm_generation, 2);
  assert.equal(info.policy_version, 'test-9');
  assert.equal(engine.evaluate(makeInput()).verdict, 'allow');
});

test('the default data (none given) denies every call', async () => {
  const engine = await loadPolicyEngine(WASM);
  const ev = engine.evaluate(makeInput());
  assert.equal(ev.verdict, 'deny');
  assert.equal(ev.decision.deny_reason_code, 'not_in_acl');
});

test('entrypoint constant matches the compiled wasm', async () => {
  const p = realLoad(await (globalThis as unknown as { WebAssembly: { compile(b: Uint8Array): Promise<WasmModule> } }).WebAssembly.compile(WASM), { initial: 5 });
  assert.ok(Object.hasOwn(p.entrypoints, POLICY_ENTRYPOINT));
});

test('every error the engine throws is a gate error code with status 4xx/503', () => {
  const codes: GateErrorCode[] = ['invalid_input', 'policy_engine_unavailable', 'policy_engine_timeout', 'policy_engine_invalid_response'];
  assert.deepEqual(codes.map((c) => new GateError(c).status), [400, 503, 503, 503]);
});
