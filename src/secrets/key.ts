// The secrets master key (32 bytes): from a systemd credential, a key file, or an environment
// variable, tried in that order among those configured. An absent source falls through; a present
// but malformed one fails start-up. Key bytes never appear in an error message.
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const SECRET_KEY_BYTES = 32;

/** Where the key may come from; at least one must be set. */
export interface SecretKeyConfig {
  /** Name of a systemd credential (`LoadCredential=`/`SetCredentialEncrypted=`), read from `$CREDENTIALS_DIRECTORY/<name>`. */
  systemdCredential?: string;
  /** Path of a key file: 32 raw bytes, or base64 text of 32 bytes. Must not be group/other accessible. */
  keyFile?: string;
  /** Name of an environment variable holding the key as base64 (or base64url). */
  envVar?: string;
}

export type SecretKeySource = 'systemd_credential' | 'key_file' | 'env';

export interface LoadedSecretKey {
  key: Buffer;
  source: SecretKeySource;
}

/** A start-up failure loading the key; names the source and the reason, never the key. */
export class SecretKeyError extends Error {
  readonly source: SecretKeySource | 'none';
  constructor(source: SecretKeySource | 'none', reason: string) {
    super(`secrets key (${source}): ${reason}`);
    this.name = 'SecretKeyError';
    this.source = source;
  }
}

/**
 * Decodes key material: base64/base64url text (whitespace-trimmed) of 32 bytes, or, for files and
 * credentials (`allowRaw`), exactly 32 raw bytes (base64 of 32 bytes is 43-44 characters, so the
 * two never collide).
 */
export function decodeSecretKey(material: Buffer, source: SecretKeySource, allowRaw = source !== 'env'): Buffer {
  if (allowRaw && material.length === SECRET_KEY_BYTES) return Buffer.from(material);
  const text = material.toString('latin1').trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) && !/^[A-Za-z0-9_-]+$/.test(text)) {
    throw new SecretKeyError(source, `must be base64 of ${SECRET_KEY_BYTES} bytes${allowRaw ? ` or ${SECRET_KEY_BYTES} raw bytes` : ''}`);
  }
  const key = Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64');
  if (key.length !== SECRET_KEY_BYTES) throw new SecretKeyError(source, `must decode to exactly ${SECRET_KEY_BYTES} bytes`);
  return key;
}

function readIfPresent(path: string, source: SecretKeySource): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SecretKeyError(source, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/**
 * Loads the key from the configured sources in order: systemd credential, key file, environment.
 * Throws SecretKeyError when a present source is malformed or no configured source is present,
 * and TypeError when nothing is configured.
 */
export function loadSecretKey(config: SecretKeyConfig, env: NodeJS.ProcessEnv = process.env): LoadedSecretKey {
  if (!config || (config.systemdCredential === undefined && config.keyFile === undefined && config.envVar === undefined)) {
    throw new TypeError('secrets key: configure systemdCredential, keyFile or envVar');
  }
  const tried: string[] = [];
  if (config.systemdCredential !== undefined) {
    const name = config.systemdCredential;
    if (!/^[A-Za-z0-9_.@-]{1,255}$/.test(name) || name === '.' || name === '..') {
      throw new TypeError('secrets key: systemdCredential must be a plain credential name');
    }
    const dir = env.CREDENTIALS_DIRECTORY;
    tried.push(`systemd credential ${name}`);
    if (dir) {
      const material = readIfPresent(join(dir, name), 'systemd_credential');
      if (material) return { key: decodeSecretKey(material, 'systemd_credential'), source: 'systemd_credential' };
    }
  }
  if (config.keyFile !== undefined) {
    const path = config.keyFile;
    tried.push(`key file ${path}`);
    const material = readIfPresent(path, 'key_file');
    if (material) {
      const st = statSync(path);
      if (!st.isFile()) throw new SecretKeyError('key_file', `${path} is not a regular file`);
      if ((st.mode & 0o077) !== 0) throw new SecretKeyError('key_file', `${path} is accessible by group or others (chmod 600)`);
      return { key: decodeSecretKey(material, 'key_file'), source: 'key_file' };
    }
  }
  if (config.envVar !== undefined) {
    tried.push(`environment variable ${config.envVar}`);
    const value = env[config.envVar];
    if (value !== undefined && value !== '') {
      return { key: decodeSecretKey(Buffer.from(value, 'latin1'), 'env'), source: 'env' };
    }
  }
  throw new SecretKeyError('none', `no key found (tried ${tried.join(', ')})`);
}

/**
 * Creates a new key file (embedded mode): 32 random bytes as base64, mode 0600, never overwriting
 * an existing file (EEXIST is thrown). Returns the key.
 */
export function generateKeyFile(path: string): Buffer {
  const key = randomBytes(SECRET_KEY_BYTES);
  const fd = openSync(path, 'wx', 0o600);
  try {
    // The umask can only remove bits from 0600; check anyway so a weaker file is never used.
    if ((fstatSync(fd).mode & 0o077) !== 0) throw new SecretKeyError('key_file', `${path} was created group/other accessible`);
    writeSync(fd, `${key.toString('base64')}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return key;
}

/** Embedded mode: loads the key file, creating it (0600) on first run. */
export function loadOrCreateKeyFile(path: string): LoadedSecretKey {
  try {
    return { key: generateKeyFile(path), source: 'key_file' };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return loadSecretKey({ keyFile: path });
  }
}
