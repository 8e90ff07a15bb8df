// Validators for operator-supplied ids, learned domains and learned paths; they agree with the
// data schema's patterns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isValidId, isValidLearnedDomain, isValidLearnedPath, isValidPrincipalKey } from '../../src/policy/validate.ts';
import { validateDataDocument } from '../../src/policy/schemas.ts';
import { emptyPolicyData } from '../../src/policy/engine.ts';

const domains: Array<[string, boolean, string]> = [
  ['api.example.com', true, 'plain hostname'],
  ['*.example.com', true, 'wildcard suffix'],
  ['xn--bcher-kva.example', true, 'IDNA punycode'],
  ['a-b.c-d.example', true, 'hyphens inside labels'],
  ['example.com.', false, 'trailing dot'],
  ['Example.com', false, 'uppercase'],
  ['https://example.com', false, 'scheme'],
  ['example.com:443', false, 'port'],
  ['example.com/path', false, 'path'],
  ['localhost', false, 'single label (search-domain resolution)'],
  ['*.com', false, 'wildcard over a whole TLD'],
  ['*', false, 'bare wildcard'],
  ['a.*.example.com', false, 'wildcard in the middle'],
  ['**.example.com', false, 'double wildcard'],
  ['10.0.0.1', false, 'IPv4 literal'],
  ['[::1]', false, 'IPv6 literal'],
  ['-a.example.com', false, 'leading hyphen'],
  ['a-.example.com', false, 'trailing hyphen'],
  ['ab--cd.example.com', false, 'hyphens in positions 3-4 without xn--'],
  ['xn--zz.example.com', false, 'broken punycode'],
  ['a_b.example.com', false, 'underscore'],
  ['bücher.example', false, 'unicode instead of punycode'],
  ['a..example.com', false, 'empty label'],
  [`${'a'.repeat(64)}.example.com`, false, 'label over 63'],
  [`${'a.'.repeat(127)}com`, false, 'over 253 characters'],
  ['', false, 'empty'],
  ['exa mple.com', false, 'space'],
];

for (const [d, ok, why] of domains) {
  test(`domain ${ok ? 'accepted' : 'rejected'}: ${why} (${JSON.stringify(d.slice(0, 40))})`, () => {
    assert.equal(isValidLearnedDomain(d), ok);
  });
}

const paths: Array<[string, boolean, string]> = [
  ['/data/reports', true, 'absolute normalized'],
  ['/a', true, 'one segment'],
  ['/data/my reports', true, 'space inside a segment'],
  ['/', false, 'root (would learn everything)'],
  ['data/reports', false, 'relative'],
  ['/data/reports/', false, 'trailing slash'],
  ['/data/../etc', false, 'dot-dot traversal'],
  ['/data/./x', false, 'dot segment'],
  ['/data//x', false, 'double slash'],
  ['/..', false, 'dot-dot at root'],
  ['/data/x\u0000y', false, 'NUL byte'],
  ['/data/x\ny', false, 'newline (log injection)'],
  [`/${'a'.repeat(4096)}`, false, 'over 4096 characters'],
  ['', false, 'empty'],
];

for (const [p, ok, why] of paths) {
  test(`path ${ok ? 'accepted' : 'rejected'}: ${why}`, () => {
    assert.equal(isValidLearnedPath(p), ok);
  });
}

const ids: Array<[unknown, boolean, string]> = [
  ['agent-ops', true, 'plain'],
  ['a:b@c.d_e-f', true, 'all allowed punctuation'],
  ['x'.repeat(128), true, '128 chars (boundary)'],
  ['x'.repeat(129), false, '129 chars (boundary)'],
  ['', false, 'empty'],
  ['a b', false, 'space'],
  ['a/b', false, 'slash'],
  ['*', false, 'wildcard'],
  ['__proto__', false, 'prototype key (pollution)'],
  [7, false, 'number'],
];

for (const [id, ok, why] of ids) {
  test(`id ${ok ? 'accepted' : 'rejected'}: ${why}`, () => {
    assert.equal(isValidId(id), ok);
  });
}

test('principal keys: `*` allowed only as an ACL key', () => {
  assert.equal(isValidPrincipalKey('*'), true);
  assert.equal(isValidId('*'), false);
});

// Every domain/path the strict validator accepts is also accepted by the schema used at load.
function schemaAccepts(domain: string | undefined, path: string | undefined): boolean {
  const doc = emptyPolicyData();
  if (domain !== undefined) doc.learned_domains.push({ domain, action_id: 'a', source: 'cli', added_at: '2026-01-01T00:00:00Z' });
  if (path !== undefined) doc.learned_paths.push({ path, action_id: 'a', source: 'cli', added_at: '2026-01-01T00:00:00Z' });
  return validateDataDocument(doc);
}

test('fuzz: validator-accepted domains pass the schema pattern', () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
  const domain = fc.tuple(fc.boolean(), fc.array(label, { minLength: 1, maxLength: 4 }), fc.stringMatching(/^[a-z]{2,6}$/))
    .map(([wild, ls, tld]) => `${wild ? '*.' : ''}${[...ls, tld].join('.')}`);
  fc.assert(fc.property(fc.oneof(domain, fc.string()), (d) => !isValidLearnedDomain(d) || schemaAccepts(d, undefined)), { numRuns: 500 });
});

test('fuzz: validator-accepted paths pass the schema pattern and never contain a dot segment', () => {
  const seg = fc.stringMatching(/^[a-z.]{1,4}$/);
  const path = fc.array(seg, { minLength: 1, maxLength: 5 }).map((s) => `/${s.join('/')}`);
  fc.assert(fc.property(fc.oneof(path, fc.string()), (p) => {
    if (!isValidLearnedPath(p)) return true;
    return schemaAccepts(undefined, p) && !p.split('/').includes('..') && !p.split('/').includes('.');
  }), { numRuns: 500 });
});
