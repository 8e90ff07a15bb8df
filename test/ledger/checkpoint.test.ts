// Signed checkpoints on both backends: what is signed, when nothing is new, refusing to bless a
// broken segment, and the schedule helper (every N events, every T ms, at stop).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { GateError } from '../../src/errors.ts';
import { checkpointSigningBytes, startCheckpointer, type Checkpoint } from '../../src/ledger/index.ts';
import { BACKENDS, dropAppendOnly, ledgerOn, testKeys, tickingClock } from './helpers.ts';
import { verify as cryptoVerify } from 'node:crypto';

for (const backend of BACKENDS) {
  describe(`checkpoints (${backend.name})`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    test('checkpoint signs {seq, head_hash, count, ts, kid} of the head; nothing new -> null', async (t) => {
      const keys = await testKeys(t);
      const clock = tickingClock('2026-11-22T13:00:00.000Z');
      const ledger = await ledgerOn(await (await backend.fresh(t)).open(), keys, { clock });
      assert.equal(await ledger.checkpoint(), null, 'empty ledger');
      for (let i = 0; i < 3; i++) await ledger.append({ type: 'x', decision: 'info' });
      const [head] = await ledger.queryEvents({ limit: 1 });
      const cp = await ledger.checkpoint();
      assert.ok(cp);
      assert.equal(cp.seq, 3);
      assert.equal(cp.count, 3);
      assert.equal(cp.head_hash, head!.hash);
      assert.equal(cp.kid, keys.checkpoint.kid);
      assert.match(cp.ts, /^2026-11-22T13:00:00\.\d{3}Z$/);
      const bytes = checkpointSigningBytes(cp);
      assert.equal(bytes.toString('utf8'), `portcullis-checkpoint-v1\n{"count":3,"head_hash":"${cp.head_hash}","kid":"${cp.kid}","seq":3,"ts":"${cp.ts}"}`);
      assert.equal(cryptoVerify(null, bytes, keys.checkpoint.publicKey, Buffer.from(cp.signature, 'hex')), true);
      assert.equal(await ledger.checkpoint(), null, 'no new events');
      assert.deepEqual(await ledger.readCheckpoints(), [cp]);
      await ledger.append({ type: 'y', decision: 'info' });
      const [a, b] = await Promise.all([ledger.checkpoint(), ledger.checkpoint()]);
      assert.equal(a?.seq, 4, 'concurrent calls share one run');
      assert.deepEqual(b, a);
      assert.equal((await ledger.readCheckpoints()).length, 2);
      assert.equal((await ledger.verify()).intact, true);
    });

    const refusals = [
      {
        name: 'an edited event since the last checkpoint',
        tamper: (db: Parameters<typeof dropAppendOnly>[0]) => sql`update audit_events set principal = 'mallory' where seq = 5`.execute(db.db),
      },
      {
        name: 'a checkpoint whose signature does not verify',
        tamper: (db: Parameters<typeof dropAppendOnly>[0]) => sql`update checkpoints set ts = '2030-01-01T00:00:00.000Z'`.execute(db.db),
      },
      {
        name: 'a chain that no longer reaches the last checkpoint (truncated)',
        tamper: async (db: Parameters<typeof dropAppendOnly>[0]) => {
          await sql`delete from audit_events where seq > 2`.execute(db.db);
        },
      },
    ];
    for (const c of refusals) {
      test(`checkpoint refuses to bless ${c.name} (ledger_unavailable)`, async (t) => {
        const fresh = await backend.fresh(t);
        const db = await fresh.open();
        const keys = await testKeys(t);
        const ledger = await ledgerOn(db, keys);
        for (let i = 0; i < 3; i++) await ledger.append({ type: 'x', decision: 'info' });
        await ledger.checkpoint();
        for (let i = 0; i < 3; i++) await ledger.append({ type: 'x', decision: 'info' });
        await dropAppendOnly(db);
        await c.tamper(db);
        const before = await ledger.readCheckpoints();
        await assert.rejects(ledger.checkpoint(), (err: unknown) => err instanceof GateError && err.code === 'ledger_unavailable');
        assert.deepEqual(await ledger.readCheckpoints(), before);
      });
    }

    test('checkpointer: every N events, and a final one at stop', async (t) => {
      const ledger = await ledgerOn(await (await backend.fresh(t)).open(), await testKeys(t));
      const seen: Checkpoint[] = [];
      let notify: (() => void) | undefined;
      const cp = startCheckpointer(ledger, {
        everyEvents: 5,
        intervalMs: 0,
        onCheckpoint: (c) => { seen.push(c); notify?.(); },
        onError: (err) => assert.fail(String(err)),
      });
      const first = new Promise<void>((r) => { notify = r; });
      for (let i = 0; i < 5; i++) await ledger.append({ type: 'x', decision: 'info' });
      await first;
      assert.equal(seen[0]!.seq, 5);
      for (let i = 0; i < 2; i++) await ledger.append({ type: 'x', decision: 'info' });
      assert.equal(seen.length, 1, 'below the threshold: no checkpoint yet');
      const last = await cp.stop();
      assert.equal(last?.seq, 7);
      assert.deepEqual((await ledger.readCheckpoints()).map((c) => c.seq), [5, 7]);
      await ledger.append({ type: 'x', decision: 'info' });
      assert.equal(await cp.stop(), null, 'stopped: no more checkpoints');
    });

    test('checkpointer: on an interval when the head moved', async (t) => {
      const ledger = await ledgerOn(await (await backend.fresh(t)).open(), await testKeys(t));
      await ledger.append({ type: 'x', decision: 'info' });
      let notify: ((c: Checkpoint) => void) | undefined;
      const got = new Promise<Checkpoint>((r) => { notify = r; });
      const cp = startCheckpointer(ledger, { everyEvents: 0, intervalMs: 20, onCheckpoint: (c) => notify?.(c) });
      // The checkpointer's timer is unref'd (never keeps a process alive); keep this test's loop alive.
      const keepAlive = setTimeout(() => undefined, 10_000);
      try {
        assert.equal((await got).seq, 1);
      } finally {
        clearTimeout(keepAlive);
      }
      await cp.stop();
    });

    test('checkpointer reports failures to onError and never throws into the append path', async (t) => {
      const fresh = await backend.fresh(t);
      const db = await fresh.open();
      const ledger = await ledgerOn(db, await testKeys(t));
      const errors: unknown[] = [];
      let notify: (() => void) | undefined;
      const failed = new Promise<void>((r) => { notify = r; });
      const cp = startCheckpointer(ledger, { everyEvents: 2, intervalMs: 0, onError: (e) => { errors.push(e); notify?.(); } });
      await ledger.append({ type: 'x', decision: 'info' });
      await dropAppendOnly(db);
      await sql`update audit_events set principal = 'mallory' where seq = 1`.execute(db.db);
      await ledger.append({ type: 'x', decision: 'info' });
      await failed;
      assert.ok(errors[0] instanceof GateError && errors[0].code === 'ledger_unavailable');
      assert.equal(await cp.stop(), null);
    });
  });
}
