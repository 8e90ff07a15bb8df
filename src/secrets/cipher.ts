// AES-256-GCM for secrets at rest: a fresh random 96-bit nonce per write, a full 128-bit tag, and the
// secret's name as additional authenticated data, so a ciphertext moved to another name, or any bit
// changed, fails to decrypt. Failures are deliberately generic.
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { GateError } from '../errors.ts';
import { SECRET_KEY_BYTES } from './key.ts';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const AAD_PREFIX = 'portcullis/secret/v1:';

/** What is stored for one secret. */
export interface EncryptedSecret {
  /** Identifies the key that wrote it (HMAC of a constant under the key; reveals nothing about it). */
  keyId: string;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

function aad(name: string): Buffer {
  return Buffer.from(AAD_PREFIX + name, 'utf8');
}

function decryptFailed(name: string): GateError {
  return new GateError('internal_error', `secret ${JSON.stringify(name)} could not be decrypted`);
}

export class SecretCipher {
  readonly #key: KeyObject;
  readonly keyId: string;

  /** Throws TypeError unless `key` is exactly 32 bytes. */
  constructor(key: Buffer) {
    if (!Buffer.isBuffer(key) || key.length !== SECRET_KEY_BYTES) throw new TypeError(`secrets key must be ${SECRET_KEY_BYTES} bytes`);
    this.#key = createSecretKey(Buffer.from(key));
    this.keyId = createHmac('sha256', this.#key).update('portcullis/secrets/key-id/v1').digest('hex').slice(0, 16);
  }

  encrypt(name: string, plaintext: string): EncryptedSecret {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(name));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { keyId: this.keyId, nonce, ciphertext, tag: cipher.getAuthTag() };
  }

  /** Decrypts or throws `internal_error` (generic message); never returns unauthenticated data. */
  decrypt(name: string, enc: EncryptedSecret): string {
    if (
      enc.keyId !== this.keyId ||
      !Buffer.isBuffer(enc.nonce) ||
      enc.nonce.length !== NONCE_BYTES ||
      !Buffer.isBuffer(enc.tag) ||
      enc.tag.length !== TAG_BYTES ||
      !Buffer.isBuffer(enc.ciphertext)
    ) {
      throw decryptFailed(name);
    }
    try {
      // authTagLength pins the tag to 16 bytes: a truncated tag is refused, not checked on fewer bits.
      const decipher = createDecipheriv('aes-256-gcm', this.#key, enc.nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(name));
      decipher.setAuthTag(enc.tag);
      const plain = Buffer.concat([decipher.update(enc.ciphertext), decipher.final()]);
      return new TextDecoder('utf-8', { fatal: true }).decode(plain);
    } catch {
      throw decryptFailed(name);
    }
  }
}
