// Secrets at rest: round trip, names-only listing, no plaintext in the database file, and every
// tampering (ciphertext, tag, nonce, key id, AAD swap between names, wrong key) failing closed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { SecretCipher } from '../../src/secrets/cipher.ts';
import { SqliteSecretsStore, validateSecretName } from '../../src/secrets/store.ts';
import { GateError } from '../../src/errors.ts';

const VALUE = 'ghp_SuperSecretValue_0123456789abcdef';

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'secrets-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function open(t: TestContext, key = randomBytes(32), path = join(tmp(t), 'gate.db')): { store: SqliteSecretsStore; db: Database.Database; path: string; key: Buffer } {
  const db = new Database(path);
  t.after(() => db.close());
  const store = new SqliteSecretsStore({ database: db, cipher: new SecretCipher(key), clock: { now: () => Date.UTC(2026, 10, 22, 12, 0, 0) } });
  return { store, db, path, key };
}

const failsClosed = (err: unknown): boolean => {
  assert.ok(err instanceof GateError);
  assert.equal(err.code, 'internal_error');
  assert.ok(!err.message.includes(VALUE));
  return true;
};

test('round trip: set, resolve, replace; absent names are missing from the map', async (t) => {
  const { store } = open(t);
  assert.deepEqual(await store.set('github_token', VALUE), { name: 'github_token', updated_at: '2026-11-22T12:00:00.000Z', created: true });
  await store.set('other', 'x');
  const got = await store.resolve(['github_token', 'other', 'nope']);
  assert.deepEqual([...got.entries()].sort(), [['github_token', VALUE], ['other', 'x']]);
  assert.equal((await store.set('other', 'y')).created, false);
  assert.equal((await store.resolve(['other'])).get('other'), 'y');
  const unicode = 'pässwörd-🔑-\n-multi-line';
  await store.set('unicode', unicode);
  assert.equal((await store.resolve(['unicode'])).get('unicode'), unicode);
});

test('list shows names and update times only; remove reports whether something was removed', async (t) => {
  const { store } = open(t);
  await store.set('b_key', VALUE);
  await store.set('a_key', VALUE);
  const listed = await store.list();
  assert.deepEqual(listed, [
    { name: 'a_key', updated_at: '2026-11-22T12:00:00.000Z' },
    { name: 'b_key', updated_at: '2026-11-22T12:00:00.000Z' },
  ]);
  assert.ok(!JSON.stringify(listed).includes(VALUE));
  assert.equal(await store.remove('a_key'), true);
  assert.equal(await store.remove('a_key'), false);
  assert.deepEqual((await store.list()).map((s) => s.name), ['b_key']);
});

test('at rest: the value is not in the database file; each write uses a fresh nonce', async (t) => {
  const { store, db, path } = open(t);
  await store.set('k', VALUE);
  const n1 = (db.prepare('SELECT nonce FROM gate_secrets WHERE name = ?').get('k') as { nonce: Buffer }).nonce;
  await store.set('k', VALUE);
  const row = db.prepare('SELECT nonce, ciphertext FROM gate_secrets WHERE name = ?').get('k') as { nonce: Buffer; ciphertext: Buffer };
  assert.equal(row.nonce.length, 12);
  assert.notDeepEqual(row.nonce, n1);
  db.pragma('wal_checkpoint(TRUNCATE)');
  const file = readFileSync(path);
  assert.equal(file.includes(Buffer.from(VALUE)), false);
  assert.equal(row.ciphertext.includes(Buffer.from(VALUE)), false);
});

type Row = { key_id: string; nonce: Buffer; ciphertext: Buffer; tag: Buffer };
const flip = (b: Buffer, i: number): Buffer => {
  const c = Buffer.from(b);
  c[i] = (c[i] ?? 0) ^ 0x01;
  return c;
};
const tampers: Array<{ name: string; edit: (r: Row) => Row }> = [
  { name: 'flipped ciphertext bit', edit: (r) => ({ ...r, ciphertext: flip(r.ciphertext, 3) }) },
  { name: 'flipped last ciphertext bit', edit: (r) => ({ ...r, ciphertext: flip(r.ciphertext, r.ciphertext.length - 1) }) },
  { name: 'truncated ciphertext', edit: (r) => ({ ...r, ciphertext: r.ciphertext.subarray(0, -1) }) },
  { name: 'appended ciphertext byte', edit: (r) => ({ ...r, ciphertext: Buffer.concat([r.ciphertext, Buffer.from([0])]) }) },
  { name: 'flipped tag bit', edit: (r) => ({ ...r, tag: flip(r.tag, 0) }) },
  { name: 'truncated tag (4 bytes would pass GCM without authTagLength)', edit: (r) => ({ ...r, tag: r.tag.subarray(0, 4) }) },
  { name: 'changed nonce', edit: (r) => ({ ...r, nonce: flip(r.nonce, 11) }) },
  { name: 'short nonce', edit: (r) => ({ ...r, nonce: r.nonce.subarray(0, 8) }) },
  { name: 'changed key id', edit: (r) => ({ ...r, key_id: 'ffffffffffffffff' }) },
];

for (const c of tampers) {
  test(`tamper detected: ${c.name} -> decryption fails closed`, async (t) => {
    const { store, db } = open(t);
    await store.set('k', VALUE);
    const row = db.prepare('SELECT key_id, nonce, ciphertext, tag FROM gate_secrets WHERE name = ?').get('k') as Row;
    const e = c.edit(row);
    db.prepare('UPDATE gate_secrets SET key_id = ?, nonce = ?, ciphertext = ?, tag = ? WHERE name = ?').run(e.key_id, e.nonce, e.ciphertext, e.tag, 'k');
    await assert.rejects(store.resolve(['k']), failsClosed);
  });
}

test('AAD swap: a ciphertext copied onto another name does not decrypt', async (t) => {
  const { store, db } = open(t);
  await store.set('victim', VALUE);
  await store.set('attacker_readable', 'harmless');
  db.prepare(
    `UPDATE gate_secrets SET nonce = (SELECT nonce FROM gate_secrets WHERE name = 'victim'),
       ciphertext = (SELECT ciphertext FROM gate_secrets WHERE name = 'victim'),
       tag = (SELECT tag FROM gate_secrets WHERE name = 'victim') WHERE name = 'attacker_readable'`,
  ).run();
  await assert.rejects(store.resolve(['attacker_readable']), failsClosed);
  // Renaming the row itself fails the same way.
  db.prepare(`DELETE FROM gate_secrets WHERE name = 'attacker_readable'`).run();
  db.prepare(`UPDATE gate_secrets SET name = 'attacker_readable' WHERE name = 'victim'`).run();
  await assert.rejects(store.resolve(['attacker_readable']), failsClosed);
});

test('wrong key: a store opened with another key cannot read (fails closed, even with the key id forged)', async (t) => {
  const { store, path, db } = open(t);
  await store.set('k', VALUE);
  const other = new SqliteSecretsStore({ database: path, cipher: new SecretCipher(randomBytes(32)) });
  t.after(() => other.close());
  await assert.rejects(other.resolve(['k']), failsClosed);
  const forged = new SecretCipher(randomBytes(32));
  db.prepare('UPDATE gate_secrets SET key_id = ?').run(forged.keyId);
  const third = new SqliteSecretsStore({ database: db, cipher: forged });
  await assert.rejects(third.resolve(['k']), failsClosed);
});

test('the same key in a new process reads what was written (persistence)', async (t) => {
  const { store, path, key } = open(t);
  await store.set('k', VALUE);
  const again = new SqliteSecretsStore({ database: path, cipher: new SecretCipher(Buffer.from(key)) });
  t.after(() => again.close());
  assert.equal((await again.resolve(['k'])).get('k'), VALUE);
});

const badNames = ['', 'UPPER', 'with-dash', 'dot.name', 'a'.repeat(65), '../etc', 'spa ce', 'ü', "x'; DROP TABLE gate_secrets; --"];
for (const name of badNames) {
  test(`secret name refused: ${JSON.stringify(name.slice(0, 20))}`, async (t) => {
    const { store } = open(t);
    assert.throws(() => validateSecretName(name), (e: unknown) => e instanceof GateError && e.code === 'invalid_input');
    await assert.rejects(store.set(name, VALUE), (e: unknown) => e instanceof GateError && e.code === 'invalid_input');
    await assert.rejects(store.resolve([name]), (e: unknown) => e instanceof GateError && e.code === 'invalid_input');
  });
}

const badValues: Array<[string, unknown, string]> = [
  ['empty', '', 'secret_value_invalid'],
  ['not a string', 42, 'secret_value_invalid'],
  ['NUL byte', 'a\u0000b', 'secret_value_invalid'],
  ['lone surrogate', 'a\ud800b', 'secret_value_invalid'],
  ['over 64 KiB', 'x'.repeat(64 * 1024 + 1), 'secret_value_too_large'],
];
for (const [name, value, reason] of badValues) {
  test(`secret value refused without echo: ${name}`, async (t) => {
    const { store } = open(t);
    await assert.rejects(store.set('k', value as string), (e: unknown) => {
      assert.ok(e instanceof GateError && e.code === 'invalid_input');
      assert.equal(e.extra?.reason, reason);
      if (typeof value === 'string' && value.length > 1) assert.ok(!JSON.stringify([e.message, e.extra]).includes(value));
      return true;
    });
  });
}

test('SecretCipher: key must be 32 bytes; nonces never repeat across many writes', () => {
  for (const n of [0, 16, 31, 33, 64]) assert.throws(() => new SecretCipher(randomBytes(n)), TypeError);
  const c = new SecretCipher(randomBytes(32));
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) seen.add(c.encrypt('k', 'v').nonce.toString('hex'));
  assert.equal(seen.size, 2000);
});
