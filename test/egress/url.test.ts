// The pure pre-check and the allowlist: pattern forms (exact, .suffix, *.suffix, IP literals, IDN),
// what becomes an "unresolved domain" vs an outright refusal, and a property that every spelling of
// a non-public IPv4 the WHATWG parser accepts is refused by the real guard.fetch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compileDomainPatterns, hostMatches, normalizeDomainPattern, parseTarget, precheck } from '../../src/egress/url.ts';
import { EgressGuard } from '../../src/egress/guard.ts';
import { isPublicAddress } from '../../src/egress/address.ts';
import type { EgressProfile } from '../../src/contracts.ts';
import { isGate, LIMITS, tableResolver } from './fixtures.ts';

const PROFILE: EgressProfile = {
  allowed_domains: ['api.example.com', '.github.com', '*.s3.amazonaws.com', 'bücher.example', '203.0.113.9', '[2001:4860::8888]'],
  allowed_methods: ['GET', 'post'],
};

const matchCases: Array<{ host: string; resolved: boolean; why: string }> = [
  { host: 'api.example.com', resolved: true, why: 'exact' },
  { host: 'API.EXAMPLE.COM', resolved: true, why: 'exact, any case' },
  { host: 'api.example.com.', resolved: true, why: 'exact, trailing dot' },
  { host: 'x.api.example.com', resolved: false, why: 'exact does not cover subdomains' },
  { host: 'example.com', resolved: false, why: 'exact does not cover the parent' },
  { host: 'github.com', resolved: true, why: '.suffix covers the apex' },
  { host: 'api.github.com', resolved: true, why: '.suffix covers a subdomain' },
  { host: 'a.b.github.com', resolved: true, why: '.suffix covers deeper subdomains' },
  { host: 'evilgithub.com', resolved: false, why: 'suffix is label-aligned' },
  { host: 'github.com.evil.test', resolved: false, why: 'suffix is anchored at the end' },
  { host: 's3.amazonaws.com', resolved: false, why: '*.suffix excludes the apex' },
  { host: 'bucket.s3.amazonaws.com', resolved: true, why: '*.suffix covers strict subdomains' },
  { host: 'xn--bcher-kva.example', resolved: true, why: 'IDN entry matches its punycode' },
  { host: 'bücher.example', resolved: true, why: 'IDN host matches the IDN entry' },
  { host: 'bucher.example', resolved: false, why: 'no folding of accents' },
  { host: '203.0.113.9', resolved: false, why: '(non-public literal: refused before matching)' },
  { host: '[2001:4860::8888]', resolved: true, why: 'IPv6 literal listed exactly' },
  { host: '[2001:4860:0:0:0:0:0:8888]', resolved: true, why: 'IPv6 literal in another spelling' },
  { host: '[2001:4860::8889]', resolved: false, why: 'other IPv6 literal' },
  { host: 'unknown.test', resolved: false, why: 'not listed: unresolved, not refused' },
];

for (const c of matchCases) {
  test(`precheck allowlist: ${c.host} -> resolved=${c.resolved} (${c.why})`, () => {
    if (c.host === '203.0.113.9') {
      assert.throws(() => precheck(`https://${c.host}/`, 'GET', PROFILE), isGate('egress_address_denied', { category: 'documentation' }));
      return;
    }
    const r = precheck(`https://${c.host}/x`, 'get', PROFILE);
    assert.equal(r.resolved, c.resolved);
    assert.equal(r.matched, c.resolved ? 'manifest' : null);
    assert.equal(r.method, 'GET');
  });
}

test('precheck: extra (learned / approved) domains resolve, marked as extra', () => {
  const r = precheck('https://new.example.org/', 'POST', PROFILE, ['.example.org']);
  assert.equal(r.resolved, true);
  assert.equal(r.matched, 'extra');
});

test('precheck: result shape (normalized URL, fragment dropped, port, path)', () => {
  const r = precheck('https://API.example.com:443/a/../b?q=1#frag', 'GET', PROFILE);
  assert.deepEqual(
    { href: r.href, host: r.host, hostKind: r.hostKind, port: r.port, path: r.path, scheme: r.scheme, requiresUnsafeRange: r.requiresUnsafeRange },
    { href: 'https://api.example.com/b?q=1', host: 'api.example.com', hostKind: 'domain', port: 443, path: '/b?q=1', scheme: 'https', requiresUnsafeRange: false },
  );
});

test('precheck: http and odd ports only with unsafe ranges configured, and then only deferred to fetch', () => {
  assert.throws(() => precheck('http://api.example.com/', 'GET', PROFILE), isGate('egress_scheme_denied'));
  assert.throws(() => precheck('https://api.example.com:8080/', 'GET', PROFILE), isGate('egress_port_denied'));
  const r = precheck('http://api.example.com:8080/', 'GET', PROFILE, [], { unsafeAllow: ['127.0.0.0/8'] });
  assert.equal(r.requiresUnsafeRange, true);
  const lit = precheck('http://127.0.0.1:8080/', 'GET', PROFILE, [], { unsafeAllow: ['127.0.0.0/8'] });
  assert.equal(lit.unsafeLiteral, true);
  // A public literal never gets plain http, unsafe ranges or not.
  assert.throws(() => precheck('http://8.8.8.8/', 'GET', PROFILE, [], { unsafeAllow: ['127.0.0.0/8'] }), isGate('egress_scheme_denied'));
  // A private literal outside the unsafe range is refused outright.
  assert.throws(() => precheck('http://10.0.0.1/', 'GET', PROFILE, [], { unsafeAllow: ['127.0.0.0/8'] }), isGate('egress_address_denied'));
});

test('precheck: allowed_ports from the profile replace the default 443', () => {
  const p: EgressProfile = { ...PROFILE, allowed_ports: [8443] };
  assert.equal(precheck('https://api.example.com:8443/', 'GET', p).port, 8443);
  assert.throws(() => precheck('https://api.example.com/', 'GET', p), isGate('egress_port_denied', { port: 443 }));
});

test('normalizeDomainPattern: malformed entries never match anything', () => {
  for (const bad of ['', '*.', '.', '*.com', '.com', 'a b.com', 'api.example.com/path', 'user@api.example.com', 'api.example.com:443', '*.1.2.3.4', '.10.0.0.1', 'exa\\mple.com', '*.*.example.com', 'a..b.com']) {
    assert.equal(normalizeDomainPattern(bad), undefined, bad);
  }
  assert.deepEqual(normalizeDomainPattern('*.Example.COM.'), { kind: 'strict_subdomains', host: 'example.com', hostKind: 'domain' });
  assert.deepEqual(normalizeDomainPattern('2130706433'), { kind: 'exact', host: '127.0.0.1', hostKind: 'ipv4' });
  assert.deepEqual(normalizeDomainPattern('::1'), { kind: 'exact', host: '::1', hostKind: 'ipv6' });
});

test('parseTarget: rejects what WHATWG would silently repair', () => {
  for (const [raw, reason] of [
    ['https://a.test/\u2028', 'url_malformed'],
    ['https://a.test/\u00a0', 'url_malformed'],
    ['https://a\u200b.test/', 'url_malformed'],
    ['https://a.test\\x', 'url_malformed'],
    ['https:/a.test/', 'url_malformed'],
    ['https://a_b.test/', undefined],
  ] as const) {
    if (reason === undefined) assert.equal(parseTarget(raw).host, 'a_b.test');
    else assert.throws(() => parseTarget(raw), isGate('egress_denied', { reason }), raw);
  }
});

test('property: .suffix matches apex and subdomains; *.suffix only strict subdomains; never a string suffix', () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
  fc.assert(
    fc.property(fc.array(label, { minLength: 2, maxLength: 4 }), fc.array(label, { minLength: 0, maxLength: 3 }), label, (base, sub, glue) => {
      const apex = base.join('.');
      const dot = compileDomainPatterns([`.${apex}`]);
      const star = compileDomainPatterns([`*.${apex}`]);
      if (dot.length === 0) {
        // Only a number-like last label (an IPv4 form to WHATWG) or a label WHATWG cannot decode
        // (an `xn--` label that is not valid punycode, e.g. `xn--a`) makes an entry malformed.
        const numberLike = /^(0x[0-9a-f]*|[0-9]+)$/.test(base[base.length - 1] ?? '');
        const badALabel = base.some((l) => l.startsWith('xn--')) && !URL.canParse(`https://${apex}/`);
        assert.ok(numberLike || badALabel, `.${apex} was refused`);
        return;
      }
      const host = [...sub, apex].join('.');
      assert.equal(hostMatches(host, 'domain', dot), true);
      assert.equal(hostMatches(host, 'domain', star), sub.length > 0);
      assert.equal(hostMatches(`${glue}${apex}`, 'domain', dot), false);
    }),
    { numRuns: 2000 },
  );
});

// Spellings of an IPv4 address that WHATWG host parsing accepts.
function spellings(n: number): string[] {
  const b = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  const [a, b1, c, d] = b as [number, number, number, number];
  return [
    b.join('.'),
    String(n),
    `0x${n.toString(16)}`,
    `0${n.toString(8)}`,
    b.map((x) => `0x${x.toString(16)}`).join('.'),
    b.map((x) => `0${x.toString(8)}`).join('.'),
    `${a}.${(b1 << 16) | (c << 8) | d}`,
    `${a}.${b1}.${(c << 8) | d}`,
    `${b.join('.')}.`,
    `[::ffff:${b.join('.')}]`,
  ];
}

test('property: every WHATWG spelling of a non-public IPv4 is refused by guard.fetch (address rule, no DNS)', async () => {
  const resolver = tableResolver({});
  const guard = new EgressGuard({ resolver });
  const nonPublic = fc.oneof(
    fc.integer({ min: 0x7f000000, max: 0x7fffffff }), // 127/8
    fc.integer({ min: 0x0a000000, max: 0x0affffff }), // 10/8
    fc.integer({ min: 0xa9fe0000, max: 0xa9feffff }), // 169.254/16
    fc.integer({ min: 0xac100000, max: 0xac1fffff }), // 172.16/12
    fc.integer({ min: 0xc0a80000, max: 0xc0a8ffff }), // 192.168/16
    fc.integer({ min: 0x64400000, max: 0x647fffff }), // 100.64/10
    fc.integer({ min: 0x00000000, max: 0x00ffffff }), // 0/8
    fc.integer({ min: 0xe0000000, max: 0xffffffff }), // 224/4 + 240/4
  );
  await fc.assert(
    fc.asyncProperty(nonPublic, fc.nat(9), async (n, which) => {
      const spelled = spellings(n)[which] as string;
      const url = `https://${spelled}/`;
      const canonical = new URL(url).hostname;
      assert.equal(isPublicAddress(canonical.replace(/^\[|\]$/g, '')), false);
      const profile: EgressProfile = { allowed_domains: [canonical], allowed_methods: ['GET'] };
      await assert.rejects(guard.fetch({ method: 'GET', url }, { profile, limits: LIMITS }), isGate('egress_address_denied', { reason: 'address_not_public' }));
    }),
    { numRuns: 400 },
  );
  assert.equal(resolver.total(), 0);
});
