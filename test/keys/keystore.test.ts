// Keystore: generated once and reused, private file modes, separate keys per purpose, receipt-key
// rotation with every historical public key kept, and start-up refusals with a code and the path.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey, generateKeyPairSync, verify as cryptoVerify } from 'node:crypto';
import { SignJWT, jwtVerify, createLocalJWKSet } from 'jose';
import { openKeystore, KeystoreError, jwkThumbprint, PublicKeySet, type KeyPurpose } from '../../src/keys/index.ts';

const frozen = { now: () => Date.parse('2026-11-22T13:00:00.000Z') };

function tempDir(t: { after(fn: () => void): void }): string {
  const base = mkdtempSync(join(tmpdir(), 'portcullis-keys-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  return join(base, 'keys');
}

const PURPOSES: KeyPurpose[] = ['grant', 'receipt', 'checkpoint', 'lease'];

describe('keystore first run and reuse', () => {
  test('generates four keys with private modes and stable kids, reused after a restart', async (t) => {
    const dir = tempDir(t);
    const ks = await openKeystore({ dir, clock: frozen });
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const p of PURPOSES) {
      assert.equal(statSync(ks.pathOf(p)).mode & 0o777, 0o600, `${p} key mode`);
      const key = ks[p === 'receipt' ? 'receipt' : p];
      assert.match(key.kid, new RegExp(`^${p}-2026-11-[A-Za-z0-9_-]{16}$`));
      assert.ok(key.kid.endsWith(jwkThumbprint(key.publicJwk).slice(0, 16)));
    }
    for (const f of ['receipt.history.json', 'checkpoint.history.json']) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600);
    assert.equal(ks.grant.alg, 'EdDSA');
    assert.equal(ks.lease.alg, 'ES256');

    const again = await openKeystore({ dir, clock: { now: () => Date.parse('2027-03-01T00:00:00Z') } });
    for (const p of PURPOSES) {
      assert.equal(again[p].kid, ks[p].kid, `${p} kid stable across restart`);
      assert.deepEqual(again[p].publicJwk, ks[p].publicJwk);
    }
  });

  test('every purpose has its own key', async (t) => {
    const ks = await openKeystore({ dir: tempDir(t) });
    const xs = new Set(PURPOSES.map((p) => ks[p].publicJwk.x));
    assert.equal(xs.size, 4);
  });

  test('two processes opening an empty directory at once end with one set of keys', async (t) => {
    const dir = tempDir(t);
    const [a, b] = await Promise.all([openKeystore({ dir }), openKeystore({ dir })]);
    for (const p of PURPOSES) assert.equal(a[p].kid, b[p].kid);
    const c = await openKeystore({ dir });
    for (const p of PURPOSES) assert.equal(c[p].kid, a[p].kid);
  });

  test('JWKS shapes: receipt/checkpoint OKP EdDSA, lease EC ES256, all use sig', async (t) => {
    const ks = await openKeystore({ dir: tempDir(t) });
    for (const jwks of [ks.receiptJwks(), ks.checkpointJwks(), ks.grantJwks()]) {
      assert.equal(jwks.keys.length, 1);
      const k = jwks.keys[0]!;
      assert.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
      assert.equal(k.kty, 'OKP');
      assert.equal(k.alg, 'EdDSA');
      assert.equal(k.use, 'sig');
      assert.ok(!('d' in k));
    }
    const lease = ks.leaseJwks().keys[0]!;
    assert.deepEqual(Object.keys(lease).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    assert.equal(lease.kty, 'EC');
    assert.equal(lease.alg, 'ES256');
  });
});

describe('signing with cached KeyObjects', () => {
  test('Ed25519 signatures verify with the served public JWK alone', async (t) => {
    const ks = await openKeystore({ dir: tempDir(t) });
    const data = Buffer.from('portcullis-test\n{}');
    for (const key of [ks.grant, ks.receipt, ks.checkpoint]) {
      const sig = key.sign(data);
      assert.equal(sig.length, 64);
      const pub = createPublicKey({ key: { ...key.publicJwk }, format: 'jwk' });
      assert.equal(cryptoVerify(null, data, pub, sig), true);
      assert.equal(cryptoVerify(null, Buffer.from('other'), pub, sig), false);
    }
  });

  test('the lease key signs ES256 JWTs that jose verifies against leaseJwks()', async (t) => {
    const ks = await openKeystore({ dir: tempDir(t) });
    const jwt = await new SignJWT({ sub: 'agent' }).setProtectedHeader({ alg: 'ES256', kid: ks.lease.kid }).sign(ks.lease.privateKey);
    const { payload } = await jwtVerify(jwt, createLocalJWKSet(ks.leaseJwks()));
    assert.equal(payload.sub, 'agent');
    const raw = ks.lease.sign(Buffer.from('x'));
    assert.equal(raw.length, 64);
    assert.equal(cryptoVerify('sha256', Buffer.from('x'), { key: ks.lease.publicKey, dsaEncoding: 'ieee-p1363' }, raw), true);
  });
});

describe('receipt key rotation', () => {
  test('rotation makes a new active key and keeps every old public key, across restarts', async (t) => {
    const dir = tempDir(t);
    const ks = await openKeystore({ dir, clock: frozen });
    const first = ks.receipt;
    const second = await ks.rotateReceiptKey();
    const third = await ks.rotateReceiptKey();
    assert.notEqual(second.kid, first.kid);
    assert.equal(ks.receipt.kid, third.kid);
    assert.deepEqual(ks.receiptJwks().keys.map((k) => k.kid), [first.kid, second.kid, third.kid]);
    assert.equal(ks.receiptKeys().size, 3);
    const sig = first.sign(Buffer.from('old'));
    assert.equal(ks.receiptKeys().verifyEd25519Hex(first.kid, Buffer.from('old'), sig.toString('hex')), 'verified');

    const reopened = await openKeystore({ dir });
    assert.equal(reopened.receipt.kid, third.kid);
    assert.deepEqual(reopened.receiptJwks().keys.map((k) => k.kid), [first.kid, second.kid, third.kid]);
    // Other purposes are untouched by rotation.
    assert.equal(reopened.checkpoint.kid, ks.checkpoint.kid);
    assert.equal(reopened.grant.kid, ks.grant.kid);
  });

  test('concurrent rotations are serialized and each key lands in the history', async (t) => {
    const ks = await openKeystore({ dir: tempDir(t) });
    const keys = await Promise.all([ks.rotateReceiptKey(), ks.rotateReceiptKey(), ks.rotateReceiptKey()]);
    assert.equal(new Set(keys.map((k) => k.kid)).size, 3);
    assert.equal(ks.receiptJwks().keys.length, 4);
    assert.equal(ks.receipt.kid, keys[2]!.kid);
  });
});

describe('provisioned keys at configured paths', () => {
  test('a PKCS#8 PEM (e.g. a systemd credential) is used with kid <purpose>-<thumbprint>', async (t) => {
    const dir = tempDir(t);
    const cred = join(dir, '..', 'credentials');
    mkdirSync(cred, { mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    const pemPath = join(cred, 'receipt-key');
    writeFileSync(pemPath, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o400 });
    const ks = await openKeystore({ dir, paths: { receipt: pemPath } });
    assert.match(ks.receipt.kid, /^receipt-[A-Za-z0-9_-]{16}$/);
    assert.equal(ks.receipt.createdAt, null);
    assert.deepEqual(ks.receipt.publicJwk.x, (createPublicKey(privateKey).export({ format: 'jwk' }) as { x: string }).x);
    const again = await openKeystore({ dir, paths: { receipt: pemPath } });
    assert.equal(again.receipt.kid, ks.receipt.kid);
  });
});

interface BadCase {
  name: string;
  setup(dir: string): Promise<Parameters<typeof openKeystore>[0]> | Parameters<typeof openKeystore>[0];
  code: string;
  path?: (dir: string) => string;
}

const bad: BadCase[] = [
  {
    name: 'key directory readable by others is refused',
    setup: (dir) => { mkdirSync(dir, { mode: 0o755 }); chmodSync(dir, 0o755); return { dir }; },
    code: 'insecure_permissions',
    path: (dir) => dir,
  },
  {
    name: 'world-readable private key file is refused (key theft by a local user)',
    setup: async (dir) => { await openKeystore({ dir }); chmodSync(join(dir, 'grant.key'), 0o644); return { dir }; },
    code: 'insecure_permissions',
    path: (dir) => join(dir, 'grant.key'),
  },
  {
    name: 'garbage key file is refused',
    setup: (dir) => { mkdirSync(dir, { mode: 0o700 }); writeFileSync(join(dir, 'checkpoint.key'), 'not a key', { mode: 0o600 }); return { dir }; },
    code: 'key_invalid',
    path: (dir) => join(dir, 'checkpoint.key'),
  },
  {
    name: 'an EC key where an Ed25519 receipt key is expected is refused (algorithm confusion)',
    setup: (dir) => {
      mkdirSync(dir, { mode: 0o700 });
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      writeFileSync(join(dir, 'receipt.key'), privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      return { dir };
    },
    code: 'key_invalid',
  },
  {
    name: 'an Ed25519 key where the ES256 lease key is expected is refused',
    setup: (dir) => {
      mkdirSync(dir, { mode: 0o700 });
      const { privateKey } = generateKeyPairSync('ed25519');
      writeFileSync(join(dir, 'lease.key'), privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      return { dir };
    },
    code: 'key_invalid',
  },
  {
    name: 'a key record whose kid was edited to impersonate another key is refused',
    setup: async (dir) => {
      await openKeystore({ dir });
      const p = join(dir, 'receipt.key');
      const rec = JSON.parse(readFileSync(p, 'utf8')) as { kid: string };
      rec.kid = 'receipt-2026-11-AAAAAAAAAAAAAAAA';
      writeFileSync(p, JSON.stringify(rec), { mode: 0o600 });
      return { dir };
    },
    code: 'key_invalid',
  },
  {
    name: 'a record for another purpose is refused (grant key copied over the receipt key)',
    setup: async (dir) => {
      await openKeystore({ dir });
      writeFileSync(join(dir, 'receipt.key'), readFileSync(join(dir, 'grant.key')), { mode: 0o600 });
      return { dir };
    },
    code: 'key_invalid',
  },
  {
    name: 'one PEM configured for two purposes is refused',
    setup: (dir) => {
      mkdirSync(dir, { mode: 0o700 });
      const { privateKey } = generateKeyPairSync('ed25519');
      const p = join(dir, 'shared.pem');
      writeFileSync(p, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      return { dir, paths: { grant: p, checkpoint: p } };
    },
    code: 'key_invalid',
  },
  {
    name: 'a missing key with generation disabled is refused',
    setup: (dir) => ({ dir, generate: false }),
    code: 'key_missing',
  },
  {
    name: 'a history with a different key under the active kid is refused (substituted verifying key)',
    setup: async (dir) => {
      const ks = await openKeystore({ dir });
      const other = await openKeystore({ dir: `${dir}-other` });
      const h = join(dir, 'receipt.history.json');
      const doc = JSON.parse(readFileSync(h, 'utf8')) as { keys: Array<{ kid: string; x: string }> };
      doc.keys[0]!.x = other.receipt.publicJwk.x;
      doc.keys[0]!.kid = ks.receipt.kid;
      writeFileSync(h, JSON.stringify(doc), { mode: 0o600 });
      return { dir };
    },
    code: 'key_invalid',
  },
];

describe('start-up refusals', () => {
  for (const c of bad) {
    test(c.name, async (t) => {
      const dir = tempDir(t);
      t.after(() => rmSync(`${dir}-other`, { recursive: true, force: true }));
      const opts = await c.setup(dir);
      await assert.rejects(openKeystore(opts), (err: unknown) => {
        assert.ok(err instanceof KeystoreError, String(err));
        assert.equal(err.code, c.code);
        if (c.path) assert.equal(err.path, c.path(dir));
        return true;
      });
    });
  }
});

describe('PublicKeySet', () => {
  test('rejects two different keys under one kid and malformed keys', async (t) => {
    const a = await openKeystore({ dir: tempDir(t) });
    const dup = { ...a.grant.publicJwk, x: a.receipt.publicJwk.x };
    assert.throws(() => new PublicKeySet([a.grant.publicJwk, dup]), TypeError);
    assert.throws(() => new PublicKeySet({ keys: [{ kty: 'RSA', kid: 'r' }] } as never), TypeError);
    assert.throws(() => new PublicKeySet({ keys: [{ ...a.grant.publicJwk, x: 'short' }] }), TypeError);
  });

  const sigCases = [
    { name: 'unknown kid', kid: 'nope', sig: (s: string) => s, want: 'unknown_kid' },
    { name: 'non-string kid', kid: 42, sig: (s: string) => s, want: 'unknown_kid' },
    { name: 'flipped signature bit', kid: undefined, sig: (s: string) => (s[0] === '0' ? '1' : '0') + s.slice(1), want: 'signature_invalid' },
    { name: 'uppercase hex is not canonical', kid: undefined, sig: (s: string) => s.toUpperCase(), want: 'signature_invalid' },
    { name: 'truncated signature', kid: undefined, sig: (s: string) => s.slice(2), want: 'signature_invalid' },
    { name: 'valid', kid: undefined, sig: (s: string) => s, want: 'verified' },
  ];
  for (const c of sigCases) {
    test(`verifyEd25519Hex: ${c.name}`, async (t) => {
      const ks = await openKeystore({ dir: tempDir(t) });
      const data = Buffer.from('data');
      const hex = ks.grant.sign(data).toString('hex');
      assert.match(hex, /[a-f]/); // (10/16)^128: never fails in practice; keeps the uppercase case honest
      const kid = c.kid === undefined ? ks.grant.kid : c.kid;
      assert.equal(ks.grantKeys().verifyEd25519Hex(kid, data, c.sig(hex)), c.want);
    });
  }

  test('a kid naming a P-256 key is no usable Ed25519 key (unknown_kid)', async (t) => {
    const ks = await openKeystore({ dir: tempDir(t) });
    const set = new PublicKeySet(ks.leaseJwks());
    assert.equal(set.verifyEd25519Hex(ks.lease.kid, Buffer.from('x'), '00'.repeat(64)), 'unknown_kid');
  });
});
