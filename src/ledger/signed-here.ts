// Documents (grants, receipts) this process signed, remembered by object identity together with
// their exact canonical text and the signing key. When the same object comes back to a verifier in
// this process (the ledger consuming a grant or storing a receipt moments after the pipeline signed
// it), and it still canonicalizes to that text, and the verifier's key set holds that very key, the
// Ed25519 verification (~170 µs here, docs/benchmarks.md) cannot answer anything but `verified`:
// it is skipped. Any other object — parsed, copied, altered, or signed by a key the set lacks —
// is verified in full.
import type { SigningKey } from '../keys/keystore.ts';
import type { PublicKeySet } from '../keys/key-set.ts';

interface Memo {
  text: string;
  kid: string;
  x: string;
}

const memo = new WeakMap<object, Memo>();

/** Records that `doc` (whose canonical JSON is `text`) was just signed with `key`. */
export function rememberSigned(doc: object, text: string, key: SigningKey): void {
  memo.set(doc, { text, kid: key.kid, x: key.publicJwk.x });
}

/** True when `doc` was signed in this process, still has canonical JSON `text`, and `keys` holds its key. */
export function signedHere(doc: object, text: string, keys: PublicKeySet): boolean {
  const m = memo.get(doc);
  if (!m || m.text !== text) return false;
  const entry = keys.get(m.kid);
  return entry !== undefined && entry.jwk.kty === 'OKP' && entry.jwk.x === m.x;
}
