// URL vetting without I/O: one WHATWG parse, then scheme, userinfo, port, method, metadata names,
// IP-literal class and the domain allowlist. `precheck` is pure (no DNS); the guard re-runs it for
// every hop and then vets the resolved addresses. Every refusal is a GateError with a fixed reason.
import { GateError, type GateErrorCode } from '../errors.ts';
import type { EgressProfile } from '../contracts.ts';
import { classifyAddress, isMetadataHostname, parseIPv4, UnsafeRanges, type AddressCategory } from './address.ts';

export type HostKind = 'domain' | 'ipv4' | 'ipv6';

/** A parsed allowlist entry. */
export interface DomainPattern {
  /** `exact` host; `.suffix` = apex and every subdomain; `*.suffix` = strict subdomains only. */
  kind: 'exact' | 'apex_and_subdomains' | 'strict_subdomains';
  /** Normalized host (lowercase ASCII, no trailing dot, IPv6 without brackets). */
  host: string;
  hostKind: HostKind;
}

/** A vetted target URL. */
export interface EgressTarget {
  /** Normalized URL, fragment removed. */
  href: string;
  scheme: 'https' | 'http';
  /** Lowercase ASCII (punycode), no trailing dot; IPv6 without brackets. */
  host: string;
  hostKind: HostKind;
  port: number;
  /** Path and query as sent on the request line. */
  path: string;
}

export interface PrecheckOptions {
  /** Unsafe local-test CIDR ranges (the guard passes its own). */
  unsafeAllow?: readonly string[] | UnsafeRanges;
}

/** Result of the pure pre-check the pipeline runs before policy. */
export interface PrecheckResult extends EgressTarget {
  /** Upper-case method. */
  method: string;
  /** True when the host is in the allowlist (manifest ∪ extra); false makes it an "unresolved domain". */
  resolved: boolean;
  /** Which list matched, if any (the manifest's own list wins). */
  matched: 'manifest' | 'extra' | null;
  /** The target is plain http or off the allowed ports, so it is only reachable inside an unsafe range. */
  requiresUnsafeRange: boolean;
  /** IP-literal host inside an unsafe local-test range. */
  unsafeLiteral: boolean;
}

const MAX_URL_LENGTH = 8192;
const DEFAULT_PORTS: readonly number[] = [443];
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);
// Controls, whitespace, backslash (parser-differential tricks), and Unicode line/paragraph separators.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const RAW_FORBIDDEN = /[\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f\u3000\ufeff\\]/;
const DOMAIN_SYNTAX = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** True when a raw URL (or Location header) holds a character the gate never accepts in one. */
export function hasForbiddenUrlChars(raw: string): boolean {
  return RAW_FORBIDDEN.test(raw);
}

function deny(code: GateErrorCode, reason: string, more?: Record<string, unknown>): GateError {
  return new GateError(code, `egress refused: ${reason}`, { extra: { reason, ...more } });
}

function hostKindOf(hostname: string): HostKind {
  if (hostname.startsWith('[')) return 'ipv6';
  return parseIPv4(hostname) !== undefined ? 'ipv4' : 'domain';
}

/** Normalizes a WHATWG hostname: strips IPv6 brackets and one trailing dot; validates domain syntax. */
function normalizeHost(hostname: string): { host: string; hostKind: HostKind } | undefined {
  const kind = hostKindOf(hostname);
  if (kind === 'ipv6') return { host: hostname.slice(1, -1), hostKind: 'ipv6' };
  if (kind === 'ipv4') return { host: hostname, hostKind: 'ipv4' };
  const host = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
  if (host.length === 0 || host.length > 253 || !DOMAIN_SYNTAX.test(host)) return undefined;
  // A last label that is all digits would be an IPv4 form; WHATWG refuses those, keep it that way.
  if (/^[0-9]+$/.test(host.slice(host.lastIndexOf('.') + 1))) return undefined;
  return { host, hostKind: 'domain' };
}

/**
 * Parses one allowlist entry (`api.example.com`, `.example.com`, `*.example.com`, `1.2.3.4`, `[::1]`).
 * Undefined when the entry is malformed; a malformed entry never matches anything.
 * Unicode domains are converted to punycode; IPv4 forms are canonicalised by the WHATWG parser.
 */
export function normalizeDomainPattern(pattern: string): DomainPattern | undefined {
  if (typeof pattern !== 'string' || pattern.length === 0 || pattern.length > 260 || RAW_FORBIDDEN.test(pattern)) {
    return undefined;
  }
  let kind: DomainPattern['kind'] = 'exact';
  let rest = pattern;
  if (rest.startsWith('*.')) {
    kind = 'strict_subdomains';
    rest = rest.slice(2);
  } else if (rest.startsWith('.')) {
    kind = 'apex_and_subdomains';
    rest = rest.slice(1);
  }
  if (/[/?#@]/.test(rest)) return undefined;
  let hostname: string;
  try {
    if (rest.includes(':')) {
      const inner = rest.startsWith('[') && rest.endsWith(']') ? rest.slice(1, -1) : rest;
      hostname = new URL(`http://[${inner}]/`).hostname;
    } else {
      const u = new URL(`http://${rest}/`);
      if (u.port !== '' || u.pathname !== '/') return undefined;
      hostname = u.hostname;
    }
  } catch {
    return undefined;
  }
  const norm = normalizeHost(hostname);
  if (!norm) return undefined;
  if (kind !== 'exact') {
    // Suffix entries apply to domains only, and never to a bare top-level label.
    if (norm.hostKind !== 'domain' || !norm.host.includes('.')) return undefined;
  }
  return { kind, host: norm.host, hostKind: norm.hostKind };
}

/** Parses a list of allowlist entries, dropping malformed ones. */
export function compileDomainPatterns(patterns: readonly string[] | undefined): DomainPattern[] {
  const out: DomainPattern[] = [];
  for (const p of patterns ?? []) {
    const n = normalizeDomainPattern(p);
    if (n) out.push(n);
  }
  return out;
}

/** True when a normalized host matches one of the patterns. IP literals match only an exact IP entry. */
export function hostMatches(host: string, hostKind: HostKind, patterns: readonly DomainPattern[]): boolean {
  for (const p of patterns) {
    if (p.hostKind !== hostKind) continue;
    if (p.kind === 'exact' && host === p.host) return true;
    if (hostKind !== 'domain') continue;
    if (p.kind === 'apex_and_subdomains' && (host === p.host || host.endsWith(`.${p.host}`))) return true;
    if (p.kind === 'strict_subdomains' && host.endsWith(`.${p.host}`)) return true;
  }
  return false;
}

/**
 * Parses and normalizes a target URL: WHATWG parse, https/http only, no userinfo, fragment removed.
 * Refuses raw control characters, whitespace and backslashes, and anything but `scheme://authority`.
 * Does not check ports, methods or allowlists (see {@link precheck}).
 */
export function parseTarget(raw: string): EgressTarget {
  if (typeof raw !== 'string' || raw.length === 0) throw deny('egress_denied', 'url_invalid');
  if (raw.length > MAX_URL_LENGTH) throw deny('egress_denied', 'url_too_long');
  if (RAW_FORBIDDEN.test(raw)) throw deny('egress_denied', 'url_malformed');
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw deny('egress_denied', 'url_invalid');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw deny('egress_scheme_denied', 'scheme_not_allowed', { scheme: u.protocol.slice(0, -1).slice(0, 32) });
  }
  const sep = raw.indexOf(':');
  if (raw.slice(sep, sep + 3) !== '://') throw deny('egress_denied', 'url_malformed');
  const afterScheme = raw.slice(sep + 3);
  const authorityEnd = afterScheme.search(/[/?#]/);
  const authority = authorityEnd < 0 ? afterScheme : afterScheme.slice(0, authorityEnd);
  if (u.username !== '' || u.password !== '' || authority.includes('@')) throw deny('egress_denied', 'userinfo_not_allowed');
  const norm = normalizeHost(u.hostname);
  if (!norm) throw deny('egress_denied', 'url_invalid');
  u.hash = '';
  const scheme = u.protocol === 'https:' ? 'https' : 'http';
  const port = u.port === '' ? (scheme === 'https' ? 443 : 80) : Number(u.port);
  return { href: u.href, scheme, host: norm.host, hostKind: norm.hostKind, port, path: `${u.pathname}${u.search}` };
}

/** Upper-cases and checks a method against the profile (CONNECT/TRACE/TRACK are never allowed). */
export function vetMethod(method: string, profile: EgressProfile): string {
  if (typeof method !== 'string' || !/^[A-Za-z]{1,20}$/.test(method)) throw deny('egress_denied', 'method_invalid');
  const m = method.toUpperCase();
  if (FORBIDDEN_METHODS.has(m)) throw deny('egress_denied', 'method_not_allowed', { method: m });
  const allowed = (profile.allowed_methods ?? []).map((x) => String(x).toUpperCase());
  if (!allowed.includes(m)) throw deny('egress_denied', 'method_not_allowed', { method: m });
  return m;
}

function toUnsafe(option: PrecheckOptions['unsafeAllow']): UnsafeRanges | undefined {
  if (option === undefined) return undefined;
  const ranges = option instanceof UnsafeRanges ? option : new UnsafeRanges(option);
  return ranges.size > 0 ? ranges : undefined;
}

/**
 * The pure egress pre-check the pipeline runs before policy (no DNS). Throws the egress_* GateError
 * for anything that can never be allowed (scheme, userinfo, port, method, metadata host, non-public
 * IP literal); returns `resolved: false` for a well-formed target whose domain is not in
 * manifest ∪ extraDomains, so policy can hold it for approval as an unresolved domain.
 */
export function precheck(
  url: string,
  method: string,
  profile: EgressProfile,
  extraDomains: readonly string[] = [],
  options: PrecheckOptions = {},
): PrecheckResult {
  const unsafe = toUnsafe(options.unsafeAllow);
  const target = parseTarget(url);
  if (target.scheme === 'http' && !unsafe) throw deny('egress_scheme_denied', 'scheme_not_allowed', { scheme: 'http' });
  const m = vetMethod(method, profile);

  if (target.hostKind === 'domain' && isMetadataHostname(target.host)) {
    throw deny('egress_address_denied', 'metadata_host', { host: target.host });
  }

  let unsafeLiteral = false;
  if (target.hostKind !== 'domain') {
    const cls = classifyAddress(target.host);
    if (!cls.public) {
      if (unsafe?.match(target.host)) unsafeLiteral = true;
      else throw addressDenied(cls.category, target.host);
    }
  }

  const ports = profile.allowed_ports && profile.allowed_ports.length > 0 ? profile.allowed_ports : DEFAULT_PORTS;
  const portAllowed = ports.includes(target.port);
  let requiresUnsafeRange = false;
  if (target.scheme === 'http') {
    // Plain http exists only inside an unsafe range: known now for a literal, after DNS for a name.
    if (target.hostKind !== 'domain' && !unsafeLiteral) throw deny('egress_scheme_denied', 'scheme_not_allowed', { scheme: 'http' });
    requiresUnsafeRange = true;
  }
  if (!portAllowed) {
    if (target.hostKind !== 'domain' && !unsafeLiteral) throw deny('egress_port_denied', 'port_not_allowed', { port: target.port });
    if (!unsafe) throw deny('egress_port_denied', 'port_not_allowed', { port: target.port });
    requiresUnsafeRange = true;
  }

  const manifest = hostMatches(target.host, target.hostKind, compileDomainPatterns(profile.allowed_domains));
  const extra = !manifest && hostMatches(target.host, target.hostKind, compileDomainPatterns(extraDomains));
  return {
    ...target,
    method: m,
    resolved: manifest || extra,
    matched: manifest ? 'manifest' : extra ? 'extra' : null,
    requiresUnsafeRange,
    unsafeLiteral,
  };
}

/** The GateError for a non-public address. */
export function addressDenied(category: AddressCategory, host?: string): GateError {
  return deny('egress_address_denied', 'address_not_public', host === undefined ? { category } : { category, host });
}
