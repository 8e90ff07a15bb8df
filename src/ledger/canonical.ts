// Canonical JSON (RFC 8785, one pass; see canonicalJson) and the domain-separated byte strings every
// Portcullis hash and signature is computed over: UTF-8(domain + "\n" + JCS(value)).
import { hash } from 'node:crypto';

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
  return located(() => copyOf(value, newWalk()));
}

// Every grant, receipt and audit detail goes through the two traversals below (the copy and the
// canonical text), several times per call: they are written for that. No path string is built
// while a value is walked; a refusal collects its path on the way out (`at`) and becomes the
// TypeError `<path>: <reason>` at the entry point (located). Cycles are found on the stack of
// objects being walked: a linear scan while it is shallow (always, for evidence), a Set once it is
// deeper than STACK_SCAN (so deep nesting stays linear, not quadratic). Both traversals apply the same checks
// (scalar, container) in the same places, so they refuse exactly the same values: the property
// tests in test/ledger/canonical.test.ts hold them to the `canonicalize` package.

/** A refused value: the reason, and the path from the refused value up (innermost first). */
class Refusal {
  readonly up: Array<string | number> = [];
  constructor(readonly reason: string) {}
}

/** Adds one path segment to a refusal passing through; anything else passes unchanged. */
function at(err: unknown, segment: string | number): unknown {
  if (err instanceof Refusal) err.up.push(segment);
  return err;
}

/** Runs one traversal from the root `$`, turning a refusal into TypeError(`$.a[0]: reason`). */
function located<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    let path = '$';
    for (let i = err.up.length - 1; i >= 0; i--) {
      const seg = err.up[i]!;
      path += typeof seg === 'number' ? `[${seg}]` : `.${seg}`;
    }
    throw new TypeError(`${path}: ${err.reason}`);
  }
}

/** A scalar as JSON keeps it (-0 is 0), or a refusal; undefined for an object (a container). */
function scalar(v: unknown): null | boolean | number | string | undefined {
  switch (typeof v) {
    case 'boolean':
      return v;
    case 'number':
      if (!Number.isFinite(v)) throw new Refusal('non-finite number');
      return v === 0 ? 0 : v;
    case 'string':
      if (!v.isWellFormed()) throw new Refusal('lone surrogate');
      return v;
    case 'object':
      return v === null ? null : undefined;
    default:
      throw new Refusal(`${typeof v} is not JSON`);
  }
}

/** The containers being walked, root first; `set` mirrors `stack` once it is deep. */
interface Walk {
  stack: object[];
  set: Set<object> | null;
}

const STACK_SCAN = 32;
const newWalk = (): Walk => ({ stack: [], set: null });

/** Enters a container: refuses a cycle and anything but arrays and plain objects; true for an array. */
function enter(obj: object, w: Walk): boolean {
  if (w.set ? w.set.has(obj) : w.stack.includes(obj)) throw new Refusal('cycle');
  const isArray = Array.isArray(obj);
  if (!isArray) {
    const proto = Object.getPrototypeOf(obj) as unknown;
    if (proto !== Object.prototype && proto !== null) throw new Refusal('not a plain object');
  }
  w.stack.push(obj);
  if (w.set) w.set.add(obj);
  else if (w.stack.length > STACK_SCAN) w.set = new Set(w.stack);
  return isArray;
}

function leave(w: Walk): void {
  const obj = w.stack.pop()!;
  w.set?.delete(obj);
}

/**
 * `walk(item)` for one array element (segment: its index) or object member (segment: its name;
 * callers skip undefined members), with the checks both traversals make there: a lone surrogate in
 * a name (reported at the object), undefined in an array (at the element). A refusal from below
 * gains this segment of its path on the way out.
 */
function child<T>(walk: (v: unknown, w: Walk) => T, item: unknown, w: Walk, segment: string | number): T {
  if (typeof segment === 'string' && !segment.isWellFormed()) throw new Refusal('lone surrogate in key');
  try {
    if (item === undefined) throw new Refusal('undefined in array');
    return walk(item, w);
  } catch (err) {
    throw at(err, segment);
  }
}

function copyOf(v: unknown, w: Walk): JsonValue {
  const s = scalar(v);
  if (s !== undefined) return s;
  const obj = v as object;
  if (enter(obj, w)) {
    const arr = obj as unknown[];
    const out: JsonValue[] = [];
    for (let i = 0; i < arr.length; i++) out.push(child(copyOf, arr[i], w, i));
    leave(w);
    return out;
  }
  const rec = obj as Record<string, unknown>;
  const out: { [k: string]: JsonValue } = {};
  for (const k of Object.keys(rec)) {
    const item = rec[k];
    if (item === undefined) continue;
    const value = child(copyOf, item, w, k);
    // defineProperty: a member named "__proto__" (legal JSON, own property after JSON.parse)
    // stays an ordinary member; plain assignment would re-parent the copy and drop it from the
    // signed bytes, letting an attacker add unsigned content to a "verified" document.
    if (k === '__proto__') Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
    else out[k] = value;
  }
  leave(w);
  return out;
}

function textOf(v: unknown, w: Walk): string {
  const s = scalar(v);
  if (s !== undefined) return JSON.stringify(s);
  const obj = v as object;
  if (enter(obj, w)) {
    const arr = obj as unknown[];
    let out = '[';
    for (let i = 0; i < arr.length; i++) out += i === 0 ? child(textOf, arr[i], w, i) : `,${child(textOf, arr[i], w, i)}`;
    leave(w);
    return `${out}]`;
  }
  const text = memberTexts(obj as Record<string, unknown>, w);
  leave(w);
  return `{${text}}`;
}

// Quoted member names: the same few dozen names recur in every grant, receipt and event. Only
// short names are cached (member names also come from provider output and audit details, so an
// unbounded key could pin megabytes per entry): at most KEY_TEXTS_MAX × ~2·KEY_TEXT_MAX_CHARS chars.
const KEY_TEXTS = new Map<string, string>();
const KEY_TEXTS_MAX = 4096;
const KEY_TEXT_MAX_CHARS = 64;

function keyText(k: string): string {
  if (k.length > KEY_TEXT_MAX_CHARS) return `${JSON.stringify(k)}:`;
  let t = KEY_TEXTS.get(k);
  if (t === undefined) {
    t = `${JSON.stringify(k)}:`;
    if (KEY_TEXTS.size >= KEY_TEXTS_MAX) KEY_TEXTS.clear();
    KEY_TEXTS.set(k, t);
  }
  return t;
}

/**
 * The `"key":value` texts of an object already on the stack, sorted as RFC 8785 sorts them (by
 * UTF-16 code units: the default sort), joined by commas; or, with `members`, collected there as
 * [name, text] pairs (and the empty string returned).
 */
function memberTexts(rec: Record<string, unknown>, w: Walk, members?: Array<[string, string]>): string {
  let out = '';
  for (const k of Object.keys(rec).sort()) {
    const item = rec[k];
    if (item === undefined) continue;
    const text = child(textOf, item, w, k);
    if (members) members.push([k, keyText(k) + text]);
    else out += out === '' ? keyText(k) + text : `,${keyText(k)}${text}`;
  }
  return out;
}

/**
 * RFC 8785 canonical JSON text of a value, refusing exactly what {@link toJsonValue} refuses (the
 * result equals `canonicalize(toJsonValue(value))`, in one pass without the copy: test/ledger/canonical.test.ts).
 * Strings and numbers are serialized as ECMAScript JSON.stringify does, which is what JCS specifies;
 * members are sorted by UTF-16 code units (the default string sort).
 */
export function canonicalJson(value: unknown): string {
  return located(() => textOf(value, newWalk()));
}

/**
 * The canonical members of a plain object, sorted as RFC 8785 sorts them: `"key":value` texts.
 * `'{' + members.join(',') + '}'` is `canonicalJson(obj)`; a member can be added without
 * re-serializing the rest ({@link withMember}). Refuses what canonicalJson refuses.
 */
export function canonicalMembers(obj: Record<string, unknown>): Array<[key: string, text: string]> {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new TypeError('$: not a plain object');
  return located(() => {
    const w = newWalk();
    enter(obj, w);
    const members: Array<[string, string]> = [];
    memberTexts(obj, w, members);
    return members;
  });
}

/** The canonical object text of `members` with one more string member (which must not be there yet). */
export function withMember(members: ReadonlyArray<[string, string]>, key: string, value: string): string {
  return withCanonicalMember(members, key, JSON.stringify(value));
}

/**
 * The canonical object text of `members` with one more member whose value is given as its own
 * canonical JSON text `valueText` (e.g. an audit event's detail, canonicalized once before).
 */
export function withCanonicalMember(members: ReadonlyArray<[string, string]>, key: string, valueText: string): string {
  if (members.some(([k]) => k === key)) throw new TypeError(`$: ${key} is already a member`);
  const all = [...members, [key, `${JSON.stringify(key)}:${valueText}`] as [string, string]];
  // The default sort compares UTF-16 code units, as RFC 8785 requires.
  all.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${all.map(([, t]) => t).join(',')}}`;
}

/** The canonical object text of `members`. */
export function joinMembers(members: ReadonlyArray<[string, string]>): string {
  return `{${members.map(([, t]) => t).join(',')}}`;
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
  return hash('sha256', data, 'hex');
}

/** `sha256:<hex>` of the canonical JSON of a value (the form used in receipts: result_hash). */
export function jsonDigest(value: unknown): string {
  return `sha256:${sha256Hex(canonicalJson(value))}`;
}
