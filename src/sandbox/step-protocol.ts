// The host side of the step protocol (docs/providers.md). The host calls `step` with
// {"input": <request>, "io": [<responses so far>]}; the provider answers with exactly one of
// {"http": ProviderHttpRequest}, {"output": <value>} or {"error": {"code", "message"}}.
// Everything a provider returns is untrusted: parsed strictly, bounded, and rejected when malformed.
import type { ProviderHttpRequest, ProviderHttpResponse } from '../contracts.ts';

export type StepAnswer =
  | { kind: 'http'; request: ProviderHttpRequest }
  | { kind: 'output'; output: unknown }
  | { kind: 'error'; code: string; message: string };

/** A provider answer that breaks the protocol; `reason` is a stable, short identifier. */
export class ProtocolViolation extends Error {
  readonly reason: string;
  constructor(reason: string, detail?: string) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'ProtocolViolation';
    this.reason = reason;
  }
}

const METHOD = /^[A-Z]{3,7}$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/;
// eslint-disable-next-line no-control-regex
const HEADER_VALUE_BAD = /[\u0000\r\n]/;
const MAX_URL = 8192;
const MAX_HEADERS = 64;
const MAX_HEADER_VALUE = 8192;
const MAX_ERROR_CODE = 64;
const MAX_ERROR_MESSAGE = 500;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function clean(s: string, max: number): string {
  const c = s.replace(CONTROL, '');
  return c.length > max ? c.slice(0, max) : c;
}

/** Parses one raw step answer. Throws ProtocolViolation when it is not exactly one known shape. */
export function parseStepAnswer(text: string): StepAnswer {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ProtocolViolation('answer_not_json');
  }
  if (!isPlainObject(doc)) throw new ProtocolViolation('answer_not_object');
  const keys = Object.keys(doc);
  if (keys.length !== 1) throw new ProtocolViolation('answer_shape', `expected exactly one of http, output, error; got ${keys.length} keys`);
  const key = keys[0];
  if (key === 'output') return { kind: 'output', output: doc.output };
  if (key === 'error') {
    const e = doc.error;
    if (!isPlainObject(e)) throw new ProtocolViolation('error_shape');
    const code = typeof e.code === 'string' && e.code.length > 0 ? clean(e.code, MAX_ERROR_CODE) : 'provider_error';
    const message = typeof e.message === 'string' ? clean(e.message, MAX_ERROR_MESSAGE) : '';
    return { kind: 'error', code, message };
  }
  if (key === 'http') return { kind: 'http', request: parseHttpRequest(doc.http) };
  throw new ProtocolViolation('answer_shape', 'unknown answer kind');
}

function parseHttpRequest(v: unknown): ProviderHttpRequest {
  if (!isPlainObject(v)) throw new ProtocolViolation('http_shape');
  for (const k of Object.keys(v)) {
    if (k !== 'method' && k !== 'url' && k !== 'headers' && k !== 'body') throw new ProtocolViolation('http_shape', `unknown field ${k.slice(0, 32)}`);
  }
  const { method, url, headers, body } = v;
  if (typeof method !== 'string' || !METHOD.test(method)) throw new ProtocolViolation('http_method');
  if (typeof url !== 'string' || url.length === 0 || url.length > MAX_URL) throw new ProtocolViolation('http_url');
  const req: ProviderHttpRequest = { method, url };
  if (headers !== undefined) {
    if (!isPlainObject(headers)) throw new ProtocolViolation('http_headers');
    const entries = Object.entries(headers);
    if (entries.length > MAX_HEADERS) throw new ProtocolViolation('http_headers', 'too many headers');
    const out: Record<string, string> = {};
    for (const [name, value] of entries) {
      // `__proto__` is a valid token but would be silently dropped by a plain-object assignment.
      if (!HEADER_NAME.test(name) || name === '__proto__') throw new ProtocolViolation('http_headers', 'bad header name');
      if (typeof value !== 'string' || value.length > MAX_HEADER_VALUE || HEADER_VALUE_BAD.test(value)) {
        throw new ProtocolViolation('http_headers', 'bad header value');
      }
      out[name] = value;
    }
    req.headers = out;
  }
  if (body !== undefined) {
    if (typeof body !== 'string') throw new ProtocolViolation('http_body');
    req.body = body;
  }
  return req;
}

/** Byte length at or below `max` that does not split a UTF-8 sequence. */
function utf8Boundary(buf: Buffer, max: number): number {
  let end = max;
  while (end > 0 && ((buf[end] as number) & 0xc0) === 0x80) end--;
  return end;
}

/**
 * Checks the io callback's response and enforces max_host_response_bytes on its body (cut at a
 * UTF-8 boundary and flagged `truncated`). Returns undefined when the shape is wrong.
 */
export function normalizeResponse(r: unknown, maxBodyBytes: number): ProviderHttpResponse | undefined {
  if (!isPlainObject(r)) return undefined;
  const { status, headers, body, truncated } = r;
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) return undefined;
  if (!isPlainObject(headers) || Object.values(headers).some((h) => typeof h !== 'string')) return undefined;
  if (typeof body !== 'string' || typeof truncated !== 'boolean') return undefined;
  const out: ProviderHttpResponse = { status, headers: { ...(headers as Record<string, string>) }, body, truncated };
  if (Buffer.byteLength(body, 'utf8') > maxBodyBytes) {
    const buf = Buffer.from(body, 'utf8');
    out.body = buf.subarray(0, utf8Boundary(buf, maxBodyBytes)).toString('utf8');
    out.truncated = true;
  }
  return out;
}
