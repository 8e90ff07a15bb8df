// Crash-safe file replacement: a reader sees the old file or the new one, never a mix.
// Write a temp file in the same directory, fsync it, rename over the target, fsync the directory.
import { open, rename, rm, readdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

const tmpPrefix = (file: string) => `.${basename(file)}.`;
const TMP_SUFFIX = '.tmp';

/** Atomically replaces `file` with `contents` (mode 0600 for a new file). */
export async function writeFileAtomic(file: string, contents: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = dirname(file);
  const tmp = join(dir, `${tmpPrefix(file)}${process.pid}.${randomBytes(6).toString('hex')}${TMP_SUFFIX}`);
  let renamed = false;
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(contents);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    renamed = true;
    // The rename itself is durable only once the directory entry is flushed.
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } finally {
    if (!renamed) await rm(tmp, { force: true });
  }
}

/** Removes temp files a crash left behind next to `file`; returns how many. */
export async function removeStaleTempFiles(file: string): Promise<number> {
  const prefix = tmpPrefix(file);
  let removed = 0;
  for (const name of await readdir(dirname(file))) {
    if (name.startsWith(prefix) && name.endsWith(TMP_SUFFIX)) {
      await rm(join(dirname(file), name), { force: true });
      removed++;
    }
  }
  return removed;
}
