// EgressGuard end to end against loopback upstreams (reachable only through the unsafe range):
// credential injection and stripping, scrubbing of every secret form from what comes back, size and
// time caps, redirects that are allowed, audit notes, TLS pinning with SNI, and option validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressGuard, type EgressAuditNote, type EgressFetchContext } from '../../src/egress/guard.ts';
import { REDACTED } from '../../src/egress/scrub.ts';
import type { EgressProfile, SecretDeclaration } from '../../src/contracts.ts';
import { isGate, LIMITS, startUpstream, tableResolver } from './fixtures.ts';

const TOKEN = 'tok_9f8e7d6c5b4a3f2e1d0c+/=?&';
const APIKEY = 'key-ZXhhbXBsZS1rZXk-0123456789';
const PASSWORD = 'p@ss:w0rd/with?chars';

const DECLS: SecretDeclaration[] = [
  { name: 'token', required: true, inject: { type: 'header', header: 'Authorization', format: 'Bearer {value}' } },
  { name: 'api_key', required: true, inject: { type: 'header', header: 'X-Api-Key', format: '{value}' } },
];

const resolver = tableResolver({
  'api.allowed.test': ['127.0.0.1'],
  'other.allowed.test': ['127.0.0.1'],
  'learned.test': ['127.0.0.1'],
  'tls.allowed.test': ['127.0.0.1'],
});
const guard = new EgressGuard({ resolver, unsafeAllow: ['127.0.0.0/8'] });
const PROFILE: EgressProfile = { allowed_domains: ['api.allowed.test', 'other.allowed.test'], allowed_methods: ['GET', 'POST', 'PUT', 'HEAD'] };

function ctx(over: Partial<EgressFetchContext> = {}): EgressFetchContext {
  return {
    profile: PROFILE,
    secrets: { declarations: DECLS, values: new Map([['token', TOKEN], ['api_key', APIKEY]]) },
    limits: LIMITS,
    ...over,
  };
}

/** Every form of a secret an upstream could echo back. */
function leakForms(secret: string): string[] {
  const b = Buffer.from(secret, 'utf8');
  return [
    secret,
    b.toString('base64'),
    b.toString('base64').replace(/=+$/, ''),
    b.toString('base64url'),
    encodeURIComponent(secret),
    new URLSearchParams([['', secret]]).toString().slice(1),
    b.toString('hex'),
    b.toString('hex').toUpperCase(),
    JSON.stringify(secret).slice(1, -1),
  ];
}

test('injection: the upstream sees the declared credentials; provider-set auth headers are stripped', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('ok'));
  const notes: EgressAuditNote[] = [];
  await guard.fetch(
    {
      method: 'POST',
      url: `http://api.allowed.test:${up.port}/v1/things`,
      headers: {
        Authorization: 'Bearer attacker',
        'x-api-key': 'attacker',
        Cookie: 'session=attacker',
        'Proxy-Authorization': 'Basic attacker',
        'X-Auth-Token': 'attacker',
        'X-HTTP-Method-Override': 'DELETE',
        'X-Forwarded-For': '10.0.0.1',
        'Content-Type': 'application/json',
        'X-Trace': 'kept',
      },
      body: '{"a":1}',
    },
    ctx({ audit: (n) => void notes.push(n) }),
  );
  const hit = up.hits[0];
  assert.ok(hit);
  assert.equal(hit.headers.authorization, `Bearer ${TOKEN}`);
  assert.equal(hit.headers['x-api-key'], APIKEY);
  for (const h of ['cookie', 'proxy-authorization', 'x-auth-token', 'x-http-method-override', 'x-forwarded-for']) {
    assert.equal(hit.headers[h], undefined, `${h} must be stripped`);
  }
  assert.equal(hit.headers['x-trace'], 'kept');
  assert.equal(hit.headers['content-type'], 'application/json');
  assert.equal(hit.headers['accept-encoding'], 'identity');
  assert.equal(hit.body, '{"a":1}');
  const stripped = notes.find((n) => n.type === 'egress_headers_stripped');
  assert.deepEqual(
    [...(stripped?.detail.headers as string[])].sort(),
    ['authorization', 'cookie', 'proxy-authorization', 'x-api-key', 'x-auth-token', 'x-forwarded-for', 'x-http-method-override'],
  );
});

test('injection: basic auth is built from the declared username and the secret', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('ok'));
  await guard.fetch(
    { method: 'GET', url: `http://api.allowed.test:${up.port}/`, headers: { authorization: 'Basic YXR0YWNrZXI6eA==' } },
    ctx({ secrets: { declarations: [{ name: 'pw', required: true, inject: { type: 'basic', username: 'svc' } }], values: { pw: PASSWORD } } }),
  );
  assert.equal(up.hits[0]?.headers.authorization, `Basic ${Buffer.from(`svc:${PASSWORD}`).toString('base64')}`);
});

test('injection: a provider Authorization is stripped even when the action declares no secrets', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('ok'));
  await guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/`, headers: { Authorization: 'Bearer forged' } }, ctx({ secrets: undefined }));
  assert.equal(up.hits[0]?.headers.authorization, undefined);
});

test('injection: never toward a learned / approved (extra) domain, only the manifest’s own', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('ok'));
  const notes: EgressAuditNote[] = [];
  await guard.fetch({ method: 'GET', url: `http://learned.test:${up.port}/` }, ctx({ extraDomains: ['learned.test'], audit: (n) => void notes.push(n) }));
  assert.equal(up.hits[0]?.headers.authorization, undefined);
  assert.equal(up.hits[0]?.headers['x-api-key'], undefined);
  const unsafe = notes.find((n) => n.type === 'egress_unsafe_range');
  assert.equal(unsafe?.detail.credentials_injected, false);
});

test('injection: a redirect from a manifest domain to a learned domain drops the credentials on that hop', async (t) => {
  const up = await startUpstream(t, (req, res) => {
    if (req.url === '/start') {
      res.writeHead(302, { location: `http://learned.test:${(req.socket.address() as { port: number }).port}/landing` });
      res.end();
    } else res.end('landed');
  });
  const out = await guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/start` }, ctx({ extraDomains: ['learned.test'] }));
  assert.equal(out.body, 'landed');
  assert.equal(up.hits[0]?.headers.authorization, `Bearer ${TOKEN}`);
  assert.equal(up.hits[1]?.headers.host, `learned.test:${up.port}`);
  assert.equal(up.hits[1]?.headers.authorization, undefined);
  assert.equal(up.hits[1]?.headers['x-api-key'], undefined);
});

test('secret_missing: a required secret without a value fails before DNS or any byte is sent', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('ok'));
  const calls = resolver.total();
  for (const values of [new Map([['api_key', APIKEY]]), new Map([['token', ''], ['api_key', APIKEY]])]) {
    await assert.rejects(
      guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/` }, ctx({ secrets: { declarations: DECLS, values } })),
      isGate('secret_missing', { secret: 'token' }),
    );
  }
  assert.equal(up.hits.length, 0);
  assert.equal(resolver.total(), calls);
});

test('an optional secret without a value is simply not injected', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('ok'));
  const decls: SecretDeclaration[] = [{ name: 'opt', required: false, inject: { type: 'header', header: 'X-Opt', format: '{value}' } }];
  await guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/` }, ctx({ secrets: { declarations: decls, values: {} } }));
  assert.equal(up.hits[0]?.headers['x-opt'], undefined);
});

const badInjections: Array<{ name: string; decls: SecretDeclaration[]; values: Record<string, string>; reason: string }> = [
  {
    name: 'secret value with CRLF (header injection through a secret)',
    decls: [{ name: 's', required: true, inject: { type: 'header', header: 'X-Key', format: '{value}' } }],
    values: { s: 'abc\r\nX-Evil: 1' },
    reason: 'secret_value_invalid',
  },
  {
    name: 'secret value with NUL',
    decls: [{ name: 's', required: true, inject: { type: 'header', header: 'X-Key', format: '{value}' } }],
    values: { s: 'abc\u0000def' },
    reason: 'secret_value_invalid',
  },
  {
    name: 'injection into Host',
    decls: [{ name: 's', required: true, inject: { type: 'header', header: 'Host', format: '{value}' } }],
    values: { s: 'x' },
    reason: 'secret_injection_invalid',
  },
  {
    name: 'format without {value}',
    decls: [{ name: 's', required: true, inject: { type: 'header', header: 'X-Key', format: 'static' } }],
    values: { s: 'x' },
    reason: 'secret_injection_invalid',
  },
  {
    name: 'basic username containing a colon',
    decls: [{ name: 's', required: true, inject: { type: 'basic', username: 'a:b' } }],
    values: { s: 'x' },
    reason: 'secret_injection_invalid',
  },
  {
    name: 'two secrets into the same header',
    decls: [
      { name: 'a', required: true, inject: { type: 'header', header: 'Authorization', format: 'Bearer {value}' } },
      { name: 'b', required: true, inject: { type: 'basic', username: 'u' } },
    ],
    values: { a: 'x', b: 'y' },
    reason: 'secret_injection_conflict',
  },
];

for (const c of badInjections) {
  test(`injection refused: ${c.name} — nothing sent, value not echoed`, async (t) => {
    const up = await startUpstream(t, (_req, res) => res.end('ok'));
    const err = await guard
      .fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/` }, ctx({ secrets: { declarations: c.decls, values: c.values } }))
      .then(
        () => assert.fail('must be refused'),
        (e: unknown) => e,
      );
    assert.ok(isGate('egress_denied', { reason: c.reason })(err));
    const seen = JSON.stringify({ m: (err as Error).message, x: (err as { extra?: unknown }).extra });
    for (const v of Object.values(c.values)) if (v.length > 1) assert.ok(!seen.includes(v), 'value echoed in the error');
    assert.equal(up.hits.length, 0);
  });
}

test('scrubbing: no secret form survives in the body or headers returned to the provider', async (t) => {
  const basic = Buffer.from(`svc:${PASSWORD}`).toString('base64');
  const up = await startUpstream(t, (req, res) => {
    const everything = [
      ...leakForms(TOKEN),
      ...leakForms(APIKEY),
      ...leakForms(PASSWORD),
      `Bearer ${TOKEN}`,
      basic,
      `Basic ${basic}`,
      // A secret inside a larger base64 blob, at every alignment.
      Buffer.from(`x${TOKEN}y`).toString('base64'),
      Buffer.from(`xy${APIKEY}`).toString('base64'),
      Buffer.from(`{"k":"${APIKEY}"}`).toString('base64url'),
      JSON.stringify(req.headers),
    ];
    res.setHeader('Set-Cookie', `s=${TOKEN}`);
    res.setHeader('X-Echo', TOKEN);
    res.setHeader('Link', `<https://api.allowed.test/next?key=${encodeURIComponent(APIKEY)}>; rel="next"`);
    res.setHeader('X-RateLimit-Remaining', `42 ${Buffer.from(TOKEN).toString('base64')}`);
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ everything }));
  });
  // X-Api-Key and basic auth are injected; the token is resolved too (scrubbed even when not injected).
  const decls: SecretDeclaration[] = [DECLS[1] as SecretDeclaration, { name: 'pw', required: true, inject: { type: 'basic', username: 'svc' } }];
  const out = await guard.fetch(
    { method: 'GET', url: `http://api.allowed.test:${up.port}/` },
    ctx({ secrets: { declarations: decls, values: new Map([['api_key', APIKEY], ['pw', PASSWORD], ['token', TOKEN]]) } }),
  );
  assert.equal(up.hits[0]?.headers.authorization, `Basic ${basic}`);
  const returned = JSON.stringify(out);
  const forbidden = [
    ...leakForms(TOKEN),
    ...leakForms(APIKEY),
    ...leakForms(PASSWORD),
    basic,
    TOKEN.slice(0, 12),
    APIKEY.slice(0, 12),
    // Fragments of the secrets inside larger base64 blobs (bytes wholly inside the secret).
    Buffer.from(`x${TOKEN}y`).toString('base64').slice(4, 20),
    Buffer.from(`xy${APIKEY}`).toString('base64').slice(4, 20),
    Buffer.from(`{"k":"${APIKEY}"}`).toString('base64url').slice(12, 28),
  ];
  for (const f of forbidden) assert.ok(!returned.includes(f), `leaked form ${f}`);
  assert.ok(out.body.includes(REDACTED));
  assert.equal(out.headers['set-cookie'], undefined);
  assert.equal(out.headers['x-echo'], undefined);
  assert.ok(out.headers.link?.includes(REDACTED));
  assert.ok(out.headers['x-ratelimit-remaining']?.startsWith('42 '));
  assert.equal(out.headers['content-type'], 'application/json');
});

test('body cap: stops at max_host_response_bytes and marks truncated; exactly the cap is not truncated', async (t) => {
  const up = await startUpstream(t, (req, res) => {
    const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n'));
    res.end('a'.repeat(n));
  });
  const limits = { max_host_response_bytes: 1000, timeout_ms: 5000 };
  const big = await guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/?n=1000000` }, ctx({ limits }));
  assert.equal(big.body.length, 1000);
  assert.equal(big.truncated, true);
  const exact = await guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/?n=1000` }, ctx({ limits }));
  assert.equal(exact.body.length, 1000);
  assert.equal(exact.truncated, false);
});

test('body cap: a secret cut in half by the cap does not leak its first half', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('a'.repeat(990) + TOKEN + 'tail'));
  const out = await guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/` }, ctx({ limits: { max_host_response_bytes: 1000, timeout_ms: 5000 } }));
  assert.equal(out.truncated, true);
  assert.ok(!out.body.includes(TOKEN.slice(0, 4)), 'prefix of the secret leaked');
  assert.ok(out.body.endsWith(REDACTED));
});

test('time cap: a silent upstream fails with action_execution_failed (timeout)', async (t) => {
  const up = await startUpstream(t, () => {
    /* never answers */
  });
  const started = Date.now();
  await assert.rejects(
    guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/` }, ctx({ limits: { max_host_response_bytes: 100, timeout_ms: 150 } })),
    isGate('action_execution_failed', { reason: 'timeout' }),
  );
  assert.ok(Date.now() - started < 3000);
});

test('time cap: an upstream that stalls mid-body fails with timeout', async (t) => {
  const up = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('partial');
  });
  await assert.rejects(
    guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/` }, ctx({ limits: { max_host_response_bytes: 1000, timeout_ms: 150 } })),
    isGate('action_execution_failed', { reason: 'timeout' }),
  );
});

test('the caller’s AbortSignal aborts the fetch', async (t) => {
  const up = await startUpstream(t, () => {});
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  await assert.rejects(
    guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/` }, ctx({ signal: ac.signal })),
    isGate('action_execution_failed', { reason: 'aborted' }),
  );
});

test('a slow resolver counts against the time cap', async () => {
  const slow = new EgressGuard({ resolver: () => new Promise(() => {}), unsafeAllow: ['127.0.0.0/8'] });
  await assert.rejects(
    slow.fetch({ method: 'GET', url: 'https://api.allowed.test/' }, ctx({ limits: { max_host_response_bytes: 10, timeout_ms: 100 } })),
    isGate('action_execution_failed', { reason: 'timeout' }),
  );
});

test('redirects that stay allowed: relative Location, 303 POST->GET, 307 keeps method and body, fragment dropped', async (t) => {
  const up = await startUpstream(t, (req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/see-other') res.writeHead(303, { location: '/echo#frag' }).end();
    else if (u.pathname === '/temp') res.writeHead(307, { location: `http://other.allowed.test:${u.searchParams.get('p')}/echo` }).end();
    else res.end('echo');
  });
  const a = await guard.fetch({ method: 'POST', url: `http://api.allowed.test:${up.port}/see-other`, body: 'payload', headers: { 'content-type': 'text/plain' } }, ctx());
  assert.equal(a.body, 'echo');
  assert.equal(up.hits[1]?.method, 'GET');
  assert.equal(up.hits[1]?.url, '/echo');
  assert.equal(up.hits[1]?.body, '');
  assert.equal(up.hits[1]?.headers['content-type'], undefined);
  const b = await guard.fetch({ method: 'PUT', url: `http://api.allowed.test:${up.port}/temp?p=${up.port}`, body: 'payload' }, ctx());
  assert.equal(b.body, 'echo');
  assert.equal(up.hits[3]?.method, 'PUT');
  assert.equal(up.hits[3]?.body, 'payload');
  assert.equal(up.hits[3]?.headers.host, `other.allowed.test:${up.port}`);
  assert.equal(up.hits[3]?.headers.authorization, `Bearer ${TOKEN}`, 'other.allowed.test is a manifest domain');
});

test('fragment and trailing dot / uppercase host are normalized, not sent', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('ok'));
  await guard.fetch({ method: 'get', url: `http://API.Allowed.TEST.:${up.port}/p?q=1#@evil.test` }, ctx());
  assert.equal(up.hits[0]?.url, '/p?q=1');
  assert.equal(up.hits[0]?.method, 'GET');
  assert.equal(up.hits[0]?.headers.host, `api.allowed.test:${up.port}`);
});

test('audit: every use of an unsafe range is noted, without secret values', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('ok'));
  const notes: EgressAuditNote[] = [];
  await guard.fetch({ method: 'GET', url: `http://api.allowed.test:${up.port}/` }, ctx({ audit: (n) => void notes.push(n) }));
  const unsafe = notes.filter((n) => n.type === 'egress_unsafe_range');
  assert.equal(unsafe.length, 1);
  assert.deepEqual(unsafe[0]?.detail, {
    host: 'api.allowed.test',
    address: '127.0.0.1',
    port: up.port,
    scheme: 'http',
    range: '127.0.0.0/8',
    hop: 0,
    credentials_injected: true,
  });
  const all = JSON.stringify(notes);
  assert.ok(!all.includes(TOKEN) && !all.includes(APIKEY));
});

test('audit: a failing audit sink stops the request before it is sent (fail closed)', async (t) => {
  const up = await startUpstream(t, (_req, res) => res.end('ok'));
  await assert.rejects(
    guard.fetch(
      { method: 'GET', url: `http://api.allowed.test:${up.port}/` },
      ctx({
        audit: () => {
          throw new Error('ledger down');
        },
      }),
    ),
  );
  assert.equal(up.hits.length, 0);
});

test('response headers: only the safe set comes back', async (t) => {
  const up = await startUpstream(t, (_req, res) => {
    res.setHeader('Set-Cookie', ['a=1', 'b=2']);
    res.setHeader('WWW-Authenticate', 'Bearer realm="x"');
    res.setHeader('Server', 'secret-internal/1.0');
    res.setHeader('ETag', '"v1"');
    res.setHeader('Retry-After', '5');
    res.end('ok');
  });
  const out = await guard.fetch({ method: 'HEAD', url: `http://api.allowed.test:${up.port}/` }, ctx());
  assert.deepEqual(Object.keys(out.headers).sort(), ['date', 'etag', 'retry-after']);
  assert.equal(out.body, '');
});

test('provider headers: case-variant duplicates are refused', async () => {
  await assert.rejects(
    guard.fetch({ method: 'GET', url: 'http://api.allowed.test:1/', headers: { 'X-A': '1', 'x-a': '2' } }, ctx()),
    isGate('egress_denied', { reason: 'header_duplicate' }),
  );
});

test('upstream refusing the connection is action_execution_failed (upstream_unreachable)', async () => {
  // Port 1 on loopback: nothing listens there.
  await assert.rejects(
    guard.fetch({ method: 'GET', url: 'http://api.allowed.test:1/' }, ctx()),
    isGate('action_execution_failed', { reason: 'upstream_unreachable' }),
  );
});

test('unsafe ranges: metadata stays refused inside an allowed link-local range', async () => {
  const g = new EgressGuard({ resolver, unsafeAllow: ['169.254.0.0/16'] });
  await assert.rejects(
    g.fetch({ method: 'GET', url: 'http://169.254.169.254/latest/meta-data/' }, ctx({ profile: { ...PROFILE, allowed_domains: ['169.254.169.254'] } })),
    isGate('egress_address_denied', { category: 'metadata' }),
  );
});

const badRanges: Array<{ name: string; ranges: string[] }> = [
  { name: 'the whole IPv4 internet', ranges: ['0.0.0.0/0'] },
  { name: 'a public /24', ranges: ['8.8.8.0/24'] },
  { name: 'a block wider than loopback', ranges: ['126.0.0.0/7'] },
  { name: 'host bits set', ranges: ['127.0.0.1/8'] },
  { name: 'not a CIDR', ranges: ['localhost'] },
  { name: 'missing prefix', ranges: ['127.0.0.1'] },
  { name: 'the whole IPv6 internet', ranges: ['::/0'] },
  { name: 'v4-mapped spelling of loopback', ranges: ['::ffff:127.0.0.0/104'] },
  { name: 'multicast', ranges: ['224.0.0.0/4'] },
  { name: 'prefix too long', ranges: ['127.0.0.0/33'] },
];
for (const c of badRanges) {
  test(`unsafeAllow refused at construction: ${c.name}`, () => {
    assert.throws(() => new EgressGuard({ unsafeAllow: c.ranges }), TypeError);
  });
}

test('options: maxRedirects outside 0..3 is a TypeError; limits must be positive integers', async () => {
  assert.throws(() => new EgressGuard({ maxRedirects: 4 }), TypeError);
  assert.throws(() => new EgressGuard({ maxRedirects: -1 }), TypeError);
  await assert.rejects(guard.fetch({ method: 'GET', url: 'https://api.allowed.test/' }, ctx({ limits: { max_host_response_bytes: 0, timeout_ms: 10 } })), TypeError);
  await assert.rejects(guard.fetch({ method: 'GET', url: 'https://api.allowed.test/' }, ctx({ limits: { max_host_response_bytes: 10, timeout_ms: Number.NaN } })), TypeError);
  await assert.rejects(guard.fetch({ method: 'GET', url: 'https://api.allowed.test/' }, ctx({ limits: { max_host_response_bytes: 10, timeout_ms: 2 ** 31 } })), TypeError);
});

// TLS through an unsafe range with a test CA: SNI and certificate checks use the host name while the
// socket goes to the pinned address.
const openssl = spawnSync('openssl', ['version']).status === 0;
function selfSigned(cn: string): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'egress-tls-'));
  try {
    const r = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${cn}`,
        '-addext', `subjectAltName=DNS:${cn}`, '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    return { key: readFileSync(join(dir, 'k.pem'), 'utf8'), cert: readFileSync(join(dir, 'c.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('TLS: pinned address, SNI and certificate name are the host name', { skip: openssl ? false : 'openssl not installed' }, async (t) => {
  const good = selfSigned('tls.allowed.test');
  const up = await startUpstream(t, (_req, res) => res.end('secure'), good);
  const tlsGuard = new EgressGuard({ resolver, unsafeAllow: ['127.0.0.0/8'], unsafeTlsCa: good.cert });
  const profile = { ...PROFILE, allowed_domains: ['tls.allowed.test'] };
  const out = await tlsGuard.fetch({ method: 'GET', url: `https://tls.allowed.test:${up.port}/` }, ctx({ profile }));
  assert.equal(out.body, 'secure');
  assert.equal(up.hits[0]?.servername, 'tls.allowed.test');
  assert.equal(up.hits[0]?.headers.authorization, `Bearer ${TOKEN}`);
  // Without the test CA the self-signed certificate is refused.
  await assert.rejects(
    guard.fetch({ method: 'GET', url: `https://tls.allowed.test:${up.port}/` }, ctx({ profile })),
    isGate('action_execution_failed', { reason: 'upstream_tls_failed' }),
  );
});

test('TLS: a certificate for another name is refused even at the vetted address', { skip: openssl ? false : 'openssl not installed' }, async (t) => {
  const wrong = selfSigned('elsewhere.test');
  const up = await startUpstream(t, (_req, res) => res.end('should not be read'), wrong);
  const tlsGuard = new EgressGuard({ resolver, unsafeAllow: ['127.0.0.0/8'], unsafeTlsCa: wrong.cert });
  await assert.rejects(
    tlsGuard.fetch({ method: 'GET', url: `https://tls.allowed.test:${up.port}/` }, ctx({ profile: { ...PROFILE, allowed_domains: ['tls.allowed.test'] } })),
    isGate('action_execution_failed', { reason: 'upstream_tls_failed' }),
  );
  assert.equal(up.hits.length, 0);
});
