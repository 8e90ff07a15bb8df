// Outgoing headers: the provider's headers are validated (token names, no CR/LF/NUL) and stripped of
// transport, method-override and every auth-like header; secrets are placed only into the positions
// their declarations name. A missing required secret fails before anything is sent.
import { Buffer } from 'node:buffer';
import { GateError } from '../errors.ts';
import type { SecretDeclaration } from '../contracts.ts';

/** Declarations plus the values resolved from the secrets store (never seen by the sandbox). */
export interface SecretMaterial {
  declarations: readonly SecretDeclaration[];
  values: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
}

/** One header to set on requests toward the manifest's own domains. */
export interface Injection {
  /** Lower-case header name. */
  header: string;
  value: string;
  secret: string;
}

export interface PreparedSecrets {
  injections: readonly Injection[];
  /** Lower-case header names that secrets occupy: always stripped from the provider's headers. */
  reserved: ReadonlySet<string>;
  /** Every resolved secret value (scrubbed in all encodings). */
  values: readonly string[];
  /** Every full injected value (`Bearer x`, `Basic …`, `user:x`), scrubbed too. */
  literals: readonly string[];
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Bytes Node accepts in a header value; CR, LF, NUL and other controls are refused. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const MAX_HEADERS = 100;
const MAX_HEADER_BYTES = 32 * 1024;

/** Set by the gate, never by the provider. */
const TRANSPORT_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
  'accept-encoding',
  'http2-settings',
  'forwarded',
  'via',
  'x-real-ip',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
]);

/** Header names a provider may never set: credentials, cookies, sessions, signatures, proxies. */
const AUTH_EXACT = new Set(['authorization', 'proxy-authorization', 'cookie', 'cookie2', 'x-api-key', 'api-key', 'apikey']);
const AUTH_LIKE = /auth|token|secret|passw|credential|cookie|session|api-?key|apikey|access-?key|private-?key|signature|bearer/;

/** True for a header the provider is not allowed to send (the gate strips it). */
export function isReservedHeader(lowerName: string): boolean {
  return (
    TRANSPORT_HEADERS.has(lowerName) ||
    lowerName.startsWith('proxy-') ||
    lowerName.startsWith('x-forwarded-') ||
    AUTH_EXACT.has(lowerName) ||
    AUTH_LIKE.test(lowerName)
  );
}

function headerDenied(reason: string, header?: string): GateError {
  return new GateError('egress_denied', `egress refused: ${reason}`, {
    extra: header === undefined ? { reason } : { reason, header: header.slice(0, 64) },
  });
}

function valueOf(values: SecretMaterial['values'], name: string): string | undefined {
  const v = values instanceof Map ? values.get(name) : Object.hasOwn(values, name) ? (values as Record<string, string>)[name] : undefined;
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function allValues(values: SecretMaterial['values']): string[] {
  const list = values instanceof Map ? [...values.values()] : Object.values(values);
  return list.filter((v): v is string => typeof v === 'string' && v.length > 0);
}

/**
 * Resolves the declared injections. Throws `secret_missing` for a required secret without a value,
 * `egress_denied` (`secret_injection_invalid`, `secret_injection_conflict`, `secret_value_invalid`)
 * for a bad declaration or a value that cannot be placed in a header. Never echoes a value.
 */
export function prepareSecrets(material: SecretMaterial | undefined): PreparedSecrets {
  if (!material) return { injections: [], reserved: new Set(), values: [], literals: [] };
  const injections: Injection[] = [];
  const reserved = new Set<string>();
  const literals: string[] = [];
  for (const decl of material.declarations) {
    const inject = decl.inject;
    const target = inject?.type === 'header' ? inject.header?.toLowerCase() : inject?.type === 'basic' ? 'authorization' : undefined;
    if (!target || !TOKEN.test(target) || TRANSPORT_HEADERS.has(target)) {
      throw new GateError('egress_denied', 'egress refused: secret_injection_invalid', {
        extra: { reason: 'secret_injection_invalid', secret: String(decl.name).slice(0, 64) },
      });
    }
    reserved.add(target);
  }
  for (const decl of material.declarations) {
    const value = valueOf(material.values, decl.name);
    if (value === undefined) {
      if (decl.required) throw new GateError('secret_missing', 'required secret missing', { extra: { secret: decl.name } });
      continue;
    }
    const invalid = (reason: string): GateError =>
      new GateError('egress_denied', `egress refused: ${reason}`, { extra: { reason, secret: decl.name } });
    let header: string;
    let headerValue: string;
    if (decl.inject.type === 'header') {
      const format = decl.inject.format;
      if (typeof format !== 'string' || format.split('{value}').length !== 2 || !HEADER_VALUE.test(format)) {
        throw invalid('secret_injection_invalid');
      }
      if (!HEADER_VALUE.test(value)) throw invalid('secret_value_invalid');
      header = decl.inject.header.toLowerCase();
      headerValue = format.split('{value}').join(value);
    } else {
      const user = decl.inject.username;
      if (typeof user !== 'string' || user.includes(':') || !HEADER_VALUE.test(user)) throw invalid('secret_injection_invalid');
      const pair = `${user}:${value}`;
      const encoded = Buffer.from(pair, 'utf8').toString('base64');
      header = 'authorization';
      headerValue = `Basic ${encoded}`;
      literals.push(pair, encoded);
    }
    if (headerValue.trim() !== headerValue || headerValue.length === 0) throw invalid('secret_value_invalid');
    if (injections.some((i) => i.header === header)) throw invalid('secret_injection_conflict');
    injections.push({ header, value: headerValue, secret: decl.name });
    literals.push(headerValue);
  }
  return { injections, reserved, values: allValues(material.values), literals };
}

/**
 * Validates the provider's headers and removes every reserved one (transport, proxy, forwarding,
 * method override, auth-like, and any header a secret declaration occupies). Returns lower-case names.
 */
export function sanitizeProviderHeaders(
  headers: Readonly<Record<string, string>> | undefined,
  reservedBySecrets: ReadonlySet<string>,
): { headers: Record<string, string>; stripped: string[] } {
  const out: Record<string, string> = {};
  const stripped: string[] = [];
  if (headers === undefined || headers === null) return { headers: out, stripped };
  if (typeof headers !== 'object' || Array.isArray(headers)) throw headerDenied('headers_invalid');
  const entries = Object.entries(headers);
  if (entries.length > MAX_HEADERS) throw headerDenied('headers_too_many');
  let bytes = 0;
  const seen = new Set<string>();
  for (const [name, value] of entries) {
    if (!TOKEN.test(name)) throw headerDenied('header_invalid');
    const lower = name.toLowerCase();
    if (typeof value !== 'string' || !HEADER_VALUE.test(value)) throw headerDenied('header_invalid', lower);
    if (seen.has(lower)) throw headerDenied('header_duplicate', lower);
    seen.add(lower);
    bytes += name.length + value.length + 4;
    if (bytes > MAX_HEADER_BYTES) throw headerDenied('headers_too_large');
    if (isReservedHeader(lower) || reservedBySecrets.has(lower)) {
      stripped.push(lower);
      continue;
    }
    out[lower] = value;
  }
  return { headers: out, stripped };
}

/** Response headers passed back to the provider; everything else (set-cookie, auth challenges, …) is dropped. */
const SAFE_RESPONSE_HEADERS = new Set([
  'content-type',
  'content-language',
  'content-disposition',
  'content-range',
  'accept-ranges',
  'etag',
  'last-modified',
  'cache-control',
  'expires',
  'age',
  'date',
  'retry-after',
  'link',
  'location',
  'x-request-id',
  'request-id',
  'ratelimit',
  'ratelimit-policy',
]);
const SAFE_RESPONSE_PREFIXES = ['x-ratelimit-', 'ratelimit-'];

/** Keeps only safe response headers, lower-case names, multiple values joined with `, `. */
export function filterResponseHeaders(raw: Readonly<Record<string, string | string[] | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    const lower = name.toLowerCase();
    if (value === undefined) continue;
    if (!SAFE_RESPONSE_HEADERS.has(lower) && !SAFE_RESPONSE_PREFIXES.some((p) => lower.startsWith(p))) continue;
    out[lower] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}
