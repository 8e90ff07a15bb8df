// Secret scrubbing: every known encoding of every secret value (raw, JSON-escaped, URL/form-encoded,
// base64 and base64url at any byte alignment, hex) and every full injected header value is replaced
// by `[REDACTED]`, recursively through strings, arrays and plain objects (keys included).

export const REDACTED = '[REDACTED]';

/** Shortest aligned base64 fragment kept; shorter fragments would redact unrelated text. */
const MIN_FRAGMENT = 8;
/**
 * Shortest cut-off secret start redacted at the end of a truncated body. Up to 3 characters (at most
 * the first ~3 bytes of a value) cannot be told apart from ordinary text; 4 and more are redacted.
 */
const MIN_TAIL = 4;

function lowerPercent(s: string): string {
  return s.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
}

function formEncode(s: string): string {
  return new URLSearchParams([['', s]]).toString().slice(1);
}

/**
 * Base64 fragments of `bytes` that appear in the base64 of ANY larger buffer containing them,
 * whatever the byte offset (0, 1 or 2 mod 3) and whatever follows: only the characters whose six
 * bits come entirely from `bytes` are kept.
 */
function alignedBase64Fragments(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let k = 0; k < 3; k++) {
    const padded = Buffer.concat([Buffer.alloc(k), bytes]);
    const std = padded.toString('base64').replace(/=+$/, '');
    const url = padded.toString('base64url');
    const first = Math.ceil((8 * k) / 6);
    const last = Math.floor((8 * (k + bytes.length) - 6) / 6);
    if (last - first + 1 < MIN_FRAGMENT) continue;
    out.push(std.slice(first, last + 1), url.slice(first, last + 1));
  }
  return out;
}

/** Every encoded form of one secret value that the scrubber looks for. Empty for an empty value. */
export function secretForms(value: string): string[] {
  if (typeof value !== 'string' || value.length === 0) return [];
  const bytes = Buffer.from(value, 'utf8');
  const forms = new Set<string>([value]);
  forms.add(JSON.stringify(value).slice(1, -1));
  const uri = encodeURIComponent(value);
  forms.add(uri);
  forms.add(lowerPercent(uri));
  forms.add(encodeURIComponent(uri));
  forms.add(encodeURI(value));
  const form = formEncode(value);
  forms.add(form);
  forms.add(lowerPercent(form));
  const b64 = bytes.toString('base64');
  forms.add(b64);
  forms.add(b64.replace(/=+$/, ''));
  const b64url = bytes.toString('base64url');
  forms.add(b64url);
  forms.add(b64url + '='.repeat((4 - (b64url.length % 4)) % 4));
  for (const f of alignedBase64Fragments(bytes)) forms.add(f);
  // Node decodes response header bytes as latin1: a non-ASCII secret echoed in a header looks like this.
  forms.add(bytes.toString('latin1'));
  forms.add(bytes.toString('hex'));
  forms.add(bytes.toString('hex').toUpperCase());
  forms.delete('');
  return [...forms];
}

/** A compiled scrubber: build once per request, apply to everything returned. */
export class SecretScrubber {
  readonly #needles: readonly string[];

  /**
   * @param secrets secret values: each is expanded to all of its encoded forms
   * @param literals further exact strings to redact (e.g. full injected header values `Bearer x`);
   *                 each is also expanded to its encoded forms
   */
  constructor(secrets: Iterable<string>, literals: Iterable<string> = []) {
    const all = new Set<string>();
    for (const s of secrets) for (const f of secretForms(s)) all.add(f);
    for (const s of literals) for (const f of secretForms(s)) all.add(f);
    // Longest first, so `Bearer x` is redacted whole rather than leaving `Bearer `.
    this.#needles = [...all].sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
  }

  /** True when there is nothing to redact. */
  get empty(): boolean {
    return this.#needles.length === 0;
  }

  scrubString(s: string): string {
    let out = s;
    for (const n of this.#needles) if (out.includes(n)) out = out.split(n).join(REDACTED);
    return out;
  }

  /**
   * For a body cut at a size cap: scrubs, then also redacts a trailing fragment of 4+ characters that
   * is the start of any secret form (the rest of the secret fell past the cap).
   */
  scrubTruncated(s: string): string {
    const out = this.scrubString(s);
    let cut = 0;
    for (const n of this.#needles) {
      const first = n.charCodeAt(0);
      for (let k = Math.min(n.length - 1, out.length); k > cut && k >= MIN_TAIL; k--) {
        if (out.charCodeAt(out.length - k) === first && out.endsWith(n.slice(0, k))) {
          cut = k;
          break;
        }
      }
    }
    return cut === 0 ? out : out.slice(0, out.length - cut) + REDACTED;
  }

  /** Scrubs strings, arrays and plain objects (keys and values) recursively; other values pass unchanged if primitive. */
  scrub<T>(value: T): T {
    return this.#walk(value, new WeakMap()) as T;
  }

  #walk(value: unknown, seen: WeakMap<object, unknown>): unknown {
    if (typeof value === 'string') return this.scrubString(value);
    if (value === null || typeof value !== 'object') return value;
    const prior = seen.get(value);
    if (prior !== undefined) return prior;
    if (Array.isArray(value)) {
      const out: unknown[] = [];
      seen.set(value, out);
      for (const v of value) out.push(this.#walk(v, seen));
      return out;
    }
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      // Buffers, Maps, class instances: no silent pass-through of something we cannot inspect.
      throw new TypeError('scrubSecrets accepts strings, arrays and plain objects only');
    }
    const out: Record<string, unknown> = {};
    seen.set(value, out);
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      out[this.scrubString(k)] = this.#walk(v, seen);
    }
    return out;
  }
}

/**
 * Replaces every secret value, and its base64 / base64url / URL-encoded / form-encoded / hex /
 * JSON-escaped forms, with `[REDACTED]` in a string or (recursively) in arrays and plain objects.
 * Returns a new value; the input is not modified.
 */
export function scrubSecrets<T>(value: T, secrets: Iterable<string> | SecretScrubber): T {
  const scrubber = secrets instanceof SecretScrubber ? secrets : new SecretScrubber(secrets);
  return scrubber.scrub(value);
}
