// Strict validators for what operators put into policy data: identifiers, learned domains and
// learned paths. Each returns a boolean; callers choose the error code. Pure functions.
import { domainToASCII } from 'node:url';
import { posix } from 'node:path';

const ID_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;
const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const CONTROL_RE = /\p{Cc}/u;

/** Action, principal, sink ids: 1–128 of `[A-Za-z0-9_.:@-]`, never `__proto__` (a key in plain objects). */
export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_RE.test(value) && value !== '__proto__';
}

/** An ACL key: an id, or `*` (defaults for every principal). */
export function isValidPrincipalKey(value: unknown): value is string {
  return value === '*' || isValidId(value);
}

/**
 * A learned domain: lowercase LDH hostname labels (punycode `xn--` allowed when it decodes), at
 * least two labels, not an IPv4 literal; or `*.suffix` whose suffix is such a hostname. No scheme,
 * port, path, trailing dot or uppercase.
 */
export function isValidLearnedDomain(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 253) return false;
  const host = value.startsWith('*.') ? value.slice(2) : value;
  const labels = host.split('.');
  // A single label resolves through search domains; `*.com` would open a whole TLD.
  if (labels.length < 2) return false;
  for (const label of labels) {
    if (!LABEL_RE.test(label)) return false;
    // IDNA "CheckHyphens": `--` in positions 3–4 only for the ACE prefix.
    if (label.slice(2, 4) === '--' && !label.startsWith('xn--')) return false;
  }
  // An all-numeric last label makes it an IPv4 literal, not a domain.
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) return false;
  // The WHATWG host parser must keep it unchanged: rejects broken punycode and non-canonical forms.
  return domainToASCII(host) === host;
}

/** A learned path: absolute, normalized (no `.`/`..`/`//`, no trailing `/`), not `/`, no control chars. */
export function isValidLearnedPath(value: unknown): value is string {
  if (typeof value !== 'string' || value.length < 2 || value.length > 4096) return false;
  if (!value.startsWith('/') || value.endsWith('/')) return false;
  if (CONTROL_RE.test(value)) return false;
  if (value.split('/').some((seg) => seg === '.' || seg === '..')) return false;
  return posix.normalize(value) === value;
}
