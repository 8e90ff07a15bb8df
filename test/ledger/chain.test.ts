// The hash chain on both backends: appends link and verify; every kind of tampering (change,
// delete, reorder, insert, truncate, rewrite after a checkpoint, forged checkpoint) is reported by
// verify() with the index, seq and event id of the first broken event.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { openKeystore, type Keystore } from '../../src/keys/index.ts';
import {
  GENESIS_HASH, hashEvent, signCheckpoint, type Ledger, type AuditEvent, type ChainFailure, type LedgerDatabase,
} from '../../src/ledger/index.ts';
import { BACKENDS, dropAppendOnly, ledgerOn, testKeys, tempDir, tickingClock, type TestContext } from './helpers.ts';

async function rows(db: LedgerDatabase): Promise<AuditEvent[]> {
  const r = await db.db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
  return r.map((x) => ({ ...x, seq: Number(x.seq), detail: x.detail === null ? null : JSON.parse(x.detail) }) as AuditEvent);
}

async function setRow(db: LedgerDatabase, seq: number, values: Partial<Record<keyof AuditEvent, unknown>>): Promise<void> {
  const v = { ...values } as Record<string, unknown>;
  if ('detail' in v && v.detail !== null && typeof v.detail !== 'string') v.detail = JSON.stringify(v.detail);
  await db.db.updateTable('audit_events').set(v).where('seq', '=', seq).execute();
}

/** Moves seq a -> b without tripping the primary key (attacker's renumbering). */
async function moveSeqs(db: LedgerDatabase, fromSeq: number, delta: number): Promise<void> {
  await sql`update audit_events set seq = seq + 1000000 where seq >= ${fromSeq}`.execute(db.db);
  await sql`update audit_events set seq = seq - 1000000 + ${delta} where seq >= 1000000`.execute(db.db);
}

/** Recomputes hash (and the next links) from `fromSeq` on: a full rewrite by someone without the key. */
async function rehashFrom(db: LedgerDatabase, fromSeq: number): Promise<void> {
  const all = await rows(db);
  let prev = fromSeq === 1 ? GENESIS_HASH : all.find((e) => e.seq === fromSeq - 1)!.hash;
  for (const e of all.filter((x) => x.seq >= fromSeq)) {
    const { hash: _h, ...rest } = { ...e, prev_hash: prev };
    const hash = hashEvent(rest);
    await setRow(db, e.seq, { prev_hash: prev, hash });
    prev = hash;
  }
}

interface Setup {
  db: LedgerDatabase;
  ledger: Ledger;
  keys: Keystore;
  events: AuditEvent[];
}

interface TamperCase {
  name: string;
  checkpointAt?: number;
  tamper(s: Setup, t: TestContext): Promise<void>;
  reason: ChainFailure;
  index: number;
  seq: number;
  /** Event id expected at broken_at, from the original events; null for a missing event. */
  eventId: (events: AuditEvent[]) => string | null;
  /** Needs the ledger instance that signed the checkpoint (in-memory high-water mark). */
  sameInstanceOnly?: boolean;
}

const id = (seq: number) => (events: AuditEvent[]) => events[seq - 1]!.event_id;

const cases: TamperCase[] = [
  {
    name: 'changed event (principal edited) -> hash_mismatch at that event',
    tamper: ({ db }) => setRow(db, 3, { principal: 'mallory' }),
    reason: 'hash_mismatch', index: 2, seq: 3, eventId: id(3),
  },
  {
    name: 'changed event (detail edited) -> hash_mismatch at that event',
    tamper: ({ db }) => setRow(db, 3, { detail: { i: 999 } }),
    reason: 'hash_mismatch', index: 2, seq: 3, eventId: id(3),
  },
  {
    name: 'changed event with its own hash recomputed -> the next link breaks',
    tamper: async ({ db, events }) => {
      const e = { ...events[2]!, principal: 'mallory' };
      const { hash: _h, ...rest } = e;
      await setRow(db, 3, { principal: 'mallory', hash: hashEvent(rest) });
    },
    reason: 'prev_hash_mismatch', index: 3, seq: 4, eventId: id(4),
  },
  {
    name: 'deleted event -> seq_mismatch where it was',
    tamper: ({ db }) => sql`delete from audit_events where seq = 3`.execute(db.db).then(() => undefined),
    reason: 'seq_mismatch', index: 2, seq: 3, eventId: id(4),
  },
  {
    name: 'deleted event with later events renumbered -> prev_hash_mismatch where it was',
    tamper: async ({ db }) => {
      await sql`delete from audit_events where seq = 3`.execute(db.db);
      await moveSeqs(db, 4, -1);
    },
    reason: 'prev_hash_mismatch', index: 2, seq: 3, eventId: id(4),
  },
  {
    name: 'reordered events (3 and 4 swapped) -> prev_hash_mismatch at position 3',
    tamper: async ({ db }) => {
      await sql`update audit_events set seq = 1000003 where seq = 3`.execute(db.db);
      await sql`update audit_events set seq = 3 where seq = 4`.execute(db.db);
      await sql`update audit_events set seq = 4 where seq = 1000003`.execute(db.db);
    },
    reason: 'prev_hash_mismatch', index: 2, seq: 3, eventId: id(4),
  },
  {
    name: 'inserted event (forged, correctly linked, later events renumbered) -> the displaced event breaks',
    tamper: async ({ db, events }) => {
      await moveSeqs(db, 3, 1);
      const forged = { ...events[2]!, seq: 3, event_id: 'evt_forged', principal: 'mallory', prev_hash: events[1]!.hash };
      const { hash: _h, ...rest } = forged;
      const hash = hashEvent(rest);
      // The displaced event must point at the forgery (UNIQUE(prev_hash) forbids two successors of e2).
      await setRow(db, 4, { prev_hash: hash });
      await db.db.insertInto('audit_events').values({ ...forged, hash, detail: JSON.stringify(forged.detail) }).execute();
    },
    reason: 'hash_mismatch', index: 3, seq: 4, eventId: id(3),
  },
  {
    name: 'event row with detail that is not JSON -> malformed_event',
    tamper: ({ db }) => setRow(db, 5, { detail: '{not json' }),
    reason: 'malformed_event', index: 4, seq: 5, eventId: id(5),
  },
  {
    name: 'truncated tail after a signed checkpoint -> truncated at the first missing position',
    checkpointAt: 10,
    tamper: ({ db }) => sql`delete from audit_events where seq >= 8`.execute(db.db).then(() => undefined),
    reason: 'truncated', index: 7, seq: 8, eventId: () => null,
  },
  {
    name: 'truncated tail and its checkpoint deleted -> truncated (the signing process remembers its checkpoint)',
    checkpointAt: 10,
    sameInstanceOnly: true,
    tamper: async ({ db }) => {
      await sql`delete from audit_events where seq >= 8`.execute(db.db);
      await sql`delete from checkpoints`.execute(db.db);
    },
    reason: 'truncated', index: 7, seq: 8, eventId: () => null,
  },
  {
    name: 'history rewritten after a checkpoint (every later hash recomputed) -> checkpoint_mismatch',
    checkpointAt: 10,
    tamper: async ({ db }) => {
      await setRow(db, 3, { principal: 'mallory' });
      await rehashFrom(db, 3);
    },
    reason: 'checkpoint_mismatch', index: 9, seq: 10, eventId: id(10),
  },
  {
    name: 'checkpoint edited to cover a different head -> checkpoint_signature_invalid',
    checkpointAt: 10,
    tamper: async ({ db, events }) => {
      await sql`update checkpoints set head_hash = ${events[8]!.hash}, seq = 9, count = 9`.execute(db.db);
    },
    reason: 'checkpoint_signature_invalid', index: 8, seq: 9, eventId: id(9),
  },
  {
    name: 'checkpoint signed by a key we do not trust -> checkpoint_unknown_kid',
    tamper: async ({ db, events }, t) => {
      const rogue = await openKeystore({ dir: `${tempDir(t)}/rogue` });
      const cp = signCheckpoint({ seq: 5, head_hash: events[4]!.hash, count: 5, ts: '2026-11-22T13:00:01.000Z' }, rogue.checkpoint);
      await db.db.insertInto('checkpoints').values(cp).execute();
    },
    reason: 'checkpoint_unknown_kid', index: 4, seq: 5, eventId: id(5),
  },
];

for (const backend of BACKENDS) {
  describe(`hash chain (${backend.name})`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    test('empty ledger verifies intact with no head', async (t) => {
      const fresh = await backend.fresh(t);
      const ledger = await ledgerOn(await fresh.open(), await testKeys(t));
      assert.deepEqual(await ledger.verify(), {
        intact: true, events_checked: 0, broken_at: null, reason: null, checkpoints_checked: 0, head: null,
      });
    });

    test('appends form one chain: seq 1..n, genesis link, prev_hash = previous hash, hash = rule', async (t) => {
      const fresh = await backend.fresh(t);
      const db = await fresh.open();
      const ledger = await ledgerOn(db, await testKeys(t));
      const results = [];
      for (let i = 0; i < 5; i++) {
        results.push(await ledger.append({ type: 'execute', decision: i % 2 ? 'deny' : 'allow', principal: 'agent-1', trace_id: `trc_${i}`, detail: { i, nested: { z: 1, a: [true, null] } } }));
      }
      const stored = await rows(db);
      assert.deepEqual(stored.map((e) => e.seq), [1, 2, 3, 4, 5]);
      assert.equal(stored[0]!.prev_hash, GENESIS_HASH);
      for (let i = 0; i < stored.length; i++) {
        const e = stored[i]!;
        assert.deepEqual(results[i], { event_id: e.event_id, seq: e.seq, hash: e.hash });
        assert.match(e.event_id, /^evt_[0-9a-f-]{36}$/);
        if (i > 0) assert.equal(e.prev_hash, stored[i - 1]!.hash);
        const { hash, ...rest } = e;
        assert.equal(hashEvent(rest), hash);
        assert.equal(e.operator, null);
      }
      const v = await ledger.verify();
      assert.equal(v.intact, true);
      assert.equal(v.events_checked, 5);
      assert.deepEqual(v.head, { seq: 5, hash: stored[4]!.hash });
    });

    test('timestamps never go backwards along the chain even when the clock does', async (t) => {
      const fresh = await backend.fresh(t);
      const db = await fresh.open();
      const clock = tickingClock('2026-11-22T13:00:00.000Z');
      const ledger = await ledgerOn(db, await testKeys(t), { clock });
      await ledger.append({ type: 'a', decision: 'info' });
      clock.set('2026-11-22T12:00:00.000Z');
      await ledger.append({ type: 'b', decision: 'info' });
      const [a, b] = await rows(db);
      assert.ok(b!.ts >= a!.ts, `${b!.ts} >= ${a!.ts}`);
      assert.equal((await ledger.verify()).intact, true);
    });

    for (const c of cases) {
      test(`tamper: ${c.name}`, async (t) => {
        const fresh = await backend.fresh(t);
        const db = await fresh.open();
        const keys = await testKeys(t);
        const ledger = await ledgerOn(db, keys);
        for (let i = 1; i <= 10; i++) await ledger.append({ type: 'execute', decision: 'allow', principal: 'agent-1', detail: { i } });
        if (c.checkpointAt) assert.equal((await ledger.checkpoint())?.seq, c.checkpointAt);
        const events = await rows(db);
        assert.equal((await ledger.verify()).intact, true, 'intact before tampering');
        await dropAppendOnly(db);
        await c.tamper({ db, ledger, keys, events }, t);
        const check = async (l: Ledger) => {
          const v = await l.verify();
          assert.equal(v.intact, false);
          assert.equal(v.reason, c.reason);
          assert.deepEqual(v.broken_at, { index: c.index, seq: c.seq, event_id: c.eventId(events) });
          assert.equal(v.events_checked, c.index);
        };
        await check(ledger);
        if (!c.sameInstanceOnly) {
          // A restarted gate (new connection, nothing in memory) finds the same break.
          await db.close();
          await check(await ledgerOn(await fresh.open(), keys));
        }
      });
    }

    test('a new ledger instance trusts nothing in memory: a clean chain with checkpoints verifies', async (t) => {
      const fresh = await backend.fresh(t);
      const keys = await testKeys(t);
      const dbA = await fresh.open();
      const a = await ledgerOn(dbA, keys);
      for (let i = 0; i < 7; i++) await a.append({ type: 'x', decision: 'info' });
      await a.checkpoint();
      for (let i = 0; i < 3; i++) await a.append({ type: 'x', decision: 'info' });
      await a.checkpoint();
      await dbA.close();
      const b = await ledgerOn(await fresh.open(), keys);
      const v = await b.verify();
      assert.equal(v.intact, true);
      assert.equal(v.events_checked, 10);
      assert.equal(v.checkpoints_checked, 2);
    });
  });
}
