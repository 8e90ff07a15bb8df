// Private-file helpers for the keystore: a 0700 directory, 0600 files written atomically
// (temp file, fsync, link/rename, directory fsync). Internal to src/keys.
import { constants } from 'node:fs';
import { mkdir, open, stat, rename, link, unlink } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { randomBytes } from 'node:crypto';
import { KeystoreError } from './errors.ts';

/** Creates `dir` with mode 0700 when missing; refuses an existing directory open to group or others. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new KeystoreError('key_dir_unusable', dir, 'cannot create key directory', { cause });
  }
  const st = await stat(dir).catch((cause: unknown) => {
    throw new KeystoreError('key_dir_unusable', dir, 'cannot stat key directory', { cause });
  });
  if (!st.isDirectory()) throw new KeystoreError('key_dir_unusable', dir, 'not a directory');
  if ((st.mode & 0o077) !== 0) {
    throw new KeystoreError('insecure_permissions', dir, `key directory mode is ${(st.mode & 0o777).toString(8)}, expected 700`);
  }
}

/** Reads a private file, refusing one that group or others may read or write. Undefined when absent. */
export async function readPrivateFile(path: string): Promise<string | undefined> {
  let fh;
  try {
    // Symlinks are followed (Kubernetes secret volumes are symlinks); the mode check below is on
    // the opened target itself (fstat), so a symlink cannot launder a world-readable key.
    fh = await open(path, constants.O_RDONLY);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeystoreError('key_unreadable', path, 'cannot open key file', { cause });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new KeystoreError('key_unreadable', path, 'not a regular file');
    if ((st.mode & 0o077) !== 0) {
      throw new KeystoreError('insecure_permissions', path, `key file mode is ${(st.mode & 0o777).toString(8)}, expected 600 or 400`);
    }
    if (st.size > 64 * 1024) throw new KeystoreError('key_invalid', path, 'key file too large');
    return await fh.readFile({ encoding: 'utf8' });
  } finally {
    await fh.close();
  }
}

async function writeTemp(path: string, content: string): Promise<string> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(content, { encoding: 'utf8' });
    await fh.chmod(0o600);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return tmp;
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Creates `path` with `content` only if it does not exist (atomic: link() fails on EEXIST).
 * Returns false when another writer created it first.
 */
export async function createPrivateFileExclusive(path: string, content: string): Promise<boolean> {
  let tmp: string | undefined;
  try {
    tmp = await writeTemp(path, content);
    try {
      await link(tmp, path);
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw cause;
    }
    await syncDir(dirname(path));
    return true;
  } catch (cause) {
    throw new KeystoreError('key_write_failed', path, 'cannot write key file', { cause });
  } finally {
    if (tmp) await unlink(tmp).catch(() => undefined);
  }
}

/** Replaces `path` with `content` atomically (rename over), mode 0600. */
export async function replacePrivateFile(path: string, content: string): Promise<void> {
  let tmp: string | undefined;
  try {
    tmp = await writeTemp(path, content);
    await rename(tmp, path);
    tmp = undefined;
    await syncDir(dirname(path));
  } catch (cause) {
    throw new KeystoreError('key_write_failed', path, 'cannot write key file', { cause });
  } finally {
    if (tmp) await unlink(tmp).catch(() => undefined);
  }
}
