// Drift guard: the error table in docs/api.md, the code union and the status table in
// src/errors.ts must agree exactly; the README names the two quick-start commands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_STATUS } from '../../src/errors.ts';

const root = new URL('../../', import.meta.url);

function documentedCodes(): Map<string, number> {
  const md = readFileSync(new URL('docs/api.md', root), 'utf8');
  const table = md.split('<!-- error-table:start -->')[1]?.split('<!-- error-table:end -->')[0];
  assert.ok(table, 'docs/api.md has an error table between the markers');
  const rows = new Map<string, number>();
  for (const line of table.split('\n')) {
    const m = /^\| (\d{3}) \| ([a-z_]+) \|/.exec(line);
    if (!m) continue;
    assert.equal(rows.has(m[2]!), false, `${m[2]} documented twice`);
    rows.set(m[2]!, Number(m[1]));
  }
  return rows;
}

test('every error code in src/errors.ts is documented with its status', () => {
  const docs = documentedCodes();
  for (const [code, status] of Object.entries(ERROR_STATUS)) {
    assert.equal(docs.get(code), status, `docs/api.md: ${code} should be ${status}`);
  }
});

test('docs/api.md documents no code the gate does not have', () => {
  for (const code of documentedCodes().keys()) assert.ok(Object.hasOwn(ERROR_STATUS, code), `${code} is documented but not in src/errors.ts`);
});

test('the contract codes keep the contract statuses', () => {
  const contract: Record<string, number> = {
    lease_expired: 401, invalid_lease: 401, invalid_dpop: 401, replay_detected: 401, missing_auth_header: 401,
    policy_denied: 403, action_not_registered: 403, action_digest_mismatch: 403, budget_exhausted: 403, budget_session_not_found: 403,
    action_not_found: 404, schema_violation: 422, evidence_persistence_failed: 500, internal_error: 500, action_execution_failed: 502,
    draining: 503, policy_engine_unavailable: 503, policy_engine_timeout: 503, replay_cache_unavailable: 503, budget_store_unavailable: 503,
    clock_error: 503, rate_limit_exceeded: 429, reload_failed: 500, invalid_domain: 400, domain_already_exists: 409, principal_not_found: 404,
    unknown_action: 400, invalid_input: 400, allowlist_entry_not_found: 404,
  };
  for (const [code, status] of Object.entries(contract)) assert.equal((ERROR_STATUS as Record<string, number>)[code], status, code);
});

test('README starts with the embedded-mode and test commands', () => {
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  const head = readme.split('\n').slice(0, 30).join('\n');
  assert.match(head, /npm ci && npm start/);
  assert.match(head, /npm test/);
});
