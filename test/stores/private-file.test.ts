// Gate state files are private: the ledger, state and secrets databases (and their -wal/-shm
// files) are created 0600, and a file an older version left 0644 is tightened on open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStateDb } from '../../src/stores/sqlite.ts';
import { SqliteSecretsStore } from '../../src/secrets/store.ts';
import { openDatabase } from '../../src/ledger/db.ts';
import { tempDir } from '../helpers/temp.ts';

const mode = (p: string) => statSync(p).mode & 0o777;

test('state.db and its WAL files are created 0600; a 0644 one is tightened to 0600', (t) => {
  const dir = tempDir(t, 'private-db-');
  const path = join(dir, 'state.db');
  const db = openStateDb(path);
  db.prepare("INSERT INTO kv (k, v) VALUES ('x', 'y')").run();
  for (const p of [path, `${path}-wal`, `${path}-shm`]) assert.equal(mode(p), 0o600, p);
  db.close();

  const old = join(dir, 'old.db');
  writeFileSync(old, '');
  chmodSync(old, 0o644);
  openStateDb(old).close();
  assert.equal(mode(old), 0o600);
});

test('secrets.db is created 0600', (t) => {
  const dir = tempDir(t, 'private-db-');
  const path = join(dir, 'secrets.db');
  const cipher = { encrypt: () => { throw new Error('unused'); }, decrypt: () => { throw new Error('unused'); } };
  const store = new SqliteSecretsStore({ database: path, cipher } as unknown as ConstructorParameters<typeof SqliteSecretsStore>[0]);
  assert.ok(existsSync(path));
  assert.equal(mode(path), 0o600);
  store.close();
});

test('ledger.db is created 0600; a 0644 one is tightened to 0600', async (t) => {
  const dir = tempDir(t, 'private-db-');
  const path = join(dir, 'ledger.db');
  await (await openDatabase({ kind: 'sqlite', path })).close();
  assert.equal(mode(path), 0o600);
  const old = join(dir, 'old-ledger.db');
  writeFileSync(old, '');
  chmodSync(old, 0o644);
  await (await openDatabase({ kind: 'sqlite', path: old })).close();
  assert.equal(mode(old), 0o600);
});
