// scrubSecrets: each encoding of a secret is redacted, recursively (keys too), without touching
// unrelated text; base64 fragments at every alignment; a property that no encoding survives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { REDACTED, scrubSecrets, SecretScrubber, secretForms } from '../../src/egress/scrub.ts';

const S = 'sk_live/4eC39+HqLyjWDarjtT1zdp7dc=?&';
const b = Buffer.from(S, 'utf8');

// [name, text an upstream sends, part that must not survive]
const forms: Array<[string, string, string?]> = [
  ['raw', S],
  ['base64', b.toString('base64')],
  ['base64 without padding', b.toString('base64').replace(/=+$/, '')],
  ['base64url', b.toString('base64url')],
  ['encodeURIComponent', encodeURIComponent(S)],
  ['encodeURIComponent lower-case hex', encodeURIComponent(S).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())],
  ['double URL-encoded', encodeURIComponent(encodeURIComponent(S))],
  ['form-encoded', new URLSearchParams({ k: S }).toString().slice(2)],
  ['hex', b.toString('hex')],
  ['HEX', b.toString('hex').toUpperCase()],
  ['JSON-escaped', JSON.stringify(S).slice(1, -1)],
  ...(['a', 'ab', 'abc', 'user:', '{"token":"'] as const).map((prefix): [string, string, string] => {
    const blob = Buffer.from(`${prefix}${S}"}`).toString('base64');
    const start = Math.ceil((prefix.length * 8) / 6) + 1;
    return [`inside a base64 blob after ${JSON.stringify(prefix)}`, blob, blob.slice(start, start + 30)];
  }),
  ['inside a base64url blob with a tail', Buffer.from(`abc${S}xyz`).toString('base64url'), Buffer.from(`abc${S}xyz`).toString('base64url').slice(6, 36)],
];

for (const [name, form, core] of forms) {
  test(`scrub: ${name} form is redacted`, () => {
    const out = scrubSecrets(`before ${form} after`, [S]);
    assert.ok(!out.includes(core ?? form), out);
    assert.ok(out.startsWith('before '));
    assert.ok(out.includes(REDACTED));
  });
}

test('scrub: full injected header values are redacted whole (literals)', () => {
  // The guard passes these literals: the formatted header, and for basic auth the pair and its base64.
  const basic = Buffer.from(`u:${S}`).toString('base64');
  const scrubber = new SecretScrubber([S], [`Bearer ${S}`, `u:${S}`, basic, `Basic ${basic}`]);
  assert.equal(scrubber.scrubString(`auth=Bearer ${S};`), `auth=${REDACTED};`);
  assert.equal(scrubber.scrubString(`Basic ${basic}`), REDACTED);
  assert.equal(scrubber.scrubString(basic), REDACTED);
});

test('scrub: recursive through arrays and objects, keys included; input untouched', () => {
  const input = { [S]: [S, { deep: `x${encodeURIComponent(S)}y` }], n: 1, t: true, z: null };
  const out = scrubSecrets(input, [S]);
  assert.deepEqual(out, { [REDACTED]: [REDACTED, { deep: `x${REDACTED}y` }], n: 1, t: true, z: null });
  assert.equal(input.n, 1);
  assert.ok(Object.hasOwn(input, S), 'input not mutated');
});

test('scrub: cycles are handled; non-plain objects are refused rather than passed through', () => {
  const a: Record<string, unknown> = { s: S };
  a.self = a;
  const out = scrubSecrets(a, [S]) as Record<string, unknown>;
  assert.equal(out.s, REDACTED);
  assert.equal(out.self, out);
  assert.throws(() => scrubSecrets({ b: Buffer.from(S) }, [S]), TypeError);
  assert.throws(() => scrubSecrets(new Map([[S, S]]), [S]), TypeError);
});

test('scrub: empty secrets and unrelated text are left alone', () => {
  assert.equal(scrubSecrets('hello world', ['']), 'hello world');
  assert.equal(scrubSecrets('hello world', [S]), 'hello world');
  assert.deepEqual(secretForms(''), []);
});

test('scrubTruncated: a secret cut by the size cap leaves no 4+ character start', () => {
  const scrubber = new SecretScrubber([S]);
  for (let k = 4; k < S.length; k++) {
    const out = scrubber.scrubTruncated(`data ${S.slice(0, k)}`);
    assert.equal(out, `data ${REDACTED}`, `cut after ${k}`);
  }
  assert.equal(scrubber.scrubTruncated('plain text'), 'plain text');
});

test('property: no encoded form of any secret survives scrubbing', () => {
  fc.assert(
    fc.property(fc.string({ minLength: 6, maxLength: 40, unit: 'grapheme' }), fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 }), (secret, pre, post) => {
      const bytes = Buffer.from(secret, 'utf8');
      const encodings = [
        secret,
        bytes.toString('base64'),
        bytes.toString('base64url'),
        encodeURIComponent(secret),
        bytes.toString('hex'),
      ];
      for (const e of encodings) {
        const out = scrubSecrets(`${pre}${e}${post}`, [secret]);
        assert.ok(!out.includes(e), `form ${e} survived in ${out}`);
      }
    }),
    { numRuns: 1000 },
  );
});
