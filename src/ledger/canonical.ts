// Canonical JSON (RFC 8785, one pass; see canonicalJson) and the domain-separated byte strings every
// Portcullis hash and signature is computed over: UTF-8(domain + "\n" + JCS(value)).
import { createHash } from 'node:crypto';

/** Domain tags. A signature or hash for one purpose can never be replayed as another. */
export const DOMAIN = {
  audit: 'portcullis-audit-v1',
  checkpoint: 'portcullis-checkpoint-v1',
  receipt: 'portcullis-receipt-v1',
  grant: 'portcullis-grant-v1',
  bundle: 'portcullis-bundle-v1',
} as const;
export type Domain = (typeof DOMAIN)[keyof typeof DOMAIN];

/** A JSON value as produced by JSON.parse. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/**
 * Returns a plain-JSON deep copy of `value`, or throws TypeError. Object members whose value is
 * undefined are dropped (as JSON.stringify does); everything else that JSON cannot represent
 * exactly is refused: functions, symbols, bigints, NaN/±Infinity, undefined inside arrays,
 * non-plain objects (Date, Map, class instances), lone surrogates, cycles.
 */
export function toJsonValue(value: unknown): JsonValue {
  return copy(value, new Set(), '$');
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** How {@link walk} builds its result: a copy ({@link toJsonValue}) or canonical text ({@link canonicalJson}). */
interface Builder<T> {
  scalar(v: null | boolean | number | string): T;
  array(items: T[]): T;
  object(entries: Array<[string, T]>): T;
  /** Members in sorted (RFC 8785) order rather than insertion order. */
  sorted: boolean;
}

/**
 * The one traversal behind toJsonValue and canonicalJson, so both refuse exactly the same values:
 * non-finite numbers, lone surrogates (in strings and keys), functions, symbols, bigints, undefined
 * in arrays, non-plain objects, cycles. Object members whose value is undefined are skipped; -0 is 0.
 */
function walk<T>(v: unknown, seen: Set<object>, path: string, b: Builder<T>): T {
  if (v === null) return b.scalar(null);
  switch (typeof v) {
    case 'boolean':
      return b.scalar(v);
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`${path}: non-finite number`);
      return b.scalar(Object.is(v, -0) ? 0 : v);
    case 'string':
      if (LONE_SURROGATE.test(v)) throw new TypeError(`${path}: lone surrogate`);
      return b.scalar(v);
    case 'object':
      break;
    default:
      throw new TypeError(`${path}: ${typeof v} is not JSON`);
  }
  const obj = v as object;
  if (seen.has(obj)) throw new TypeError(`${path}: cycle`);
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      const items: T[] = [];
      for (let i = 0; i < obj.length; i++) {
        const item: unknown = obj[i];
        if (item === undefined) throw new TypeError(`${path}[${i}]: undefined in array`);
        items.push(walk(item, seen, `${path}[${i}]`, b));
      }
      return b.array(items);
    }
    const proto = Object.getPrototypeOf(obj) as unknown;
    if (proto !== Object.prototype && proto !== null) throw new TypeError(`${path}: not a plain object`);
    const rec = obj as Record<string, unknown>;
    const keys = b.sorted ? Object.keys(rec).sort() : Object.keys(rec);
    const entries: Array<[string, T]> = [];
    for (const k of keys) {
      const item = rec[k];
      if (item === undefined) continue;
      if (LONE_SURROGATE.test(k)) throw new TypeError(`${path}: lone surrogate in key`);
      entries.push([k, walk(item, seen, `${path}.${k}`, b)]);
    }
    return b.object(entries);
  } finally {
    seen.delete(obj);
  }
}

const COPY: Builder<JsonValue> = {
  sorted: false,
  scalar: (v) => v,
  array: (items) => items,
  object(entries) {
    const out: { [k: string]: JsonValue } = {};
    for (const [k, value] of entries) {
      // defineProperty: a member named "__proto__" (legal JSON, own property after JSON.parse)
      // stays an ordinary member; plain assignment would re-parent the copy and drop it from the
      // signed bytes, letting an attacker add unsigned content to a "verified" document.
      if (k === '__proto__') Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
      else out[k] = value;
    }
    return out;
  },
};

const TEXT: Builder<string> = {
  sorted: true,
  scalar: (v) => JSON.stringify(v),
  array: (items) => `[${items.join(',')}]`,
  object: (entries) => `{${entries.map(([k, t]) => `${JSON.stringify(k)}:${t}`).join(',')}}`,
};

function copy(v: unknown, seen: Set<object>, path: string): JsonValue {
  return walk(v, seen, path, COPY);
}

/**
 * RFC 8785 canonical JSON text of a value, refusing exactly what {@link toJsonValue} refuses (the
 * result equals `canonicalize(toJsonValue(value))`, in one pass without the copy: test/ledger/canonical.test.ts).
 * Strings and numbers are serialized as ECMAScript JSON.stringify does, which is what JCS specifies;
 * members are sorted by UTF-16 code units (the default string sort).
 */
export function canonicalJson(value: unknown): string {
  return writeCanonical(value, new Set(), '$');
}

/**
 * The canonical members of a plain object, sorted as RFC 8785 sorts them: `"key":value` texts.
 * `'{' + members.join(',') + '}'` is `canonicalJson(obj)`; a member can be added without
 * re-serializing the rest ({@link withMember}). Refuses what canonicalJson refuses.
 */
export function canonicalMembers(obj: Record<string, unknown>): Array<[key: string, text: string]> {
  const proto = Object.getPrototypeOf(obj) as unknown;
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj) || (proto !== Object.prototype && proto !== null)) {
    throw new TypeError('$: not a plain object');
  }
  const seen = new Set<object>([obj]);
  const out: Array<[string, string]> = [];
  for (const k of Object.keys(obj).sort()) {
    const item = obj[k];
    if (item === undefined) continue;
    if (LONE_SURROGATE.test(k)) throw new TypeError('$: lone surrogate in key');
    out.push([k, `${JSON.stringify(k)}:${writeCanonical(item, seen, `$.${k}`)}`]);
  }
  return out;
}

/** The canonical object text of `members` with one more string member (which must not be there yet). */
export function withMember(members: ReadonlyArray<[string, string]>, key: string, value: string): string {
  if (members.some(([k]) => k === key)) throw new TypeError(`$: ${key} is already a member`);
  const all = [...members, [key, `${JSON.stringify(key)}:${JSON.stringify(value)}`] as [string, string]];
  // The default sort compares UTF-16 code units, as RFC 8785 requires.
  all.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${all.map(([, t]) => t).join(',')}}`;
}

/** The canonical object text of `members`. */
export function joinMembers(members: ReadonlyArray<[string, string]>): string {
  return `{${members.map(([, t]) => t).join(',')}}`;
}

function writeCanonical(v: unknown, seen: Set<object>, path: string): string {
  return walk(v, seen, path, TEXT);
}

/** The exact bytes hashed or signed for `domain`: UTF-8(domain + "\n" + JCS(value)). */
export function domainBytes(domain: Domain, value: unknown): Buffer {
  return Buffer.from(`${domain}\n${canonicalJson(value)}`, 'utf8');
}

/** {@link domainBytes} of an object given as its {@link canonicalMembers}. */
export function domainText(domain: Domain, members: ReadonlyArray<[string, string]>): Buffer {
  return Buffer.from(`${domain}\n${joinMembers(members)}`, 'utf8');
}

/** Lowercase hex SHA-256. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** `sha256:<hex>` of the canonical JSON of a value (the form used in receipts: result_hash). */
export function jsonDigest(value: unknown): string {
  return `sha256:${sha256Hex(canonicalJson(value))}`;
}
