// Documents (grants, receipts) this process signed, remembered by object identity together with
// their exact canonical text and the signing key, and deep-frozen at signing. When the same object
// comes back to a verifier in this process (the ledger consuming a grant or storing a receipt
// moments after the pipeline signed it) and the verifier's key set holds that very key, the
// Ed25519 verification (~170 µs here, docs/benchmarks.md) cannot answer anything but `verified`,
// and the remembered text is its exact canonical form: both are skipped. Any other object —
// parsed, copied, or signed by a key the set lacks — is verified and serialized in full.
import type { SigningKey } from '../keys/keystore.ts';
import type { PublicKeySet } from '../keys/key-set.ts';
import { canonicalMembers, domainText, withMember, type Domain } from './canonical.ts';

interface Memo {
  text: string;
  kid: string;
  x: string;
}

const memo = new WeakMap<object, Memo>();

function deepFreeze(v: unknown): void {
  if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return;
  Object.freeze(v);
  for (const item of Object.values(v)) deepFreeze(item);
}

/**
 * Records that `doc` (whose canonical JSON is `text`) was just signed with `key`, and freezes it
 * (deeply): a signed document never changes afterwards, so its remembered text stays exact.
 */
function rememberSigned(doc: object, text: string, key: SigningKey): void {
  deepFreeze(doc);
  memo.set(doc, { text, kid: key.kid, x: key.publicJwk.x });
}

/**
 * Signs `body` (a plain JSON object) for `domain` — Ed25519 over UTF-8(domain + "\n" + JCS(body)) —
 * and returns it with the hex signature added as member `field`, deep-frozen and remembered. One
 * canonicalization serves both the signed bytes and the remembered text.
 */
export function signDocument<B extends object, F extends string>(domain: Domain, body: B, field: F, key: SigningKey): B & Record<F, string> {
  const members = canonicalMembers(body as Record<string, unknown>);
  const hex = key.sign(domainText(domain, members)).toString('hex');
  const signed = { ...body, [field]: hex } as B & Record<F, string>;
  rememberSigned(signed, withMember(members, field, hex), key);
  return signed;
}

/**
 * The canonical text of `doc` if this process signed it (it is frozen since) with a key `keys`
 * holds: the signature needs no verification and the text no re-serialization. Else undefined.
 */
export function signedText(doc: object, keys: PublicKeySet): string | undefined {
  const m = memo.get(doc);
  if (!m || !Object.isFrozen(doc)) return undefined;
  const entry = keys.get(m.kid);
  return entry !== undefined && entry.jwk.kty === 'OKP' && entry.jwk.x === m.x ? m.text : undefined;
}

/** True when `doc` was signed in this process, has canonical JSON `text`, and `keys` holds its key. */
export function signedHere(doc: object, text: string, keys: PublicKeySet): boolean {
  return signedText(doc, keys) === text;
}
