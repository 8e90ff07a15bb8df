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

export async function createProof(p: ProofParams): Promise<string> {
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: { kty: p.jwk.kty, crv: p.jwk.crv, x: p.jwk.x, y: p.jwk.y } };
  const payload: Record<string, unknown> = {
    htm: p.method,
    htu: p.htu,
    iat: p.iat ?? Math.floor(Date.now() / 1000),
    jti: p.jti ?? randomUUID(),
    ath: createHash('sha256').update(p.accessToken).digest('base64url'),
  };
  if (p.nonce) payload.nonce = p.nonce;
  const input = `${b64(header)}.${b64(payload)}`;
  const sig = await p.sign(new TextEncoder().encode(input));
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
}
