import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeResponse, parseStepAnswer, ProtocolViolation } from '../../src/sandbox/step-protocol.ts';

const good: { name: string; text: string; want: unknown }[] = [
  { name: 'output', text: '{"output":{"a":1}}', want: { kind: 'output', output: { a: 1 } } },
  { name: 'output null', text: '{"output":null}', want: { kind: 'output', output: null } },
  {
    name: 'http with headers and body',
    text: '{"http":{"method":"POST","url":"https://x.example.com/","headers":{"X-A":"b"},"body":"{}"}}',
    want: { kind: 'http', request: { method: 'POST', url: 'https://x.example.com/', headers: { 'X-A': 'b' }, body: '{}' } },
  },
  { name: 'error with code and message', text: '{"error":{"code":"bad","message":"m"}}', want: { kind: 'error', code: 'bad', message: 'm' } },
  { name: 'error without code', text: '{"error":{}}', want: { kind: 'error', code: 'provider_error', message: '' } },
  { name: 'attack: control characters stripped from error text', text: '{"error":{"code":"a\\nb","message":"x\\u0000y\\u2028z"}}', want: { kind: 'error', code: 'ab', message: 'xyz' } },
];
for (const c of good) test(`parseStepAnswer: ${c.name}`, () => assert.deepEqual(parseStepAnswer(c.text), c.want));

const bad: { name: string; text: string; reason: string }[] = [
  { name: 'empty', text: '', reason: 'answer_not_json' },
  { name: 'array', text: '[]', reason: 'answer_not_object' },
  { name: 'no kind', text: '{}', reason: 'answer_shape' },
  { name: 'two kinds', text: '{"output":1,"error":{}}', reason: 'answer_shape' },
  { name: 'unknown kind', text: '{"exec":"rm -rf /"}', reason: 'answer_shape' },
  { name: 'error not object', text: '{"error":"x"}', reason: 'error_shape' },
  { name: 'http not object', text: '{"http":"GET /"}', reason: 'http_shape' },
  { name: 'attack: http extra field (e.g. a socket hint)', text: '{"http":{"method":"GET","url":"https://a.b/","connect":"127.0.0.1"}}', reason: 'http_shape' },
  { name: 'lowercase method', text: '{"http":{"method":"get","url":"https://a.b/"}}', reason: 'http_method' },
  { name: 'attack: method with spaces', text: '{"http":{"method":"GET / HTTP/1.1\\r\\nX","url":"https://a.b/"}}', reason: 'http_method' },
  { name: 'missing url', text: '{"http":{"method":"GET"}}', reason: 'http_url' },
  { name: 'attack: CRLF in header value (splitting)', text: '{"http":{"method":"GET","url":"https://a.b/","headers":{"X":"a\\r\\nHost: evil"}}}', reason: 'http_headers' },
  { name: 'attack: bad header name', text: '{"http":{"method":"GET","url":"https://a.b/","headers":{"X Y":"a"}}}', reason: 'http_headers' },
  { name: 'attack: __proto__ header name', text: '{"http":{"method":"GET","url":"https://a.b/","headers":{"__proto__":"x"}}}', reason: 'http_headers' },
  { name: 'header value not string', text: '{"http":{"method":"GET","url":"https://a.b/","headers":{"X":1}}}', reason: 'http_headers' },
  { name: 'body not string', text: '{"http":{"method":"POST","url":"https://a.b/","body":{}}}', reason: 'http_body' },
];
for (const c of bad) {
  test(`parseStepAnswer refuses: ${c.name}`, () => {
    assert.throws(
      () => parseStepAnswer(c.text),
      (e: unknown) => e instanceof ProtocolViolation && e.reason === c.reason,
    );
  });
}

test('normalizeResponse cuts at a UTF-8 boundary and flags truncation', () => {
  const r = normalizeResponse({ status: 200, headers: {}, body: 'ab€', truncated: false }, 4);
  assert.deepEqual(r, { status: 200, headers: {}, body: 'ab', truncated: true });
  const same = normalizeResponse({ status: 200, headers: { a: 'b' }, body: 'ab€', truncated: false }, 5);
  assert.deepEqual(same, { status: 200, headers: { a: 'b' }, body: 'ab€', truncated: false });
});

test('normalizeResponse refuses malformed shapes', () => {
  for (const r of [null, {}, { status: 99, headers: {}, body: '', truncated: false }, { status: 200, headers: { a: 1 }, body: '', truncated: false }, { status: 200, headers: {}, body: 1, truncated: false }, { status: 200, headers: {}, body: '' }]) {
    assert.equal(normalizeResponse(r, 10), undefined, JSON.stringify(r));
  }
});
