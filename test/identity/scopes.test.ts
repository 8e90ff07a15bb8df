// Lease scopes against an identity's allowance: all-or-nothing, exact match.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { authorizeScopes } from '../../src/identity/scopes.ts';

const cases: { name: string; allowed: string[] | undefined; requested: string[]; expect: string[] | 'identity_denied' }[] = [
  { name: 'any scope when the allowance is undefined', allowed: undefined, requested: ['tools:call', 'admin'], expect: ['tools:call', 'admin'] },
  { name: 'subset of the allowance', allowed: ['tools:call', 'tools:list'], requested: ['tools:list'], expect: ['tools:list'] },
  { name: 'duplicates collapse, order kept', allowed: ['a', 'b'], requested: ['b', 'a', 'b'], expect: ['b', 'a'] },
  { name: 'empty request', allowed: [], requested: [], expect: [] },
  { name: 'attack: one scope beyond the allowance refuses the whole lease', allowed: ['tools:call'], requested: ['tools:call', 'admin'], expect: 'identity_denied' },
  { name: 'attack: empty allowance admits no scope', allowed: [], requested: ['tools:call'], expect: 'identity_denied' },
  { name: 'attack: prefix is not a match', allowed: ['tools'], requested: ['tools:call'], expect: 'identity_denied' },
  { name: 'attack: case differs', allowed: ['tools:call'], requested: ['TOOLS:CALL'], expect: 'identity_denied' },
  { name: 'attack: wildcard is literal', allowed: ['tools:*'], requested: ['tools:call'], expect: 'identity_denied' },
];

for (const c of cases) {
  test(`authorizeScopes: ${c.name}`, () => {
    const identity = { principal: 'agent-a', scopes: c.allowed };
    if (c.expect === 'identity_denied') {
      assert.throws(() => authorizeScopes(identity, c.requested), { name: 'GateError', code: 'identity_denied', status: 403 });
    } else {
      assert.deepEqual(authorizeScopes(identity, c.requested), c.expect);
    }
  });
}
