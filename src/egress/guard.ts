// The egress guard: the only code that performs a provider's HTTP. Every hop is vetted from scratch
// (URL, method, allowlist, one DNS resolution, every address public or inside an unsafe local-test
// range) and the socket is pinned to the vetted address; credentials go only to the manifest's own
// domains over https; responses are capped, header-filtered and scrubbed of every secret form.
import * as dns from 'node:dns';
import * as http from 'node:http';
import * as https from 'node:https';
import type { LookupFunction } from 'node:net';
import { GateError, type GateErrorCode } from '../errors.ts';
import type { AuditEventInput, EgressProfile, ProviderHttpRequest, ProviderHttpResponse } from '../contracts.ts';
import { classifyAddress, parseAddress, UnsafeRanges, type Cidr } from './address.ts';
import { filterResponseHeaders, prepareSecrets, sanitizeProviderHeaders, type SecretMaterial } from './inject.ts';
import { SecretScrubber } from './scrub.ts';
import {
  addressDenied,
  compileDomainPatterns,
  hasForbiddenUrlChars,
  hostMatches,
  precheck,
  type DomainPattern,
  type PrecheckResult,
} from './url.ts';

export { precheck } from './url.ts';
export type { PrecheckResult, PrecheckOptions } from './url.ts';

/** One resolved address, as `dns.promises.lookup(host, { all: true })` returns it. */
export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a host name once. Injected in tests; the default is the OS resolver. */
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/** The OS resolver (`dns.promises.lookup`, all addresses, resolver order). */
export const systemResolver: Resolver = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

export interface EgressLimits {
  /** Bytes of response body kept; the rest is discarded and `truncated` set. */
  max_host_response_bytes: number;
  /** Wall-clock budget for the whole fetch, redirects and DNS included. */
  timeout_ms: number;
}

/** A secret-free note for the ledger (the caller adds trace id, action, principal). */
export interface EgressAuditNote extends AuditEventInput {
  type: 'egress_unsafe_range' | 'egress_headers_stripped';
  decision: 'info';
  detail: Record<string, unknown>;
}

export interface EgressFetchContext {
  /** The action's manifest egress profile; credentials go only to its own domains. */
  profile: EgressProfile;
  /** Learned domains and the approved plan's targets: reachable, but never sent credentials. */
  extraDomains?: readonly string[];
  /** Secret declarations and resolved values; absent when the action declares none. */
  secrets?: SecretMaterial;
  limits: EgressLimits;
  signal?: AbortSignal;
  /** Receives secret-free notes; awaited, and a failure aborts the fetch (fail closed). */
  audit?: (note: EgressAuditNote) => void | Promise<void>;
}

export interface EgressGuardOptions {
  /** Host name resolver (default: the OS resolver). Called exactly once per hop. */
  resolver?: Resolver;
  /**
   * UNSAFE, local testing only: CIDR ranges inside loopback/private/link-local/CGNAT/ULA/documentation
   * blocks that may be reached, over plain http and on any port. Metadata addresses stay refused.
   * Every use is reported through the audit callback.
   */
  unsafeAllow?: readonly string[];
  /** Redirect hops followed (0..3, default 3). */
  maxRedirects?: number;
  /** Trust anchors for https inside the unsafe ranges only (public destinations use the system roots). */
  unsafeTlsCa?: string | Buffer | ReadonlyArray<string | Buffer>;
}

const MAX_REDIRECTS = 3;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const TIMEOUT = Symbol('egress timeout');
const ABORTED = Symbol('egress aborted');

interface VettedHop {
  target: PrecheckResult;
  address: string;
  family: 4 | 6;
  /** The unsafe range used, when the destination is inside one. */
  unsafeRange: Cidr | undefined;
  /** Credentials may be placed on this hop. */
  injectAllowed: boolean;
}

interface UpstreamResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  message: http.IncomingMessage;
}

function failed(reason: string, cause?: unknown): GateError {
  return new GateError('action_execution_failed', `egress failed: ${reason}`, { extra: { reason }, cause });
}

function redirectDenied(reason: string, hop: number, more: Record<string, unknown> = {}): GateError {
  return new GateError('egress_redirect_denied', `egress refused: redirect ${reason}`, { extra: { reason, hop, ...more } });
}

function isTlsError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    typeof code === 'string' &&
    (code.startsWith('ERR_TLS') ||
      code.startsWith('ERR_SSL') ||
      code.startsWith('CERT_') ||
      code.startsWith('UNABLE_TO_') ||
      code.includes('SELF_SIGNED') ||
      code === 'HOSTNAME_MISMATCH')
  );
}

function checkLimits(limits: EgressLimits | undefined): EgressLimits {
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
  // setTimeout silently turns delays above 2^31-1 ms into 1 ms: refuse them instead.
  if (!limits || !ok(limits.max_host_response_bytes) || !ok(limits.timeout_ms) || limits.timeout_ms > 0x7fffffff) {
    throw new TypeError('limits.max_host_response_bytes and limits.timeout_ms must be positive integers (timeout_ms <= 2^31-1)');
  }
  return limits;
}

/** A `lookup` that answers only for the vetted host, with the vetted address: the socket cannot re-resolve. */
function pinnedLookup(host: string, address: string, family: 4 | 6): LookupFunction {
  return ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (hostname !== host) {
      callback(Object.assign(new Error('egress: unexpected lookup'), { code: 'EPINNED' }));
      return;
    }
    if (options?.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  }) as unknown as LookupFunction;
}

/** Performs providers' HTTP requests under the egress rules. One instance per gate; stateless per call. */
export class EgressGuard {
  readonly #resolver: Resolver;
  readonly #unsafe: UnsafeRanges | undefined;
  readonly #maxRedirects: number;
  readonly #unsafeCa: string | Buffer | Array<string | Buffer> | undefined;

  /** Throws TypeError for a bad option (malformed or public unsafe range, bad redirect count). */
  constructor(options: EgressGuardOptions = {}) {
    this.#resolver = options.resolver ?? systemResolver;
    if (typeof this.#resolver !== 'function') throw new TypeError('resolver must be a function');
    const unsafe = new UnsafeRanges(options.unsafeAllow ?? []);
    this.#unsafe = unsafe.size > 0 ? unsafe : undefined;
    const max = options.maxRedirects ?? MAX_REDIRECTS;
    if (!Number.isInteger(max) || max < 0 || max > MAX_REDIRECTS) throw new TypeError(`maxRedirects must be 0..${MAX_REDIRECTS}`);
    this.#maxRedirects = max;
    const ca = options.unsafeTlsCa;
    this.#unsafeCa = ca === undefined ? undefined : Array.isArray(ca) ? [...(ca as Array<string | Buffer>)] : (ca as string | Buffer);
  }

  /** The unsafe ranges in force (empty when none): shown at start-up with a loud warning. */
  get unsafeRanges(): readonly string[] {
    return this.#unsafe?.ranges.map((r) => r.text) ?? [];
  }

  /** {@link precheck} with this guard's unsafe ranges. */
  precheck(url: string, method: string, profile: EgressProfile, extraDomains: readonly string[] = []): PrecheckResult {
    return precheck(url, method, profile, extraDomains, { unsafeAllow: this.#unsafe });
  }

  /**
   * Performs one provider request: vets it, injects the declared credentials where allowed, follows
   * at most 3 re-vetted redirects, caps size and time, and returns a scrubbed response.
   * Refusals are GateErrors with an egress_* code (or secret_missing) and a fixed `reason`;
   * upstream failures and timeouts are `action_execution_failed`.
   */
  async fetch(req: ProviderHttpRequest, ctx: EgressFetchContext): Promise<ProviderHttpResponse> {
    const limits = checkLimits(ctx?.limits);
    if (!ctx.profile || typeof ctx.profile !== 'object') throw new TypeError('ctx.profile is required');
    if (!req || typeof req !== 'object') throw new GateError('invalid_input', 'provider request must be an object');
    if (req.body !== undefined && typeof req.body !== 'string') throw new GateError('invalid_input', 'provider body must be a string');
    // Secrets first: a missing required secret fails before any DNS or byte on the wire.
    const secrets = prepareSecrets(ctx.secrets);
    const provided = sanitizeProviderHeaders(req.headers, secrets.reserved);
    const scrubber = new SecretScrubber(secrets.values, secrets.literals);
    const manifestPatterns = compileDomainPatterns(ctx.profile.allowed_domains);
    const extraPatterns = compileDomainPatterns(ctx.extraDomains);

    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(TIMEOUT), limits.timeout_ms);
    const onAbort = (): void => controller.abort(ABORTED);
    if (ctx.signal?.aborted) controller.abort(ABORTED);
    else ctx.signal?.addEventListener('abort', onAbort, { once: true });
    const signal = controller.signal;

    try {
      if (provided.stripped.length > 0) {
        await this.#note(ctx, 'egress_headers_stripped', 'provider_headers_stripped', { headers: provided.stripped });
      }
      let url = req.url;
      let method = req.method;
      let body = req.body;
      let headers = provided.headers;
      for (let hop = 0; ; hop++) {
        const vetted = await this.#vetHop(url, method, ctx, manifestPatterns, extraPatterns, hop, signal);
        const outgoing: Record<string, string> = { ...headers, 'accept-encoding': 'identity' };
        if (vetted.injectAllowed) for (const inj of secrets.injections) outgoing[inj.header] = inj.value;
        if (body !== undefined) outgoing['content-length'] = String(Buffer.byteLength(body, 'utf8'));
        if (vetted.unsafeRange) {
          await this.#note(ctx, 'egress_unsafe_range', 'unsafe_local_test_range', {
            host: vetted.target.host,
            address: vetted.address,
            port: vetted.target.port,
            scheme: vetted.target.scheme,
            range: vetted.unsafeRange.text,
            hop,
            credentials_injected: vetted.injectAllowed && secrets.injections.length > 0,
          });
        }
        const res = await this.#send(vetted, outgoing, body, signal);
        const location = res.headers.location;
        if (REDIRECT_STATUSES.has(res.status) && typeof location === 'string' && location.length > 0) {
          res.message.destroy();
          if (hop >= this.#maxRedirects) throw redirectDenied('too_many_redirects', hop + 1);
          url = this.#resolveLocation(location, vetted.target.href, hop + 1);
          // 303 (and 301/302 after POST) become a body-less GET, as browsers and fetch do.
          if (res.status === 303 ? vetted.target.method !== 'HEAD' : (res.status === 301 || res.status === 302) && vetted.target.method === 'POST') {
            method = 'GET';
            body = undefined;
            headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !k.startsWith('content-')));
          } else {
            method = vetted.target.method;
          }
          continue;
        }
        const { text, truncated } = await this.#readBody(res.message, vetted.target.method, limits.max_host_response_bytes, signal);
        return {
          status: res.status,
          headers: scrubber.scrub(filterResponseHeaders(res.headers)),
          body: truncated ? scrubber.scrubTruncated(text) : scrubber.scrubString(text),
          truncated,
        };
      }
    } catch (err) {
      if (err instanceof GateError) throw err;
      if (signal.aborted) throw failed(signal.reason === TIMEOUT ? 'timeout' : 'aborted', err);
      if (err instanceof TypeError && !(err as { code?: unknown }).code) throw err;
      throw failed(isTlsError(err) ? 'upstream_tls_failed' : 'upstream_unreachable', err);
    } finally {
      clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onAbort);
    }
  }

  async #note(ctx: EgressFetchContext, type: EgressAuditNote['type'], reason: string, detail: Record<string, unknown>): Promise<void> {
    if (!ctx.audit) return;
    await ctx.audit({ type, decision: 'info', reason_code: reason, detail });
  }

  #resolveLocation(location: string, base: string, hop: number): string {
    // The raw header gets the same character rules as a provider URL before it is resolved.
    if (hasForbiddenUrlChars(location)) throw redirectDenied('url_malformed', hop);
    try {
      return new URL(location, base).href;
    } catch {
      throw redirectDenied('url_invalid', hop);
    }
  }

  /** Vets one hop from scratch: URL rules, allowlist, one DNS resolution, every address. */
  async #vetHop(
    url: string,
    method: string,
    ctx: EgressFetchContext,
    manifestPatterns: readonly DomainPattern[],
    extraPatterns: readonly DomainPattern[],
    hop: number,
    signal: AbortSignal,
  ): Promise<VettedHop> {
    try {
      const target = precheck(url, method, ctx.profile, [], { unsafeAllow: this.#unsafe });
      const inManifest = hostMatches(target.host, target.hostKind, manifestPatterns);
      if (!inManifest && !hostMatches(target.host, target.hostKind, extraPatterns)) {
        throw new GateError('egress_domain_denied', 'egress refused: domain_not_allowed', {
          extra: { reason: 'domain_not_allowed', host: target.host },
        });
      }
      const answers = target.hostKind === 'domain' ? await this.#resolve(target.host, signal) : [target.host];
      let unsafeRange: Cidr | undefined;
      let publicCount = 0;
      for (const address of answers) {
        const cls = classifyAddress(address);
        if (cls.public) {
          publicCount++;
          continue;
        }
        const range = this.#unsafe?.match(address);
        if (!range) throw addressDenied(cls.category === 'invalid' ? 'invalid' : cls.category, target.host);
        unsafeRange ??= range;
      }
      // A name is either all-public or all-unsafe-local; a mixed answer is refused outright.
      if (unsafeRange && publicCount > 0) {
        throw new GateError('egress_address_denied', 'egress refused: mixed_answer', {
          extra: { reason: 'mixed_answer', host: target.host },
        });
      }
      if (target.requiresUnsafeRange && !unsafeRange) {
        if (target.scheme === 'http') {
          throw new GateError('egress_scheme_denied', 'egress refused: scheme_not_allowed', {
            extra: { reason: 'scheme_not_allowed', scheme: 'http' },
          });
        }
        throw new GateError('egress_port_denied', 'egress refused: port_not_allowed', {
          extra: { reason: 'port_not_allowed', port: target.port },
        });
      }
      const first = answers[0] as string;
      const parsed = parseAddress(first);
      if (!parsed) throw addressDenied('invalid', target.host);
      // Credentials: only toward the manifest's own domains, only over https or inside an unsafe range.
      const injectAllowed = inManifest && (target.scheme === 'https' || unsafeRange !== undefined);
      return { target, address: first, family: parsed.family, unsafeRange, injectAllowed };
    } catch (err) {
      if (hop > 0 && err instanceof GateError && err.code.startsWith('egress_')) {
        const reason = typeof err.extra?.reason === 'string' ? err.extra.reason : 'denied';
        throw redirectDenied(reason, hop, { denied: err.code as GateErrorCode });
      }
      throw err;
    }
  }

  /** Exactly one resolver call per hop; the answer must be a non-empty list of IP addresses. */
  async #resolve(host: string, signal: AbortSignal): Promise<string[]> {
    let answers: readonly ResolvedAddress[];
    try {
      answers = await raceAbort(this.#resolver(host), signal);
    } catch (err) {
      if (signal.aborted) throw err;
      throw new GateError('egress_denied', 'egress refused: dns_failed', { extra: { reason: 'dns_failed', host }, cause: err });
    }
    if (!Array.isArray(answers) || answers.length === 0) {
      throw new GateError('egress_denied', 'egress refused: dns_no_address', { extra: { reason: 'dns_no_address', host } });
    }
    return answers.map((a) => (a && typeof a.address === 'string' ? a.address : ''));
  }

  #send(hop: VettedHop, headers: Record<string, string>, body: string | undefined, signal: AbortSignal): Promise<UpstreamResponse> {
    const { target } = hop;
    const options: https.RequestOptions = {
      method: target.method,
      hostname: target.host,
      port: target.port,
      path: target.path,
      headers,
      agent: false,
      signal,
      lookup: pinnedLookup(target.host, hop.address, hop.family),
      insecureHTTPParser: false,
    };
    if (target.scheme === 'https') {
      options.minVersion = 'TLSv1.2';
      options.rejectUnauthorized = true;
      if (target.hostKind === 'domain') options.servername = target.host;
      if (hop.unsafeRange && this.#unsafeCa !== undefined) options.ca = this.#unsafeCa;
    }
    const mod = target.scheme === 'https' ? https : http;
    return new Promise<UpstreamResponse>((resolve, reject) => {
      let request: http.ClientRequest;
      try {
        request = mod.request(options, (message) => {
          resolve({ status: message.statusCode ?? 0, headers: message.headers, message });
        });
      } catch (err) {
        reject(err);
        return;
      }
      request.on('error', reject);
      request.end(body === undefined ? undefined : Buffer.from(body, 'utf8'));
    });
  }

  /** Reads at most `max` bytes; more marks the body truncated and closes the connection. */
  async #readBody(message: http.IncomingMessage, method: string, max: number, signal: AbortSignal): Promise<{ text: string; truncated: boolean }> {
    const chunks: Buffer[] = [];
    let total = 0;
    let truncated = false;
    const onAbort = (): void => {
      message.destroy(new Error('egress aborted'));
    };
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (method !== 'HEAD') {
        for await (const chunk of message as AsyncIterable<Buffer>) {
          if (total + chunk.length > max) {
            chunks.push(chunk.subarray(0, max - total));
            total = max;
            truncated = true;
            break;
          }
          chunks.push(chunk);
          total += chunk.length;
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      message.destroy();
    }
    if (signal.aborted) throw signal.reason === TIMEOUT ? failed('timeout') : failed('aborted');
    // `stream: true` holds back a multi-byte sequence cut by the cap instead of emitting U+FFFD.
    const text = new TextDecoder('utf-8').decode(Buffer.concat(chunks, total), { stream: truncated });
    return { text, truncated };
  }
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
