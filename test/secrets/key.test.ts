// Key sources: systemd credential, key file, environment, in that order among those configured;
// absent sources fall through, malformed ones fail start-up; key files are 0600 and never overwritten.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateKeyFile, loadOrCreateKeyFile, loadSecretKey, SecretKeyError } from '../../src/secrets/key.ts';

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'secrets-key-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('systemd credential wins over key file and environment', (t) => {
  const dir = tmp(t);
  const creds = join(dir, 'creds');
  mkdirSync(creds);
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const k3 = randomBytes(32);
  writeFileSync(join(creds, 'secrets-key'), k1); // raw bytes, as systemd-creds produces
  writeFileSync(join(dir, 'key'), k2.toString('base64'), { mode: 0o600 });
  const env = { CREDENTIALS_DIRECTORY: creds, PORTCULLIS_SECRETS_KEY: k3.toString('base64') };
  const cfg = { systemdCredential: 'secrets-key', keyFile: join(dir, 'key'), envVar: 'PORTCULLIS_SECRETS_KEY' };
  assert.deepEqual(loadSecretKey(cfg, env), { key: k1, source: 'systemd_credential' });
  // No credentials directory (not under systemd): the key file is next.
  assert.deepEqual(loadSecretKey(cfg, { PORTCULLIS_SECRETS_KEY: k3.toString('base64') }), { key: k2, source: 'key_file' });
  // No key file either: the environment.
  assert.deepEqual(loadSecretKey({ ...cfg, keyFile: join(dir, 'missing') }, { PORTCULLIS_SECRETS_KEY: k3.toString('base64url') }), { key: k3, source: 'env' });
});

test('nothing present -> SecretKeyError naming what was tried; nothing configured -> TypeError', (t) => {
  const dir = tmp(t);
  assert.throws(() => loadSecretKey({ keyFile: join(dir, 'missing'), envVar: 'NOPE' }, {}), (e: unknown) => {
    assert.ok(e instanceof SecretKeyError);
    assert.match(e.message, /key file .*missing.*environment variable NOPE/);
    return true;
  });
  assert.throws(() => loadSecretKey({}, {}), TypeError);
  assert.throws(() => loadSecretKey({ systemdCredential: '../etc/passwd' }, {}), TypeError);
});

const malformed: Array<[string, Buffer | string]> = [
  ['16 raw bytes', randomBytes(16)],
  ['base64 of 31 bytes', randomBytes(31).toString('base64')],
  ['base64 of 33 bytes', randomBytes(33).toString('base64')],
  ['not base64', '!!!not-a-key!!!'],
  ['empty file', ''],
];
for (const [name, material] of malformed) {
  test(`malformed key material fails start-up (no fall-through): ${name}`, (t) => {
    const dir = tmp(t);
    writeFileSync(join(dir, 'key'), material, { mode: 0o600 });
    const env = { K: randomBytes(32).toString('base64') };
    assert.throws(() => loadSecretKey({ keyFile: join(dir, 'key'), envVar: 'K' }, env), SecretKeyError);
  });
}

test('environment: must be base64 of 32 bytes (32 raw characters are not a key)', () => {
  assert.throws(() => loadSecretKey({ envVar: 'K' }, { K: 'a'.repeat(32) }), SecretKeyError);
  assert.throws(() => loadSecretKey({ envVar: 'K' }, { K: randomBytes(24).toString('base64') }), SecretKeyError);
});

test('key file readable by group or others is refused', (t) => {
  const dir = tmp(t);
  const p = join(dir, 'key');
  writeFileSync(p, randomBytes(32).toString('base64'));
  for (const mode of [0o644, 0o640, 0o604]) {
    chmodSync(p, mode);
    assert.throws(() => loadSecretKey({ keyFile: p }), (e: unknown) => e instanceof SecretKeyError && /group or others/.test(e.message));
  }
  chmodSync(p, 0o600);
  assert.equal(loadSecretKey({ keyFile: p }).key.length, 32);
});

test('generateKeyFile: 0600, base64 of 32 bytes, loads back, never overwrites', (t) => {
  const p = join(tmp(t), 'secrets.key');
  const key = generateKeyFile(p);
  assert.equal(statSync(p).mode & 0o777, 0o600);
  assert.equal(Buffer.from(readFileSync(p, 'utf8').trim(), 'base64').length, 32);
  assert.deepEqual(loadSecretKey({ keyFile: p }).key, key);
  assert.throws(() => generateKeyFile(p), (e: unknown) => (e as NodeJS.ErrnoException).code === 'EEXIST');
  assert.deepEqual(loadSecretKey({ keyFile: p }).key, key, 'the existing key was not replaced');
});

test('loadOrCreateKeyFile: creates on first run, loads afterwards', (t) => {
  const p = join(tmp(t), 'secrets.key');
  const first = loadOrCreateKeyFile(p);
  const second = loadOrCreateKeyFile(p);
  assert.deepEqual(second.key, first.key);
});

test('errors never contain key material', (t) => {
  const dir = tmp(t);
  const bad = randomBytes(31).toString('base64');
  writeFileSync(join(dir, 'key'), bad, { mode: 0o600 });
  assert.throws(() => loadSecretKey({ keyFile: join(dir, 'key') }), (e: unknown) => e instanceof Error && !e.message.includes(bad));
  assert.throws(() => loadSecretKey({ envVar: 'K' }, { K: bad }), (e: unknown) => e instanceof Error && !e.message.includes(bad));
});
