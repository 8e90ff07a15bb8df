// The write-only secrets store: values go in encrypted (AES-256-GCM, name-bound), only names and
// timestamps come out, and `resolve` (the pipeline's secret stage) is the one way back to a value.
// The interface is storage-neutral; this file holds the embedded SQLite implementation.
import { ensurePrivateDbFile } from '../stores/private-file.ts';
import Database from 'better-sqlite3';
import { GateError } from '../errors.ts';
import { systemClock, type Clock } from '../contracts.ts';
import type { SecretCipher } from './cipher.ts';

/** What listing a secret shows: never the value. */
export interface SecretInfo {
  name: string;
  /** ISO 8601. */
  updated_at: string;
}

/** Storage-neutral secrets store (SQLite here; a kysely/PostgreSQL implementation fits the same shape). */
export interface SecretsStore {
  /** Creates or replaces a secret. `created` is false when an existing value was replaced. */
  set(name: string, value: string): Promise<SecretInfo & { created: boolean }>;
  /** Names and update times, sorted by name. */
  list(): Promise<SecretInfo[]>;
  /** True when a secret was removed, false when there was none. */
  remove(name: string): Promise<boolean>;
  /** Decrypted values of the named secrets that exist (absent names are simply missing from the map). */
  resolve(names: readonly string[]): Promise<Map<string, string>>;
}

export const SECRET_NAME = /^[a-z0-9_]{1,64}$/;
export const MAX_SECRET_VALUE_BYTES = 64 * 1024;

/** Returns the name or throws `invalid_input` (`secret_name_invalid`). */
export function validateSecretName(name: unknown): string {
  if (typeof name !== 'string' || !SECRET_NAME.test(name)) {
    throw new GateError('invalid_input', 'invalid secret name', { extra: { reason: 'secret_name_invalid' } });
  }
  return name;
}

/** Returns the value or throws `invalid_input` with a reason; the value itself is never echoed. */
export function validateSecretValue(value: unknown): string {
  const bad = (reason: string): GateError => new GateError('invalid_input', 'invalid secret value', { extra: { reason } });
  if (typeof value !== 'string' || value.length === 0) throw bad('secret_value_invalid');
  if (value.includes('\u0000')) throw bad('secret_value_invalid');
  // Lone surrogates would be silently replaced on encoding: refuse rather than store something else.
  if (Buffer.from(value, 'utf8').toString('utf8') !== value) throw bad('secret_value_invalid');
  if (Buffer.byteLength(value, 'utf8') > MAX_SECRET_VALUE_BYTES) throw bad('secret_value_too_large');
  return value;
}

export interface SqliteSecretsStoreOptions {
  /** A database file path (opened and owned by the store) or an open better-sqlite3 handle (not closed by it). */
  database: string | Database.Database;
  cipher: SecretCipher;
  clock?: Clock;
}

interface Row {
  name: string;
  key_id: string;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  updated_at: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS gate_secrets (
  name        TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
  key_id      TEXT NOT NULL,
  nonce       BLOB NOT NULL,
  ciphertext  BLOB NOT NULL,
  tag         BLOB NOT NULL,
  updated_at  TEXT NOT NULL
) STRICT`;

/** Embedded-mode secrets store in a SQLite table (`gate_secrets`). */
export class SqliteSecretsStore implements SecretsStore {
  readonly #db: Database.Database;
  readonly #owned: boolean;
  readonly #cipher: SecretCipher;
  readonly #clock: Clock;

  constructor(options: SqliteSecretsStoreOptions) {
    this.#owned = typeof options.database === 'string';
    if (typeof options.database === 'string') ensurePrivateDbFile(options.database);
    this.#db = typeof options.database === 'string' ? new Database(options.database) : options.database;
    if (this.#owned) this.#db.pragma('busy_timeout = 5000');
    this.#cipher = options.cipher;
    this.#clock = options.clock ?? systemClock;
    this.#db.exec(SCHEMA);
  }

  async set(name: string, value: string): Promise<SecretInfo & { created: boolean }> {
    validateSecretName(name);
    validateSecretValue(value);
    const enc = this.#cipher.encrypt(name, value);
    const updated_at = new Date(this.#clock.now()).toISOString();
    const write = this.#db.transaction(() => {
      const existed = this.#db.prepare('SELECT 1 FROM gate_secrets WHERE name = ?').get(name) !== undefined;
      this.#db
        .prepare(
          `INSERT INTO gate_secrets (name, key_id, nonce, ciphertext, tag, updated_at) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(name) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, tag = excluded.tag, updated_at = excluded.updated_at`,
        )
        .run(name, enc.keyId, enc.nonce, enc.ciphertext, enc.tag, updated_at);
      return !existed;
    });
    return { name, updated_at, created: write() };
  }

  async list(): Promise<SecretInfo[]> {
    return this.#db.prepare('SELECT name, updated_at FROM gate_secrets ORDER BY name').all() as SecretInfo[];
  }

  async remove(name: string): Promise<boolean> {
    validateSecretName(name);
    return this.#db.prepare('DELETE FROM gate_secrets WHERE name = ?').run(name).changes > 0;
  }

  async resolve(names: readonly string[]): Promise<Map<string, string>> {
    const wanted = [...new Set(names.map(validateSecretName))];
    const out = new Map<string, string>();
    if (wanted.length === 0) return out;
    const rows = this.#db
      .prepare(`SELECT * FROM gate_secrets WHERE name IN (${wanted.map(() => '?').join(', ')})`)
      .all(...wanted) as Row[];
    for (const row of rows) {
      out.set(row.name, this.#cipher.decrypt(row.name, { keyId: row.key_id, nonce: row.nonce, ciphertext: row.ciphertext, tag: row.tag }));
    }
    return out;
  }

  /** Closes the database when the store opened it. */
  close(): void {
    if (this.#owned) this.#db.close();
  }
}
