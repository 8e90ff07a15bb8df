// The gate's signing keys, persisted in a private directory (0700, files 0600): Ed25519 keys for
// grants, receipts and checkpoints and the ES256 lease key, each with a stable kid. Keys are
// generated on first run and reused after; receipt keys rotate and every historical public key is kept.
import { generateKeyPairSync, createPrivateKey, createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { systemClock, type Clock } from '../contracts.ts';
import { KeystoreError } from './errors.ts';
import { ensurePrivateDir, readPrivateFile, createPrivateFileExclusive, replacePrivateFile } from './files.ts';
import {
  KEY_PURPOSES, algForPurpose, jwkThumbprint, kidMatchesKey, makeKid, parsePublicJwk, publicJwkOf,
  type Jwks, type KeyPurpose, type PublicJwk,
} from './jwk.ts';
import { PublicKeySet } from './key-set.ts';

/** One private signing key, imported once into node:crypto KeyObjects. */
export interface SigningKey {
  readonly purpose: KeyPurpose;
  readonly kid: string;
  readonly alg: 'EdDSA' | 'ES256';
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly publicJwk: PublicJwk;
  /** ISO 8601 creation time for generated keys; null for provisioned PEM keys. */
  readonly createdAt: string | null;
  /** Raw signature over `data`: 64 bytes Ed25519, or 64 bytes IEEE P1363 (r||s) for ES256. */
  sign(data: Uint8Array): Buffer;
}

export interface KeystoreOptions {
  /** Directory for generated keys and public-key histories; created with mode 0700. */
  dir: string;
  /**
   * Override the private key file of a purpose (e.g. a systemd credential such as
   * `$CREDENTIALS_DIRECTORY/receipt-key`). Accepts our key record or a PKCS#8 PEM; must not be
   * readable by group or others. Rotation needs the receipt path to be writable.
   */
  paths?: Partial<Record<KeyPurpose, string>>;
  /** Generate a key whose file is missing (default true). With false a missing key is `key_missing`. */
  generate?: boolean;
  clock?: Clock;
}

/** Purposes whose historical public keys are kept (receipts and checkpoints outlive their key). */
const HISTORY_PURPOSES = ['receipt', 'checkpoint'] as const;
type HistoryPurpose = (typeof HISTORY_PURPOSES)[number];

const RECORD_FORMAT = 'portcullis-key-v1';
const HISTORY_FORMAT = 'portcullis-public-keys-v1';

interface KeyRecord {
  format: typeof RECORD_FORMAT;
  purpose: KeyPurpose;
  kid: string;
  created_at: string;
  private_key_pem: string;
}

function makeSigningKey(purpose: KeyPurpose, privateKey: KeyObject, kid: string, createdAt: string | null): SigningKey {
  const publicKey = createPublicKey(privateKey);
  const alg = algForPurpose(purpose);
  const publicJwk = publicJwkOf(publicKey, kid);
  const algorithm = alg === 'EdDSA' ? null : 'sha256';
  const key = alg === 'EdDSA' ? privateKey : { key: privateKey, dsaEncoding: 'ieee-p1363' as const };
  const sign = (data: Uint8Array) => cryptoSign(algorithm, data, key);
  return Object.freeze({ purpose, kid, alg, privateKey, publicKey, publicJwk, createdAt, sign });
}

function checkKeyType(purpose: KeyPurpose, key: KeyObject, path: string): void {
  const ok = algForPurpose(purpose) === 'EdDSA'
    ? key.asymmetricKeyType === 'ed25519'
    : key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  if (!ok) throw new KeystoreError('key_invalid', path, `${purpose} key must be ${purpose === 'lease' ? 'EC P-256' : 'Ed25519'}`);
}

function generateKey(purpose: KeyPurpose, clock: Clock): { key: SigningKey; record: KeyRecord } {
  const pair = algForPurpose(purpose) === 'EdDSA'
    ? generateKeyPairSync('ed25519')
    : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const createdAt = new Date(clock.now()).toISOString();
  const thumb = jwkThumbprint(publicJwkOf(pair.publicKey, 'tmp'));
  const kid = makeKid(purpose, thumb, createdAt);
  const record: KeyRecord = {
    format: RECORD_FORMAT,
    purpose,
    kid,
    created_at: createdAt,
    private_key_pem: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
  return { key: makeSigningKey(purpose, pair.privateKey, kid, createdAt), record };
}

/** Parses a key file: our JSON record, or a bare PKCS#8 PEM (kid derived from the thumbprint). */
function parseKeyFile(purpose: KeyPurpose, path: string, text: string): SigningKey {
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN')) {
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: trimmed, format: 'pem' });
    } catch (cause) {
      throw new KeystoreError('key_invalid', path, 'PEM does not parse as a private key', { cause });
    }
    checkKeyType(purpose, key, path);
    const kid = makeKid(purpose, jwkThumbprint(publicJwkOf(key, 'tmp')), null);
    return makeSigningKey(purpose, key, kid, null);
  }
  let rec: Partial<KeyRecord>;
  try {
    rec = JSON.parse(trimmed) as Partial<KeyRecord>;
  } catch (cause) {
    throw new KeystoreError('key_invalid', path, 'neither a key record nor a PEM', { cause });
  }
  if (rec.format !== RECORD_FORMAT || rec.purpose !== purpose || typeof rec.kid !== 'string'
    || typeof rec.private_key_pem !== 'string' || typeof rec.created_at !== 'string'
    || Number.isNaN(Date.parse(rec.created_at))) {
    throw new KeystoreError('key_invalid', path, `not a ${purpose} key record`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: rec.private_key_pem, format: 'pem' });
  } catch (cause) {
    throw new KeystoreError('key_invalid', path, 'private key does not parse', { cause });
  }
  checkKeyType(purpose, key, path);
  // The kid is bound to the key material: a kid that does not end in the key's thumbprint is refused.
  if (!kidMatchesKey(rec.kid, purpose, jwkThumbprint(publicJwkOf(key, 'tmp')))) {
    throw new KeystoreError('key_invalid', path, 'kid does not match the key');
  }
  return makeSigningKey(purpose, key, rec.kid, rec.created_at);
}

function parseHistory(purpose: HistoryPurpose, path: string, text: string): PublicJwk[] {
  let doc: { format?: unknown; purpose?: unknown; keys?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (cause) {
    throw new KeystoreError('key_invalid', path, 'public key history is not JSON', { cause });
  }
  if (doc.format !== HISTORY_FORMAT || doc.purpose !== purpose || !Array.isArray(doc.keys)) {
    throw new KeystoreError('key_invalid', path, `not a ${purpose} public key history`);
  }
  const keys: PublicJwk[] = [];
  for (const raw of doc.keys) {
    const jwk = parsePublicJwk(raw);
    if (!jwk || jwk.kty !== 'OKP' || !kidMatchesKey(jwk.kid, purpose, jwkThumbprint(jwk))) {
      throw new KeystoreError('key_invalid', path, 'public key history holds an invalid key');
    }
    keys.push(jwk);
  }
  return keys;
}

function historyText(purpose: HistoryPurpose, keys: readonly PublicJwk[]): string {
  return `${JSON.stringify({ format: HISTORY_FORMAT, purpose, keys }, null, 2)}\n`;
}

function recordText(record: KeyRecord): string {
  return `${JSON.stringify(record, null, 2)}\n`;
}

/**
 * The loaded keystore. Private keys never leave it except as KeyObjects for signing (the lease key
 * is handed to jose). Public keys are served as JWKS.
 */
export class Keystore {
  readonly dir: string;
  readonly grant: SigningKey;
  readonly checkpoint: SigningKey;
  readonly lease: SigningKey;
  readonly #paths: Record<KeyPurpose, string>;
  readonly #clock: Clock;
  #receipt: SigningKey;
  readonly #history: Record<HistoryPurpose, PublicJwk[]>;
  readonly #sets: Partial<Record<KeyPurpose, PublicKeySet>> = {};
  #rotation: Promise<unknown> = Promise.resolve();

  /** @internal use {@link openKeystore}. */
  constructor(init: {
    dir: string; paths: Record<KeyPurpose, string>; clock: Clock;
    keys: Record<KeyPurpose, SigningKey>; history: Record<HistoryPurpose, PublicJwk[]>;
  }) {
    this.dir = init.dir;
    this.#paths = init.paths;
    this.#clock = init.clock;
    this.grant = init.keys.grant;
    this.checkpoint = init.keys.checkpoint;
    this.lease = init.keys.lease;
    this.#receipt = init.keys.receipt;
    this.#history = init.history;
  }

  /** The active receipt signing key (changes on rotation). */
  get receipt(): SigningKey {
    return this.#receipt;
  }

  /** Path of a purpose's private key file. */
  pathOf(purpose: KeyPurpose): string {
    return this.#paths[purpose];
  }

  /**
   * Makes a new active receipt key. The new public key is added to the history before the private
   * key is swapped, so a crash in between leaves an unused public key, never an unverifiable receipt.
   * The previous private key is destroyed (overwritten); its public key stays in `receiptJwks()`.
   */
  rotateReceiptKey(): Promise<SigningKey> {
    const run = this.#rotation.then(async () => {
      const { key, record } = generateKey('receipt', this.#clock);
      const history = [...this.#history.receipt, key.publicJwk];
      await replacePrivateFile(this.#historyPath('receipt'), historyText('receipt', history));
      this.#history.receipt = history;
      delete this.#sets.receipt;
      await replacePrivateFile(this.#paths.receipt, recordText(record));
      this.#receipt = key;
      return key;
    });
    this.#rotation = run.catch(() => undefined);
    return run;
  }

  /** Every receipt public key ever active (oldest first), as served at `/v1/receipt-keys`. */
  receiptJwks(): Jwks {
    return { keys: this.#history.receipt.map((k) => ({ ...k })) };
  }

  /** Every checkpoint public key ever active (oldest first). */
  checkpointJwks(): Jwks {
    return { keys: this.#history.checkpoint.map((k) => ({ ...k })) };
  }

  /** The grant public key. */
  grantJwks(): Jwks {
    return { keys: [{ ...this.grant.publicJwk }] };
  }

  /** The lease public key, as served at `/.well-known/jwks.json`. */
  leaseJwks(): Jwks {
    return { keys: [{ ...this.lease.publicJwk }] };
  }

  /** Cached verification set for receipts (all historical keys). */
  receiptKeys(): PublicKeySet {
    return (this.#sets.receipt ??= new PublicKeySet(this.#history.receipt));
  }

  /** Cached verification set for checkpoints and bundles (all historical keys). */
  checkpointKeys(): PublicKeySet {
    return (this.#sets.checkpoint ??= new PublicKeySet(this.#history.checkpoint));
  }

  /** Cached verification set for grants. */
  grantKeys(): PublicKeySet {
    return (this.#sets.grant ??= new PublicKeySet([this.grant.publicJwk]));
  }

  #historyPath(purpose: HistoryPurpose): string {
    return join(this.dir, `${purpose}.history.json`);
  }
}

async function loadOrCreate(purpose: KeyPurpose, path: string, generate: boolean, clock: Clock): Promise<SigningKey> {
  const existing = await readPrivateFile(path);
  if (existing !== undefined) return parseKeyFile(purpose, path, existing);
  if (!generate) throw new KeystoreError('key_missing', path, `no ${purpose} key and generation is disabled`);
  const { key, record } = generateKey(purpose, clock);
  if (await createPrivateFileExclusive(path, recordText(record))) return key;
  // Another process created it between our read and our link(): use theirs.
  const theirs = await readPrivateFile(path);
  if (theirs === undefined) throw new KeystoreError('key_unreadable', path, 'key vanished after creation');
  return parseKeyFile(purpose, path, theirs);
}

async function loadHistory(purpose: HistoryPurpose, path: string, active: SigningKey): Promise<PublicJwk[]> {
  const text = await readPrivateFile(path);
  const keys = text === undefined ? [] : parseHistory(purpose, path, text);
  const same = keys.find((k) => k.kid === active.kid);
  if (same && same.x !== active.publicJwk.x) throw new KeystoreError('key_invalid', path, `history has a different key under ${active.kid}`);
  if (!same) {
    keys.push(active.publicJwk);
    await replacePrivateFile(path, historyText(purpose, keys));
  }
  return keys;
}

/**
 * Opens (and on first run creates) the keystore. Fails at start-up with a {@link KeystoreError}
 * naming the file and the reason: loose permissions, a key of the wrong type, a kid that does not
 * match its key, a missing key with generation disabled.
 */
export async function openKeystore(options: KeystoreOptions): Promise<Keystore> {
  if (typeof options?.dir !== 'string' || options.dir.length === 0) throw new TypeError('keystore dir is required');
  const clock = options.clock ?? systemClock;
  const generate = options.generate ?? true;
  await ensurePrivateDir(options.dir);
  const paths = {} as Record<KeyPurpose, string>;
  for (const p of KEY_PURPOSES) paths[p] = options.paths?.[p] ?? join(options.dir, `${p}.key`);
  const keys = {} as Record<KeyPurpose, SigningKey>;
  for (const p of KEY_PURPOSES) keys[p] = await loadOrCreate(p, paths[p], generate, clock);
  const history = {} as Record<HistoryPurpose, PublicJwk[]>;
  for (const p of HISTORY_PURPOSES) history[p] = await loadHistory(p, join(options.dir, `${p}.history.json`), keys[p]);
  // Separate keys per purpose: one key file reused for two purposes is refused.
  const material = new Set(KEY_PURPOSES.map((p) => keys[p].publicJwk.x));
  if (material.size !== KEY_PURPOSES.length) throw new KeystoreError('key_invalid', options.dir, 'two purposes share one key');
  return new Keystore({ dir: options.dir, paths, clock, keys, history });
}
