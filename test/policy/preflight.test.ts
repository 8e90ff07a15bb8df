// The preflight answer built from real engine decisions: verdict, reason code family, risk tier,
// policy hash, explanation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toPreflightAnswer } from '../../src/policy/preflight.ts';
import type { PolicyData, PolicyInput, PreflightAnswer } from '../../src/policy/types.ts';
import { engineWith, makeData, makeInput } from './fixtures.ts';

const cases: Array<{ name: string; input?: PolicyInput; data?: PolicyData; expect: Partial<PreflightAnswer>; steps: number; summary: RegExp }> = [
  { name: 'allow', expect: { decision: 'allow', reason_code: 'policy.allowed', risk_tier: 'low' }, steps: 0, summary: /^Policy test-1: allow\.$/ },
  { name: 'deny not_in_acl', input: makeInput({ principal: 'agent-9' }), expect: { decision: 'deny', reason_code: 'policy.not_in_acl', risk_tier: 'low' },
    steps: 1, summary: /deny \(not_in_acl\): action 'http_fetch' not in ACL for principal 'agent-9'/ },
  { name: 'hold critical + unresolved domain', input: makeInput({ action: { id: 'db_drop', risk_level: 'critical', declared_side_effects: ['db_write'] }, egress: { unresolved_domains: ['x.example.com'] } }),
    expect: { decision: 'require_approval', reason_code: 'approval.risk_critical', risk_tier: 'critical' }, steps: 2, summary: /require_approval \(risk_critical, unresolved_domains\)/ },
  { name: 'allowlisted hold', input: makeInput({ action: { id: 'db_drop', risk_level: 'critical', declared_side_effects: ['db_write'] } }),
    data: makeData({ allowlist: { db_drop: { 'agent-1': true } } }), expect: { decision: 'allow', reason_code: 'approval.allowlisted', risk_tier: 'critical' }, steps: 0, summary: /allow/ },
  { name: 'monitor would-deny', input: makeInput({ principal: 'agent-9' }), data: makeData({ modes: { principals: { 'agent-9': 'monitor' }, actions: {} } }),
    expect: { decision: 'allow', reason_code: 'policy.would_deny.not_in_acl' }, steps: 1, summary: /monitor mode: would deny \(not_in_acl\)/ },
  { name: 'risk tier follows the override', data: makeData({ risk_overrides: { http_fetch: 'high' } }),
    expect: { decision: 'require_approval', reason_code: 'approval.risk_high', risk_tier: 'high' }, steps: 1, summary: /risk_high/ },
];

for (const c of cases) {
  test(`preflight: ${c.name}`, async () => {
    const engine = await engineWith(c.data ?? makeData());
    const ev = engine.evaluate(c.input ?? makeInput());
    const answer = toPreflightAnswer(ev);
    for (const [k, v] of Object.entries(c.expect)) assert.deepEqual(answer[k as keyof PreflightAnswer], v, k);
    assert.equal(answer.policy_hash, engine.info().policy_hash);
    assert.match(answer.policy_hash, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(answer.explain.matched_rules, ev.decision.matched_rules);
    assert.equal(answer.explain.next_steps.length, c.steps);
    assert.match(answer.explain.summary, c.summary);
    assert.deepEqual(Object.keys(answer).sort(), ['decision', 'explain', 'policy_hash', 'reason_code', 'risk_tier']);
  });
}

test('preflight: control characters in a reason are stripped from the summary (log injection)', async () => {
  const engine = await engineWith(makeData());
  const ev = engine.evaluate(makeInput({ principal: 'agent\n9\u001b[31m' }));
  assert.equal(ev.verdict, 'deny');
  const answer = toPreflightAnswer(ev);
  assert.doesNotMatch(answer.explain.summary, /\p{Cc}/u);
});
