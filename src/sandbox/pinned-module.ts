// A provider module pinned to its manifest digest. The bytes are verified when the module is
// loaded and again before every instantiation: the in-memory copy is re-hashed, and the file it came
// from is stat-checked (dev, inode, size, mtime, ctime) and re-hashed whenever any of those changed,
// so a module swapped or edited under a running gate is detected on its next call.
import { createHash } from 'node:crypto';
import { readFileSync, statSync, type BigIntStats } from 'node:fs';
import { GateError } from '../errors.ts';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

function identity(st: BigIntStats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

function mismatch(actionId: string, why: string): GateError {
  return new GateError('action_digest_mismatch', `${actionId}: provider module ${why}`);
}

/** The verified original bytes of one action's module, and where they came from. */
export class PinnedModule {
  readonly actionId: string;
  readonly digest: string;
  readonly path: string | undefined;
  readonly #bytes: Uint8Array;
  #identity: FileIdentity | undefined;

  private constructor(actionId: string, digest: string, bytes: Uint8Array, path: string | undefined, id: FileIdentity | undefined) {
    this.actionId = actionId;
    this.digest = digest;
    this.#bytes = bytes;
    this.path = path;
    this.#identity = id;
  }

  /** Pins bytes held in memory (copied). Throws `action_digest_mismatch` when they do not hash to `digest`. */
  static fromBytes(actionId: string, digest: string, bytes: Uint8Array): PinnedModule {
    if (!DIGEST.test(digest)) throw new TypeError(`malformed digest for ${actionId}`);
    const copy = new Uint8Array(bytes);
    if (sha256Digest(copy) !== digest) throw mismatch(actionId, 'bytes do not match the pinned digest');
    return new PinnedModule(actionId, digest, copy, undefined, undefined);
  }

  /** Reads and pins a module file. Throws `action_digest_mismatch` when unreadable or not matching. */
  static fromFile(actionId: string, digest: string, path: string): PinnedModule {
    if (!DIGEST.test(digest)) throw new TypeError(`malformed digest for ${actionId}`);
    const { bytes, id } = readStable(actionId, path);
    if (sha256Digest(bytes) !== digest) throw mismatch(actionId, `file ${path} does not match the pinned digest`);
    return new PinnedModule(actionId, digest, bytes, path, id);
  }

  /** The verified original bytes (a copy: callers cannot alter the pinned buffer). */
  bytes(): Uint8Array {
    return new Uint8Array(this.#bytes);
  }

  /**
   * Re-verifies before an instantiation: stats the file and re-hashes it when its identity changed.
   * Throws `action_digest_mismatch` on any difference or a missing file. The in-memory bytes are
   * not re-hashed: they are a private copy hashed when pinned, and what runs is the module compiled
   * from them at registration, which no caller can reach.
   */
  verify(): void {
    if (this.path === undefined) return;
    let st: BigIntStats;
    try {
      st = statSync(this.path, { bigint: true });
    } catch {
      throw mismatch(this.actionId, `file ${this.path} is gone`);
    }
    const id = identity(st);
    if (this.#identity && sameIdentity(id, this.#identity)) return;
    const fresh = readStable(this.actionId, this.path);
    if (sha256Digest(fresh.bytes) !== this.digest) throw mismatch(this.actionId, `file ${this.path} changed and no longer matches the pinned digest`);
    this.#identity = fresh.id;
  }
}

/** Reads a file and the identity it had while being read (retries once if it changed mid-read). */
function readStable(actionId: string, path: string): { bytes: Uint8Array; id: FileIdentity } {
  for (let attempt = 0; attempt < 2; attempt++) {
    let before: BigIntStats;
    let bytes: Uint8Array;
    let after: BigIntStats;
    try {
      before = statSync(path, { bigint: true });
      if (!before.isFile()) throw mismatch(actionId, `${path} is not a regular file`);
      bytes = new Uint8Array(readFileSync(path));
      after = statSync(path, { bigint: true });
    } catch (err) {
      if (err instanceof GateError) throw err;
      throw mismatch(actionId, `file ${path} cannot be read`);
    }
    if (sameIdentity(identity(before), identity(after))) return { bytes, id: identity(after) };
  }
  throw mismatch(actionId, `file ${path} keeps changing`);
}
