// canonicalJson is a one-pass RFC 8785 serializer with toJsonValue's refusals. It must produce
// exactly canonicalize(toJsonValue(x)) (the reference: the `canonicalize` package over the
// validated copy) for every JSON value, and refuse exactly the same inputs.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
import canonicalize from 'canonicalize';
import { canonicalJson, canonicalMembers, joinMembers, toJsonValue, withMember } from '../../src/ledger/canonical.ts';
import { hashEvent, hashEventWithDetailText } from '../../src/ledger/chain.ts';
import type { AuditEvent } from '../../src/ledger/types.ts';

const reference = (v: unknown): string => canonicalize(toJsonValue(v))!;

function outcome(fn: () => string): { ok: string } | { err: string } {
  try {
    return { ok: fn() };
  } catch (e) {
    assert.ok(e instanceof TypeError, `expected a TypeError, got ${String(e)}`);
    return { err: (e as Error).message };
  }
}

// Keys and strings drawn to hit JCS's hard cases: escapes, non-BMP, sort order by UTF-16 units.
const tricky = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom('__proto__', 'constructor', '', '\u0000', '\u007f', '\u2028', '\ud83d\ude00', '\ufb33', 'é', 'e\u0301', '1', '10', '9'),
);
const numbers = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), fc.constantFrom(-0, 1e21, 1e-7, 5e-324, 2 ** 53, 0.1 + 0.2));
const { json } = fc.letrec((tie) => ({
  json: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.boolean(), numbers, tricky, tie('arr'), tie('obj')),
  arr: fc.array(tie('json'), { maxLength: 5 }),
  obj: fc.dictionary(tricky, tie('json'), { maxKeys: 6 }).map((d) => {
    // defineProperty keeps "__proto__" an own member, as JSON.parse does.
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(d)) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
    return o;
  }),
}));

describe('canonicalJson', () => {
  test('equals canonicalize(toJsonValue(x)) for arbitrary JSON values', () => {
    fc.assert(fc.property(json, (v) => assert.equal(canonicalJson(v), reference(v))), { numRuns: 3000 });
  });

  test('equals the reference after a JSON round trip (what is stored and re-verified)', () => {
    fc.assert(fc.property(json, (v) => {
      const parsed: unknown = JSON.parse(JSON.stringify(v));
      assert.equal(canonicalJson(parsed), reference(parsed));
    }), { numRuns: 1000 });
  });

  test('RFC 8785 examples: number forms, key order by UTF-16 code units, escapes', () => {
    assert.equal(canonicalJson({ b: [1e30, 4.5e-7, -0, 333333333.3333333], a: '\u20ac$\u000f\nA\'B"\\\\"/' }),
      '{"a":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/","b":[1e+30,4.5e-7,0,333333333.3333333]}');
    assert.equal(canonicalJson({ '\u20ac': 1, '\r': 2, '\ud83d\ude00': 3, '\u0080': 4, '1': 5, '\ufb33': 6 }),
      '{"\\r":2,"1":5,"\u0080":4,"\u20ac":1,"\ud83d\ude00":3,"\ufb33":6}');
    assert.equal(canonicalJson({ x: undefined, y: 1 }), '{"y":1}');
  });

  const bad: Array<[string, () => unknown]> = [
    ['NaN', () => ({ a: NaN })],
    ['Infinity in an array', () => [1, Infinity]],
    ['undefined in an array', () => [undefined]],
    ['top-level undefined', () => undefined],
    ['function member', () => ({ f: () => 1 })],
    ['toJSON method (not plain JSON)', () => ({ toJSON: () => 'x' })],
    ['bigint', () => ({ n: 1n })],
    ['symbol', () => ({ s: Symbol('s') })],
    ['Date', () => ({ d: new Date(0) })],
    ['Map', () => new Map()],
    ['class instance', () => new (class A { x = 1; })()],
    ['lone high surrogate', () => ({ s: 'a\ud800' })],
    ['lone low surrogate in a key', () => ({ ['\udc00']: 1 })],
    ['cycle', () => { const o: Record<string, unknown> = {}; o.self = o; return o; }],
  ];
  for (const [name, make] of bad) {
    test(`refuses ${name}, as toJsonValue does`, () => {
      const mine = outcome(() => canonicalJson(make()));
      const ref = outcome(() => reference(make()));
      assert.ok('err' in mine, `canonicalJson accepted ${name}`);
      assert.deepEqual(mine, ref);
    });
  }

  test('a refusal names the path to the refused value', () => {
    assert.throws(() => canonicalJson({ x: { y: [0, { z: 1n }] } }), { name: 'TypeError', message: '$.x.y[1].z: bigint is not JSON' });
    assert.throws(() => toJsonValue({ x: { y: [0, { z: 1n }] } }), { name: 'TypeError', message: '$.x.y[1].z: bigint is not JSON' });
    assert.throws(() => canonicalMembers({ k: ['ok', 'a\ud800'] }), { message: '$.k[1]: lone surrogate' });
    assert.throws(() => canonicalJson({ a: [[], [undefined]] }), { message: '$.a[1][0]: undefined in array' });
  });

  test('deep nesting: same text as the reference, and a cycle far down is still found (past the linear-scan depth)', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 2000; i++) deep = i % 2 === 0 ? [deep] : { k: deep };
    assert.equal(canonicalJson(deep), reference(deep));
    const root: Record<string, unknown> = {};
    let node = root;
    for (let i = 0; i < 100; i++) {
      const next: Record<string, unknown> = {};
      node.n = next;
      node = next;
    }
    node.back = root.n;
    assert.throws(() => canonicalJson(root), { message: `$${'.n'.repeat(100)}.back: cycle` });
    assert.throws(() => toJsonValue(root), { message: `$${'.n'.repeat(100)}.back: cycle` });
  });

  test('a shared (non-cyclic) sub-object is fine', () => {
    const s = { k: 1 };
    assert.equal(canonicalJson({ a: s, b: [s, s] }), '{"a":{"k":1},"b":[{"k":1},{"k":1}]}');
  });

  test('canonicalMembers / withMember: the same text as canonicalJson of the object with the member added', () => {
    const plainObject = json.filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v));
    fc.assert(fc.property(plainObject, tricky, fc.string(), (o, key, value) => {
      fc.pre(!Object.hasOwn(o, key));
      const members = canonicalMembers(o);
      assert.equal(joinMembers(members), canonicalJson(o));
      const withIt: Record<string, unknown> = { ...o };
      Object.defineProperty(withIt, key, { value, enumerable: true, writable: true, configurable: true });
      assert.equal(withMember(members, key, value), canonicalJson(withIt));
    }), { numRuns: 2000 });
    assert.throws(() => withMember(canonicalMembers({ a: 1 }), 'a', 'x'), /already a member/);
    assert.throws(() => canonicalMembers([] as unknown as Record<string, unknown>), TypeError);
  });
});

describe('hashEventWithDetailText (how the writer hashes new events)', () => {
  const str = fc.oneof(fc.constant(null), fc.string(), fc.constantFrom('\u2028', '\ud83d\ude00', 'é', '"q"\\'));
  const detail = fc.oneof(fc.constant(null), json.filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)));
  test('equals hashEvent of the same event with the detail as an object, for arbitrary events', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 53 - 1 }), str, str, str, str, str, str, detail, (seq, trace, action, principal, session, operator, reason, d) => {
      const ev = {
        seq, event_id: 'evt_x', ts: '2026-11-22T13:00:00.000Z', type: 'execute', decision: 'allow' as const, trace_id: trace, action_id: action,
        principal, session_id: session, operator, reason_code: reason, prev_hash: '0'.repeat(64),
      };
      const full = { ...ev, detail: d as AuditEvent['detail'] };
      assert.equal(hashEventWithDetailText(ev, d === null ? null : canonicalJson(d)), hashEvent(full));
    }), { numRuns: 1500 });
  });
});

describe('canonicalJson memory', () => {
  test('member names from outside (provider output, details) are not retained: 300 distinct 1 MiB keys keep < 64 MiB', () => {
    const gcOnce = runInNewContext('gc') as () => void;
    // Two full collections: after one, the dead keys (internalized by JSON.parse) can still count
    // (130–216 MiB measured here), after the second they are gone (1–2 MiB).
    const gc = () => { gcOnce(); gcOnce(); };
    gc();
    const before = process.memoryUsage().heapUsed;
    const filler = 'x'.repeat(1 << 20);
    for (let i = 0; i < 300; i++) {
      const doc = JSON.parse(`{"${String(i).padStart(8, '0')}${filler}":1}`) as Record<string, unknown>;
      assert.ok(canonicalJson(doc).length > 1 << 20);
    }
    gc();
    const retained = process.memoryUsage().heapUsed - before;
    assert.ok(retained < 64 * 1024 * 1024, `retained ${Math.round(retained / 1048576)} MiB`);
  });
});
