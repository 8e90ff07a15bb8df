// DPoP replay across the thread-pool wait (found by review): the signature check awaits the libuv
// thread pool for an unbounded time. If freshness were judged on a clock read before that wait and
// the jti marked used on one after it, a proof replayed just inside its acceptance window whose
// verification waits past the end of the first use's replay entry would be accepted twice. The
// verifier reads the clock after the wait; the replay must be refused (as a replay, or as too old).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DpopVerifier } from '../../src/auth/dpop.ts';
import { thumbprint } from '../../src/auth/jws.ts';
import { openStateDb, SqliteReplayStore } from '../../src/stores/sqlite.ts';
import { newP256, proof } from '../helpers/gate.ts';

test('a captured DPoP proof is accepted a second time when its verification waits in the thread pool past the replay TTL', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dpop-rp-'));
  const db = openStateDb(join(dir, 'state.db'));
  t.after(() => { db.close(); rmSync(dir, { recursive: true, force: true }); });
  // A controllable clock shared by the verifier and the replay store (as in bootstrap.ts).
  let now = Date.UTC(2025, 0, 1, 0, 0, 0, 0); // exactly on a second boundary
  const clock = { now: () => now };
  const replay = new SqliteReplayStore(db, () => clock.now());
  const maxAgeSeconds = 60, maxFutureSeconds = 5;
  const v = new DpopVerifier({ publicBaseUrl: 'http://localhost', maxAgeSeconds, maxFutureSeconds, replay, clock, notBeforeMs: now - 10_000 });
  const key = newP256();
  const token = 'tok';
  const iat = Math.floor(now / 1000) + maxFutureSeconds; // allowed: at most maxFuture ahead
  const p = proof({ key, htm: 'POST', htu: 'http://localhost/v1/x', token, iat, jti: 'jti-replay-0001' });
  const input = { proof: p, method: 'POST', path: '/v1/x', accessToken: token, expectedJkt: thumbprint(key.jwk) };

  assert.equal(await v.verify(input), input.expectedJkt); // first, legitimate use at T1

  const ttl = (maxAgeSeconds + maxFutureSeconds + 1) * 1000;
  // The replay arrives 5 ms before the replay entry expires: still inside the iat window, so it
  // must be refused as a replay...
  now = Date.UTC(2025, 0, 1, 0, 0, 0, 0) + ttl - 5;
  const second = v.verify(input);
  // ...but the ES256 check now waits in the libuv thread pool; 10 ms of queueing pass meanwhile.
  now += 10;
  let outcome: string;
  try {
    await second;
    outcome = 'accepted';
  } catch (e) {
    outcome = (e as { code?: string }).code ?? String(e);
  }
  assert.ok(outcome === 'replay_detected' || outcome === 'invalid_dpop', `the same proof (same jti) was ${outcome}`);
});
