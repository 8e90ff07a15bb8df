// SQLite files holding gate state (replay cache, budgets, revocations, encrypted secrets) are the
// owner's alone: created 0600, and tightened to 0600 if an older version left them wider. SQLite
// gives the -wal and -shm files the main file's mode, so this covers all three.
import { chmodSync, closeSync, constants, openSync, statSync } from 'node:fs';

export function ensurePrivateDbFile(path: string): void {
  if (path === ':memory:' || path === '') return;
  closeSync(openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600));
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
}
