import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GateError } from '../../src/errors.ts';
import {
  assertRequest,
  assertResponse,
  compileManifest,
  createSchemaCompiler,
  loadRegistry,
  ManifestError,
  type ActionManifest,
} from '../../src/registry/index.ts';

const MANIFEST_DIR = fileURLToPath(new URL('../../manifests/', import.meta.url));
const files = readdirSync(MANIFEST_DIR).filter((f) => f.endsWith('.json')).sort();
const load = (f: string) => JSON.parse(readFileSync(join(MANIFEST_DIR, f), 'utf8')) as ActionManifest;

describe('every manifests/*.json', () => {
  test('there are manifests to check', () => assert.ok(files.length >= 6));
  for (const f of files) {
    test(`${f} validates against the schema and the load-time rules`, () => {
      const c = compileManifest(load(f), f, f.replace(/\.json$/, ''), createSchemaCompiler());
      assert.equal(c.manifest.action_id, f.replace(/\.json$/, ''));
      assert.ok(Object.isFrozen(c.manifest) && Object.isFrozen(c.manifest.resource_limits));
    });
  }
  test('the whole directory loads as one registry', () => {
    const r = loadRegistry(MANIFEST_DIR);
    assert.deepEqual(r.ids(), files.map((f) => f.replace(/\.json$/, '')));
  });
  test('the shipped actions span every risk level', () => {
    const levels = new Set(files.map((f) => load(f).risk_level));
    assert.deepEqual([...levels].sort(), ['critical', 'high', 'low', 'medium']);
  });
});

const base = (): ActionManifest => structuredClone(load('slack_post.json'));

type Mutation = { name: string; mutate: (m: ActionManifest & Record<string, unknown>) => void; file?: string };

const bad: Mutation[] = [
  { name: 'unknown top-level property', mutate: (m) => (m.extra = 1) },
  { name: 'unknown nested property', mutate: (m) => ((m.resource_limits as unknown as Record<string, unknown>).cpu = 1) },
  { name: 'action_id not snake_case', mutate: (m) => (m.action_id = 'Slack-Post') },
  { name: 'action_id differs from the file name', mutate: (m) => (m.action_id = 'slack_post2') },
  { name: 'version not semver', mutate: (m) => (m.version = '1.0') },
  { name: 'digest not sha256:<64 hex>', mutate: (m) => (m.provider_module_digest = 'sha256:ABC') },
  { name: 'digest upper-case hex', mutate: (m) => (m.provider_module_digest = `sha256:${'A'.repeat(64)}`) },
  { name: 'attack: module path traversal', mutate: (m) => (m.provider.module = 'providers/slack_post/../../etc/x.wasm') },
  { name: 'module outside its source folder', mutate: (m) => (m.provider.module = 'providers/echo/echo.wasm') },
  { name: 'source outside providers/', mutate: (m) => (m.provider.source = 'src/x') },
  { name: 'high risk without a verifier', mutate: (m) => (m.verifier = { kind: 'none' }) },
  { name: 'high risk without a response schema', mutate: (m) => delete m.response_schema },
  { name: 'request schema not an object schema', mutate: (m) => (m.request_schema = { type: 'array' } as never) },
  { name: 'request schema with an unknown keyword (strict)', mutate: (m) => (m.request_schema = { type: 'object', foo: 1 } as never) },
  { name: 'request schema with an unknown format', mutate: (m) => (m.request_schema = { type: 'object', properties: { a: { type: 'string', format: 'nope' } } } as never) },
  { name: 'fuel below the minimum', mutate: (m) => (m.resource_limits.fuel = 10) },
  { name: 'memory above 256 MB', mutate: (m) => (m.resource_limits.memory_mb = 1024) },
  { name: 'max_io_calls above 32', mutate: (m) => (m.resource_limits.max_io_calls = 1000) },
  { name: 'I/O without allowed domains', mutate: (m) => (m.egress.allowed_domains = []) },
  { name: 'I/O without max_host_response_bytes', mutate: (m) => (m.resource_limits.max_host_response_bytes = 0) },
  { name: 'http_status verifier without I/O', mutate: (m) => ((m.resource_limits.max_io_calls = 0), (m.secrets = [])) },
  { name: 'secrets on an action without I/O', mutate: (m) => ((m.resource_limits.max_io_calls = 0), (m.verifier = { kind: 'none' }), (m.risk_level = 'low')) },
  { name: 'attack: write method with only a read sink', mutate: (m) => (m.declared_side_effects = ['http_read']) },
  { name: 'unknown side effect', mutate: (m) => (m.declared_side_effects = ['shell' as never]) },
  { name: 'unknown HTTP method', mutate: (m) => (m.egress.allowed_methods = ['CONNECT']) },
  { name: 'domain wildcard alone', mutate: (m) => (m.egress.allowed_domains = ['*']) },
  { name: 'domain with scheme', mutate: (m) => (m.egress.allowed_domains = ['https://slack.com']) },
  { name: 'domain upper-case', mutate: (m) => (m.egress.allowed_domains = ['Slack.com']) },
  { name: 'attack: wildcard over an IP literal', mutate: (m) => (m.egress.allowed_domains = ['*.169.254.169.254']) },
  { name: 'attack: IPv4 literal with a leading zero (octal ambiguity)', mutate: (m) => (m.egress.allowed_domains = ['010.0.0.1']) },
  { name: 'attack: IPv6 literal', mutate: (m) => (m.egress.allowed_domains = ['[::1]']) },
  { name: 'domain with port', mutate: (m) => (m.egress.allowed_domains = ['slack.com:443']) },
  { name: 'port out of range', mutate: (m) => (m.egress.allowed_ports = [70000]) },
  { name: 'secret format without {value}', mutate: (m) => ((m.secrets[0]!.inject as { format: string }).format = 'Bearer') },
  { name: 'attack: secret format with CRLF', mutate: (m) => ((m.secrets[0]!.inject as { format: string }).format = 'Bearer {value}\r\nX-Evil: 1') },
  { name: 'secret format with {value} twice', mutate: (m) => ((m.secrets[0]!.inject as { format: string }).format = '{value}{value}') },
  { name: 'attack: secret injected into Host', mutate: (m) => ((m.secrets[0]!.inject as { header: string }).header = 'Host') },
  { name: 'secret injected into a proxy header', mutate: (m) => ((m.secrets[0]!.inject as { header: string }).header = 'Proxy-Authorization') },
  { name: 'secret declared twice', mutate: (m) => m.secrets.push(structuredClone(m.secrets[0]!)) },
  { name: 'two secrets into one header', mutate: (m) => m.secrets.push({ ...structuredClone(m.secrets[0]!), name: 'other' }) },
  { name: 'basic username with colon', mutate: (m) => (m.secrets[0]!.inject = { type: 'basic', username: 'a:b' }) },
  { name: 'unknown injection type', mutate: (m) => (m.secrets[0]!.inject = { type: 'query', param: 'token' } as never) },
  { name: 'risk level unknown', mutate: (m) => (m.risk_level = 'extreme' as never) },
  { name: 'verifier without expected statuses', mutate: (m) => (m.verifier = { kind: 'http_status', expected_status: [], required_fields: [] }) },
  { name: 'missing required_scopes', mutate: (m) => delete (m as Partial<ActionManifest>).required_scopes },
];

describe('bad manifests are refused with the file and a reason', () => {
  const ajv = createSchemaCompiler();
  test('the base manifest is valid (so each case tests one mutation)', () => {
    compileManifest(base(), 'slack_post.json', 'slack_post', ajv);
  });
  for (const c of bad) {
    test(c.name, () => {
      const m = base() as ActionManifest & Record<string, unknown>;
      c.mutate(m);
      assert.throws(
        () => compileManifest(m, 'manifests/slack_post.json', 'slack_post', createSchemaCompiler()),
        (e: unknown) => e instanceof ManifestError && e.file === 'manifests/slack_post.json' && e.reasons.length > 0,
      );
    });
  }
});

describe('loadRegistry', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-registry-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const fresh = (name: string): string => {
    const d = join(dir, name, 'manifests');
    mkdirSync(d, { recursive: true });
    return d;
  };

  test('one bad manifest fails the whole load, naming its file', () => {
    const d = fresh('one-bad');
    writeFileSync(join(d, 'echo.json'), JSON.stringify(load('echo.json')));
    writeFileSync(join(d, 'slack_post.json'), JSON.stringify({ ...load('slack_post.json'), verifier: { kind: 'none' } }));
    assert.throws(
      () => loadRegistry(d),
      (e: unknown) => e instanceof ManifestError && e.file === join(d, 'slack_post.json'),
    );
  });

  test('invalid JSON fails the load', () => {
    const d = fresh('bad-json');
    writeFileSync(join(d, 'echo.json'), '{"action_id": ');
    assert.throws(() => loadRegistry(d), ManifestError);
  });

  test('an empty directory fails the load', () => {
    assert.throws(() => loadRegistry(fresh('empty')), ManifestError);
  });

  test('module paths resolve under the project root', () => {
    const d = fresh('root');
    writeFileSync(join(d, 'echo.json'), JSON.stringify(load('echo.json')));
    const r = loadRegistry(d);
    assert.equal(r.require('echo').moduleFile, join(dir, 'root', 'providers', 'echo', 'echo.wasm'));
  });

  test('the registry and its manifests are immutable', () => {
    const r = loadRegistry(MANIFEST_DIR);
    const a = r.require('echo');
    assert.throws(() => {
      (a.manifest as { risk_level: string }).risk_level = 'critical';
    }, TypeError);
    assert.throws(() => {
      (a.manifest.egress.allowed_domains as string[]).push('evil.example');
    }, TypeError);
    assert.throws(() => {
      (r as unknown as Record<string, unknown>).extra = 1;
    }, TypeError);
    assert.equal(r.require('echo').manifest.risk_level, 'low');
  });

  test('require() of an unknown action is action_not_found (404)', () => {
    const r = loadRegistry(MANIFEST_DIR);
    assert.throws(
      () => r.require('nope'),
      (e: unknown) => e instanceof GateError && e.code === 'action_not_found' && e.status === 404,
    );
  });
});

describe('request and response checks', () => {
  const r = loadRegistry(MANIFEST_DIR);
  const requests: { name: string; action: string; body: unknown; ok: boolean }[] = [
    { name: 'echo ok', action: 'echo', body: { message: 'hi' }, ok: true },
    { name: 'echo missing message', action: 'echo', body: {}, ok: false },
    { name: 'echo extra field', action: 'echo', body: { message: 'hi', x: 1 }, ok: false },
    { name: 'http_fetch plain http refused', action: 'http_fetch', body: { url: 'http://example.com/' }, ok: false },
    { name: 'attack: github owner dot-dot', action: 'github_create_issue', body: { owner: '..', repo: 'r', title: 't' }, ok: false },
    { name: 'attack: github repo with slash', action: 'github_create_issue', body: { owner: 'o', repo: 'r/../../x', title: 't' }, ok: false },
    { name: 'github ok', action: 'github_create_issue', body: { owner: 'o', repo: 'r.js', title: 't' }, ok: true },
    { name: 'attack: slack header-injection in channel', action: 'slack_post', body: { channel: 'C1\r\nX: y', text: 't' }, ok: false },
  ];
  for (const c of requests) {
    test(`assertRequest: ${c.name}`, () => {
      const action = r.require(c.action);
      if (c.ok) assertRequest(action, c.body);
      else {
        assert.throws(
          () => assertRequest(action, c.body),
          (e: unknown) => e instanceof GateError && e.code === 'schema_violation' && e.status === 422 && Array.isArray(e.extra?.violations),
        );
      }
    });
  }
  test('assertResponse: a provider output that breaks the response schema is a 502', () => {
    assert.throws(
      () => assertResponse(r.require('slack_post'), { status: 200, ok: 'yes' }),
      (e: unknown) => e instanceof GateError && e.code === 'response_schema_violation' && e.status === 502,
    );
    assertResponse(r.require('slack_post'), { status: 200, ok: true, ts: '1.2' });
  });
});
