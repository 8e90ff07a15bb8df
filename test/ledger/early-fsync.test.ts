// Inline batches answered before their fsync (receipts only, receipt_fsync = after_reply): a
// following receipts-only batch does not wait for the previous fsync, but anything answered after
// its own fsync (an intent, an event) waits for every pending one; the fsyncs run one at a time on
// one descriptor, which is never closed under a running fsync.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { openDatabase } from '../../src/ledger/index.ts';
import { WalSync } from '../../src/ledger/wal-sync.ts';
import { ledgerOn, makeGrant, makeReceipt, tempDir, testKeys } from './helpers.ts';

const EXEC = { type: 'execute', decision: 'allow' as const };

test('receipts-only batches do not queue behind a slow post-reply fsync; an intent waits for all of them', async (t) => {
  const db = await openDatabase({ kind: 'sqlite', path: join(tempDir(t), 'ledger.db'), writerThread: true, receiptFsync: 'after_reply' });
  t.after(() => db.close());
  const keys = await testKeys(t);
  const ledger = await ledgerOn(db, keys, { inlineWhen: () => true });
  const log: string[] = [];
  let running = 0;
  const orig = WalSync.prototype.sync;
  WalSync.prototype.sync = async function (this: WalSync) {
    running++;
    assert.equal(running, 1, 'two fsyncs ran at once');
    log.push('fsync start');
    await delay(150);
    await orig.call(this);
    log.push('fsync done');
    running--;
  };
  t.after(() => { WalSync.prototype.sync = orig; });
  const one = async () => {
    const g = makeGrant(keys);
    await ledger.complete({ grant: g, receipt: makeReceipt(keys, g), auditEvent: EXEC });
    log.push('complete answered');
  };
  await one();
  await one();
  // Both answered while the first fsync still runs (the second one's is queued behind it).
  assert.deepEqual(log, ['fsync start', 'complete answered', 'complete answered'], 'the second receipt waited for the first fsync');
  await ledger.recordIntent({ grant: makeGrant(keys) });
  log.push('intent answered');
  assert.deepEqual(log.slice(3), ['fsync done', 'fsync start', 'fsync done', 'intent answered'], 'the intent did not wait for both fsyncs');
  assert.equal(ledger.inlineBatches, 3);
  assert.equal((await ledger.verify()).intact, true);
});

test('WalSync: a descriptor replaced while an fdatasync runs on it is closed only after that fdatasync', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'x-wal');
  writeFileSync(path, 'a');
  const ws = new WalSync(path);
  t.after(() => ws.close());
  ws.open();
  const first = ws.sync();
  // The file is replaced (a new inode) while the first fdatasync is still on the pool.
  writeFileSync(join(dir, 'y'), 'b');
  renameSync(join(dir, 'y'), path);
  ws.open();
  await first; // would reject with EBADF had its descriptor been closed under it
  await ws.sync();
  unlinkSync(path);
});
