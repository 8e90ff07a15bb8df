// The DPoP signature check runs inline when a request is alone and on the thread pool when others
// wait (offloadSignature). Both paths must give the same verdict on every proof, forged or not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DpopVerifier } from '../../src/auth/dpop.ts';
import { thumbprint } from '../../src/auth/jws.ts';
import { openStateDb, SqliteReplayStore } from '../../src/stores/sqlite.ts';
import { newP256, proof, type ProofSpec } from '../helpers/gate.ts';
import { tempDir } from '../helpers/temp.ts';

const HTU = 'http://localhost/v1/x';

test('DPoP: inline and thread-pool signature checks agree on valid, forged, tampered and replayed proofs', async (t) => {
  const db = openStateDb(join(tempDir(t, 'dpop-offload-'), 'state.db'));
  t.after(() => db.close());
  const key = newP256();
  const other = newP256();
  const token = 'lease-token';
  const base: ProofSpec = { key, htm: 'POST', htu: HTU, token };
  const cases: Array<[string, () => string, string]> = [
    ['valid', () => proof(base), 'ok'],
    ['signed by another key', () => proof({ ...base, signWith: other.privateKey }), 'invalid_dpop'],
    ['payload changed after signing', () => {
      const [h, , s] = proof(base).split('.');
      const p = Buffer.from(JSON.stringify({ htm: 'POST', htu: HTU, iat: Math.floor(Date.now() / 1000), jti: 'x'.repeat(22), ath: 'y' })).toString('base64url');
      return `${h}.${p}.${s}`;
    }, 'invalid_dpop'],
    ['signature of the wrong length', () => proof({ ...base, signature: Buffer.alloc(63, 1).toString('base64url') }), 'invalid_dpop'],
    ['all-zero signature', () => proof({ ...base, signature: Buffer.alloc(64).toString('base64url') }), 'invalid_dpop'],
    ['embedded key not the lease key', () => proof({ ...base, key: other }), 'invalid_dpop'],
  ];
  for (const offload of [true, false]) {
    let asked = 0;
    const v = new DpopVerifier({
      publicBaseUrl: 'http://localhost', maxAgeSeconds: 60, maxFutureSeconds: 5,
      replay: new SqliteReplayStore(db), clock: { now: () => Date.now() }, notBeforeMs: 0,
      offloadSignature: () => { asked++; return offload; },
    });
    for (const [name, make, expected] of cases) {
      const p = make();
      const input = { proof: p, method: 'POST', path: '/v1/x', accessToken: token, expectedJkt: thumbprint(key.jwk) };
      const got = await v.verify(input).then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));
      assert.equal(got, expected, `${name} (offload ${offload})`);
      if (expected === 'ok') {
        const again = await v.verify(input).then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));
        assert.equal(again, 'replay_detected', `replayed ${name} (offload ${offload})`);
      }
    }
    assert.ok(asked >= cases.length - 1, 'the verifier asks where to check each signature');
  }
});
