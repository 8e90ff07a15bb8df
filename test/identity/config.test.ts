// The identity config: accepted shapes, refusals naming the key, and agreement between the parser
// and the exported JSON Schema fragment that the gate's config schema embeds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { IdentityConfigError, identityConfigSchema, parseIdentityConfig } from '../../src/identity/config.ts';
import { createIdentityProvider } from '../../src/identity/create.ts';

const valid: { name: string; config: unknown }[] = [
  { name: 'none, default principal', config: { provider: 'none' } },
  { name: 'none, named principal', config: { provider: 'none', principal: 'dev-agent' } },
  { name: 'none, scopes', config: { provider: 'none', scopes: ['tools:call'] } },
  { name: 'peercred, one uid', config: { provider: 'peercred', map: { '1000': { principal: 'agent-a' } } } },
  { name: 'peercred, uid 0', config: { provider: 'peercred', map: { '0': { principal: 'root-agent', scopes: [] } } } },
  { name: 'peercred, largest uid', config: { provider: 'peercred', map: { '4294967294': { principal: 'a' } } } },
  {
    name: 'peercred, scopes and fallback',
    config: {
      provider: 'peercred',
      map: { '1000': { principal: 'agent-a', scopes: ['tools:call'] }, '1001': { principal: 'agent-a' } },
      unmapped: { principal: 'guest', scopes: ['tools:list'] },
    },
  },
  { name: 'peercred, empty map with fallback', config: { provider: 'peercred', map: {}, unmapped: { principal: 'guest' } } },
];

for (const c of valid) {
  test(`accepts ${c.name}`, () => {
    assert.deepEqual(parseIdentityConfig(c.config), c.config);
  });
}

// `schema: false` marks rules only the parser enforces (a JSON Schema cannot express them).
const invalid: { name: string; config: unknown; key: string; reason: RegExp; schema?: false }[] = [
  { name: 'not an object', config: 'peercred', key: 'identity', reason: /object/ },
  { name: 'array', config: [], key: 'identity', reason: /object/ },
  { name: 'missing provider', config: {}, key: 'identity.provider', reason: /unknown identity provider undefined; known: none, peercred/ },
  { name: 'unknown provider', config: { provider: 'ldap' }, key: 'identity.provider', reason: /known: none, peercred/ },
  { name: 'unknown key (typo)', config: { provider: 'none', principle: 'x' }, key: 'identity.principle', reason: /unknown key/ },
  { name: 'empty principal', config: { provider: 'none', principal: '' }, key: 'identity.principal', reason: /pattern/ },
  { name: 'principal with a newline (log injection)', config: { provider: 'none', principal: 'a\nb' }, key: 'identity.principal', reason: /pattern/ },
  { name: 'peercred without map', config: { provider: 'peercred' }, key: 'identity.map', reason: /required/ },
  { name: 'uid with leading zero', config: { provider: 'peercred', map: { '01000': { principal: 'a' } } }, key: 'identity.map.01000', reason: /decimal uid/ },
  { name: 'negative uid', config: { provider: 'peercred', map: { '-1': { principal: 'a' } } }, key: 'identity.map.-1', reason: /decimal uid/ },
  { name: 'user name instead of uid', config: { provider: 'peercred', map: { alice: { principal: 'a' } } }, key: 'identity.map.alice', reason: /decimal uid/ },
  { name: '__proto__ key (prototype pollution)', config: JSON.parse('{"provider":"peercred","map":{"__proto__":{"principal":"a"}}}'), key: 'identity.map.__proto__', reason: /decimal uid/ },
  { name: 'uid (uid_t)-1', config: { provider: 'peercred', map: { '4294967295': { principal: 'a' } } }, key: 'identity.map.4294967295', reason: /<= 4294967294/, schema: false },
  { name: 'uid beyond 32 bits', config: { provider: 'peercred', map: { '9999999999': { principal: 'a' } } }, key: 'identity.map.9999999999', reason: /<= 4294967294/, schema: false },
  { name: 'grant without principal', config: { provider: 'peercred', map: { '1000': { scopes: [] } } }, key: 'identity.map.1000.principal', reason: /required/ },
  { name: 'grant with unknown key', config: { provider: 'peercred', map: { '1000': { principal: 'a', role: 'x' } } }, key: 'identity.map.1000.role', reason: /unknown key/ },
  { name: 'duplicate scopes', config: { provider: 'peercred', map: { '1000': { principal: 'a', scopes: ['x', 'x'] } } }, key: 'identity.map.1000.scopes', reason: /duplicate/ },
  { name: 'scope with a space', config: { provider: 'peercred', map: { '1000': { principal: 'a', scopes: ['a b'] } } }, key: 'identity.map.1000.scopes.0', reason: /pattern/ },
  { name: 'scopes not an array', config: { provider: 'peercred', map: { '1000': { principal: 'a', scopes: 'x' } } }, key: 'identity.map.1000.scopes', reason: /array/ },
  { name: 'bad unmapped grant', config: { provider: 'peercred', map: {}, unmapped: {} }, key: 'identity.unmapped.principal', reason: /required/ },
  { name: 'nobody could ever be admitted', config: { provider: 'peercred', map: {} }, key: 'identity.map', reason: /no caller could ever be admitted/, schema: false },
  { name: 'none with a map', config: { provider: 'none', map: {} }, key: 'identity.map', reason: /unknown key/ },
];

for (const c of invalid) {
  test(`refuses ${c.name}, naming the key`, () => {
    assert.throws(
      () => parseIdentityConfig(c.config),
      (err: unknown) => {
        assert.ok(err instanceof IdentityConfigError);
        assert.equal(err.code, 'ERR_IDENTITY_CONFIG');
        assert.equal(err.key, c.key);
        assert.match(err.reason, c.reason);
        return true;
      },
    );
  });
}

test('the key prefix is the caller’s section path', () => {
  assert.throws(() => parseIdentityConfig({ provider: 'none', x: 1 }, 'gate.identity'), { key: 'gate.identity.x' });
});

test('createIdentityProvider validates before building', () => {
  assert.throws(() => createIdentityProvider({ provider: 'peercred', map: { '1': { principal: 'a b' } } }), { key: 'identity.map.1.principal' });
});

test('the exported JSON Schema agrees with the parser', () => {
  const validate = new Ajv({ strict: true }).compile(identityConfigSchema);
  for (const c of valid) assert.equal(validate(c.config), true, `schema refuses valid config: ${c.name}`);
  for (const c of invalid) {
    if (c.schema === false) continue;
    assert.equal(validate(c.config), false, `schema accepts invalid config: ${c.name}`);
  }
});
