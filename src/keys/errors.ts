// Start-up errors of the keystore: a closed union of codes, each naming the file and the reason.
// These are configuration failures (the gate refuses to start), never request errors.

export type KeystoreErrorCode =
  | 'key_dir_unusable'
  | 'insecure_permissions'
  | 'key_unreadable'
  | 'key_invalid'
  | 'key_missing'
  | 'key_write_failed';

/** A keystore failure at start-up or rotation, with the offending path. */
export class KeystoreError extends Error {
  readonly code: KeystoreErrorCode;
  readonly path: string;

  constructor(code: KeystoreErrorCode, path: string, reason: string, options?: { cause?: unknown }) {
    super(`${code}: ${path}: ${reason}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KeystoreError';
    this.code = code;
    this.path = path;
  }
}
