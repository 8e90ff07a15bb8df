// Every shipped provider, run through the real sandbox with a fake egress guard: the request it
// asks for, and its output checked against the manifest's response_schema (as the pipeline does).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ProviderHttpRequest, ProviderHttpResponse } from '../../src/contracts.ts';
import { GateError } from '../../src/errors.ts';
import { assertRequest, assertResponse, loadRegistry, type Registry } from '../../src/registry/index.ts';
import { executionFailure, Sandbox } from '../../src/sandbox/index.ts';
import { recordingIo, REPO } from './helpers.ts';

interface Case {
  name: string;
  action: string;
  input: Record<string, unknown>;
  response?: ProviderHttpResponse;
  expectRequest?: Partial<ProviderHttpRequest> & { json?: unknown };
  expectOutput: unknown;
}

const json = (status: number, body: unknown): ProviderHttpResponse => ({
  status,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
  truncated: false,
});

const cases: Case[] = [
  { name: 'echo returns message and UTF-16 length', action: 'echo', input: { message: 'héllo 😀' }, expectOutput: { message: 'héllo 😀', length: 8 } },
  {
    name: 'http_fetch performs one GET and returns the response',
    action: 'http_fetch',
    input: { url: 'https://example.com/a?b=1', headers: { Accept: 'text/plain' } },
    response: { status: 200, headers: { 'content-type': 'text/plain' }, body: 'hello "world"\n', truncated: false },
    expectRequest: { method: 'GET', url: 'https://example.com/a?b=1', headers: { Accept: 'text/plain' } },
    expectOutput: { status: 200, headers: { 'content-type': 'text/plain' }, body: 'hello "world"\n', truncated: false },
  },
  {
    name: 'http_post sends the body with its content type',
    action: 'http_post',
    input: { url: 'https://httpbin.org/post', body: '{"a":1}' },
    response: json(201, { ok: true }),
    expectRequest: { method: 'POST', url: 'https://httpbin.org/post', headers: { 'Content-Type': 'application/json' }, body: '{"a":1}' },
    expectOutput: { status: 201, headers: { 'content-type': 'application/json' }, body: '{"ok":true}', truncated: false },
  },
  {
    name: 'webhook_notify posts {event, payload} and reports delivery',
    action: 'webhook_notify',
    input: { url: 'https://hooks.example.com/x', event: 'build.done', payload: { n: 1, s: 'é' } },
    response: { status: 204, headers: {}, body: '', truncated: false },
    expectRequest: { method: 'POST', url: 'https://hooks.example.com/x', json: { event: 'build.done', payload: { n: 1, s: 'é' } } },
    expectOutput: { status: 204, delivered: true },
  },
  {
    name: 'webhook_notify reports a refused delivery',
    action: 'webhook_notify',
    input: { url: 'https://hooks.example.com/x', event: 'e' },
    response: { status: 500, headers: {}, body: 'boom', truncated: false },
    expectOutput: { status: 500, delivered: false },
  },
  {
    name: 'slack_post posts to chat.postMessage and returns ts',
    action: 'slack_post',
    input: { channel: 'C123', text: 'deploy ✅', thread_ts: '1700000000.000100' },
    response: json(200, { ok: true, channel: 'C123', ts: '1700000001.000200', message: { text: 'deploy ✅' } }),
    expectRequest: {
      method: 'POST',
      url: 'https://slack.com/api/chat.postMessage',
      json: { channel: 'C123', text: 'deploy ✅', thread_ts: '1700000000.000100' },
    },
    expectOutput: { status: 200, ok: true, channel: 'C123', ts: '1700000001.000200' },
  },
  {
    name: 'slack_post surfaces a Slack error without ts',
    action: 'slack_post',
    input: { channel: 'C123', text: 'x' },
    response: json(200, { ok: false, error: 'channel_not_found' }),
    expectOutput: { status: 200, ok: false, error: 'channel_not_found' },
  },
  {
    name: 'slack_post: a non-JSON body is reported, not trusted',
    action: 'slack_post',
    input: { channel: 'C123', text: 'x' },
    response: { status: 502, headers: {}, body: '<html>', truncated: false },
    expectOutput: { status: 502, ok: false, error: 'unexpected_response' },
  },
  {
    name: 'github_create_issue encodes path segments and returns number and url',
    action: 'github_create_issue',
    input: { owner: 'octo-org', repo: 'my.repo', title: 'Bug', body: 'details', labels: ['bug'] },
    response: json(201, { id: 42, number: 7, html_url: 'https://github.com/octo-org/my.repo/issues/7', title: 'Bug' }),
    expectRequest: {
      method: 'POST',
      url: 'https://api.github.com/repos/octo-org/my.repo/issues',
      json: { title: 'Bug', body: 'details', labels: ['bug'] },
    },
    expectOutput: { status: 201, number: 7, html_url: 'https://github.com/octo-org/my.repo/issues/7', id: 42 },
  },
  {
    name: 'github_create_issue reports an API error message',
    action: 'github_create_issue',
    input: { owner: 'o', repo: 'r', title: 't' },
    response: json(404, { message: 'Not Found' }),
    expectOutput: { status: 404, message: 'Not Found' },
  },
];

describe('shipped providers', () => {
  let registry: Registry;
  const sb = new Sandbox();
  before(async () => {
    registry = loadRegistry(`${REPO}manifests`);
    await sb.registerAll(registry);
  });
  after(() => sb.close());

  for (const c of cases) {
    test(c.name, async () => {
      const action = registry.require(c.action);
      assertRequest(action, c.input);
      const { io, requests } = recordingIo(() => c.response ?? assert.fail('unexpected I/O'));
      const r = await sb.run(c.action, c.input, { io, digest: action.manifest.provider_module_digest });
      assert.deepEqual(r.output, c.expectOutput);
      assertResponse(action, r.output);
      assert.equal(r.runtime.io_calls, c.response ? 1 : 0);
      assert.ok(r.runtime.fuel_consumed > 0 && r.runtime.fuel_consumed <= action.manifest.resource_limits.fuel);
      if (c.expectRequest) {
        const req = requests[0] as ProviderHttpRequest;
        const { json: body, ...rest } = c.expectRequest;
        for (const [k, v] of Object.entries(rest)) assert.deepEqual(req[k as keyof ProviderHttpRequest], v, k);
        if (body !== undefined) assert.deepEqual(JSON.parse(req.body ?? ''), body);
        assert.ok(action.manifest.egress.allowed_methods.includes(req.method), 'method is allowed by the manifest');
        assert.ok(!Object.keys(req.headers ?? {}).some((h) => h.toLowerCase() === 'authorization'), 'providers never set credentials');
      }
    });
  }

  test('http_fetch handles a response of max_host_response_bytes within its fuel and memory limits', async () => {
    const action = registry.require('http_fetch');
    const size = action.manifest.resource_limits.max_host_response_bytes;
    const body = 'a"\\é\n'.repeat(Math.ceil(size / 6)).slice(0, size);
    const { io } = recordingIo(() => ({ status: 200, headers: {}, body, truncated: false }));
    const r = await sb.run('http_fetch', { url: 'https://example.com/' }, { io });
    const out = r.output as { body: string; truncated: boolean };
    assert.ok(Buffer.byteLength(out.body) <= size);
    assert.ok(out.body.length > size / 2);
    assertResponse(action, r.output);
    assert.ok(r.runtime.fuel_consumed < action.manifest.resource_limits.fuel / 2, `fuel ${r.runtime.fuel_consumed}`);
  });

  test('attack: a response body that is not valid JSON for slack_post cannot crash the gate', async () => {
    const { io } = recordingIo(() => ({ status: 200, headers: {}, body: '{"ok": tru', truncated: false }));
    const err = await sb.run('slack_post', { channel: 'C1', text: 'x' }, { io }).then(
      () => assert.fail('should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof GateError);
    assert.equal(executionFailure(err)?.failure_class, 'provider_error');
  });

  test('attack: deeply nested JSON in a response is refused by the provider parser', async () => {
    const { io } = recordingIo(() => ({ status: 200, headers: {}, body: '['.repeat(5000) + ']'.repeat(5000), truncated: false }));
    const err = await sb.run('github_create_issue', { owner: 'o', repo: 'r', title: 't' }, { io }).then(
      () => assert.fail('should fail'),
      (e: unknown) => e,
    );
    assert.equal(executionFailure(err)?.failure_class, 'provider_error');
  });
});
