// Builds DPoP proofs (RFC 9449) with any ES256 signer: WebCrypto (agent client, non-extractable
// key) or node:crypto (operator CLI, key from the credential file).
import { createHash, randomUUID } from 'node:crypto';

export interface PublicJwk { kty: 'EC'; crv: 'P-256'; x: string; y: string }
export type Es256Signer = (data: Uint8Array) => Promise<Uint8Array>;

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

export interface ProofParams {
  jwk: PublicJwk;
  sign: Es256Signer;
  method: string;
  htu: string;
  accessToken: string;
  nonce?: string;
  iat?: number;
  jti?: string;
}

// One-entry memos, shared by every caller in the process: a client signs every proof with the same
// key and, until it renews its lease, for the same token, so the header's encoding and the token's
// hash are computed once (callers that alternate keys or tokens only recompute). Both are keyed by
// value (not by object), so a changed key or token can never reuse a stale entry.
let headerMemo: { key: string; encoded: string } | undefined;
let athMemo: { token: string; ath: string } | undefined;
const utf8 = new TextEncoder();

function encodedHeader(jwk: PublicJwk): string {
  const key = `${jwk.kty}\n${jwk.crv}\n${jwk.x}\n${jwk.y}`;
  if (headerMemo?.key !== key) {
    headerMemo = { key, encoded: b64({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } }) };
  }
  return headerMemo.encoded;
}

function athOf(token: string): string {
  if (athMemo?.token !== token) athMemo = { token, ath: createHash('sha256').update(token).digest('base64url') };
  return athMemo.ath;
}

export async function createProof(p: ProofParams): Promise<string> {
  const payload: Record<string, unknown> = {
    htm: p.method,
    htu: p.htu,
    iat: p.iat ?? Math.floor(Date.now() / 1000),
    jti: p.jti ?? randomUUID(),
    ath: athOf(p.accessToken),
  };
  if (p.nonce) payload.nonce = p.nonce;
  const input = `${encodedHeader(p.jwk)}.${b64(payload)}`;
  const sig = await p.sign(utf8.encode(input));
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
}
