// The client's DPoP proofs (src/client/proof.ts) memoize the encoded header and the token hash:
// each proof must still carry exactly the key and token it was made for, whatever came before,
// and must verify against that key (the gate's ES256 check, src/auth/jws.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { createProof, type PublicJwk } from '../../src/client/proof.ts';
import { keyFor, parseCompact, thumbprint, verifyEs256, asP256PublicJwk } from '../../src/auth/jws.ts';

function es256Key(): { jwk: PublicJwk; key: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const j = publicKey.export({ format: 'jwk' }) as { x: string; y: string };
  return { jwk: { kty: 'EC', crv: 'P-256', x: j.x, y: j.y }, key: privateKey };
}

async function proofFor(k: { jwk: PublicJwk; key: KeyObject }, token: string): Promise<string> {
  return createProof({
    jwk: k.jwk, method: 'POST', htu: 'http://localhost/v1/actions/echo/execute', accessToken: token,
    sign: async (d) => cryptoSign('sha256', d, { key: k.key, dsaEncoding: 'ieee-p1363' }),
  });
}

const ath = (token: string) => createHash('sha256').update(token).digest('base64url');

test('each proof carries its own key and token hash, interleaved, and verifies with its key', async () => {
  const a = es256Key();
  const b = es256Key();
  const order: Array<[typeof a, string]> = [[a, 't1'], [a, 't1'], [b, 't1'], [a, 't2'], [b, 't2'], [b, 't2'], [a, 't1']];
  for (const [k, token] of order) {
    const proof = await proofFor(k, token);
    const { header, payload, signingInput, signature } = parseCompact(proof);
    assert.equal(header.typ, 'dpop+jwt');
    assert.equal(header.alg, 'ES256');
    assert.deepEqual(header.jwk, k.jwk);
    assert.equal(payload.ath, ath(token));
    const jwk = asP256PublicJwk(header.jwk);
    assert.equal(verifyEs256(keyFor(jwk, thumbprint(jwk)), signingInput, signature), true);
  }
});

test('a key object changed in place is not served from the memo', async () => {
  const a = es256Key();
  const b = es256Key();
  const shared = { ...a.jwk };
  await proofFor({ jwk: shared, key: a.key }, 't');
  Object.assign(shared, b.jwk);
  const { header } = parseCompact(await proofFor({ jwk: shared, key: b.key }, 't'));
  assert.deepEqual(header.jwk, b.jwk);
});
