// Idempotency-Key stores, Redis and SQLite, one table of cases: replay of the final response, payload
// conflict, in-progress, principal scoping, ownership tokens, TTLs, a begin race across two instances,
// key grammar, and fail-closed storage errors.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Redis } from 'ioredis';
import { GateError, type GateErrorCode } from '../../src/errors.ts';
import {
  RedisIdempotencyStore, SqliteIdempotencyStore, createIdempotencyStore, idempotencyFingerprint, type IdempotencyStore,
} from '../../src/idempotency/index.ts';
import { storageKey } from '../../src/idempotency/common.ts';
import { serviceSkipReason, startRedis, type RedisServer } from '../helpers/services.ts';
import { sharedSqliteFile } from '../helpers/sqlite.ts';
import { ManualClock, fastRedisClient, ready } from '../budgets/backends.ts';

const isCode = (code: GateErrorCode) => (e: unknown) => e instanceof GateError && e.code === code;
let seq = 0;
const key = () => `key-${process.pid}-${++seq}`;
const FP = idempotencyFingerprint('http_post', `sha256:${'ab'.repeat(32)}`);
const FP2 = idempotencyFingerprint('http_post', `sha256:${'cd'.repeat(32)}`);
const OK = { status: 200, body: { trace_id: 'trc_1', receipt_id: 'rcpt_1', output: { status: 201 } } };

interface Backend {
  open(clock: ManualClock): Promise<IdempotencyStore>;
  corrupt(scope: string, k: string): Promise<void>;
  /** Takes storage away from a store (Redis stopped / SQLite connection closed); `restore` brings Redis back. */
  outage(store: IdempotencyStore): Promise<{ down: IdempotencyStore; restore(): Promise<void> }>;
  close(): Promise<void>;
}

async function redisBackend(): Promise<Backend> {
  const server: RedisServer = await startRedis();
  const clients: Redis[] = [];
  return {
    async open() {
      const c = await fastRedisClient(server);
      clients.push(c);
      return createIdempotencyStore({ kind: 'redis', redis: c }, { timeoutMs: 1500 });
    },
    async corrupt(scope, k) {
      await clients[0]!.hset(`portcullis:idem:${storageKey(scope, k)}`, 'body', '{broken');
    },
    async outage(store) {
      await server.pause();
      return {
        down: store,
        async restore() {
          await server.start();
          for (const c of clients) await ready(c);
        },
      };
    },
    async close() {
      for (const c of clients) c.disconnect();
      await server.stop();
    },
  };
}

async function sqliteBackend(): Promise<Backend> {
  const sqlite = sharedSqliteFile('portcullis-idem-');
  const connect = sqlite.connect;
  return {
    async open(clock) { return new SqliteIdempotencyStore(connect(), { clock }); },
    async corrupt(scope, k) { connect().prepare("UPDATE idempotency_keys SET body = '{broken' WHERE k = ?").run(storageKey(scope, k)); },
    async outage() {
      const db = connect();
      const down = new SqliteIdempotencyStore(db);
      db.close();
      return { down, async restore() {} };
    },
    async close() {
      sqlite.close();
    },
  };
}

const BACKENDS: { name: string; skip: string | undefined; make: () => Promise<Backend> }[] = [
  { name: 'redis', skip: serviceSkipReason('redis'), make: redisBackend },
  { name: 'sqlite', skip: undefined, make: sqliteBackend },
];

for (const backend of BACKENDS) {
  describe(`${backend.name} idempotency store`, { skip: backend.skip }, () => {
    let b: Backend;
    let clock: ManualClock;
    let s1: IdempotencyStore;
    let s2: IdempotencyStore;
    before(async () => {
      b = await backend.make();
      clock = new ManualClock();
      s1 = await b.open(clock);
      s2 = await b.open(clock);
    });
    after(async () => { await b?.close(); });

    test('replay: after finish, the same key and payload get the stored response (on another instance)', async () => {
      const k = key();
      const begun = await s1.begin('agent-a', k, FP);
      assert.equal(begun.state, 'new');
      assert.equal(await s1.finish('agent-a', k, FP, OK, begun.state === 'new' ? begun.token : undefined), true);
      assert.deepEqual(await s2.begin('agent-a', k, FP), { state: 'replay', response: OK });
      assert.deepEqual(await s1.begin('agent-a', k, FP), { state: 'replay', response: OK });
    });

    test('a 202 pending-approval outcome is replayed too (same approval id, no second hold)', async () => {
      const k = key();
      await s1.begin('agent-a', k, FP);
      const pending = { status: 202, body: { decision: 'pending_approval', approval_id: 'apr_1', request_hash: 'sha256:x', trace_id: 'trc_1' } };
      await s1.finish('agent-a', k, FP, pending);
      assert.deepEqual(await s2.begin('agent-a', k, FP), { state: 'replay', response: pending });
    });

    const conflicts: [string, (k: string) => Promise<void>][] = [
      ['while the first request runs', async (k) => { await s1.begin('agent-a', k, FP); }],
      ['after it finished', async (k) => { await s1.begin('agent-a', k, FP); await s1.finish('agent-a', k, FP, OK); }],
    ];
    for (const [name, setup] of conflicts) {
      test(`attack: same key with a different payload -> idempotency_key_conflict (${name})`, async () => {
        const k = key();
        await setup(k);
        await assert.rejects(s2.begin('agent-a', k, FP2), isCode('idempotency_key_conflict'));
      });
    }

    test('same key while the first request still runs -> idempotency_in_progress', async () => {
      const k = key();
      await s1.begin('agent-a', k, FP);
      await assert.rejects(s2.begin('agent-a', k, FP), isCode('idempotency_in_progress'));
    });

    test('attack: keys are scoped by principal — another principal\'s identical key never replays its response', async () => {
      const k = key();
      await s1.begin('agent-a', k, FP);
      await s1.finish('agent-a', k, FP, OK);
      assert.equal((await s2.begin('agent-b', k, FP)).state, 'new');
    });

    test('release frees the key for a retry; ownership tokens are enforced', async () => {
      const k = key();
      const first = await s1.begin('agent-a', k, FP);
      assert.equal(first.state, 'new');
      const token = first.state === 'new' ? first.token : '';
      assert.equal(await s2.release('agent-a', k, FP, 'not-the-token'), false);
      assert.equal(await s2.finish('agent-a', k, FP, OK, 'not-the-token'), false);
      assert.equal(await s2.release('agent-a', k, FP2, token), false, 'wrong fingerprint');
      assert.equal(await s1.release('agent-a', k, FP, token), true);
      assert.equal(await s1.release('agent-a', k, FP, token), false, 'already released');
      assert.equal(await s1.finish('agent-a', k, FP, OK, token), false, 'finish after release');
      const second = await s2.begin('agent-a', k, FP);
      assert.equal(second.state, 'new');
      assert.equal(await s2.finish('agent-a', k, FP, OK, second.state === 'new' ? second.token : ''), true);
      assert.equal(await s2.finish('agent-a', k, FP, { status: 500, body: {} }), false, 'a stored response is never overwritten');
      assert.deepEqual(await s1.begin('agent-a', k, FP), { state: 'replay', response: OK });
    });

    test('race: 20 concurrent begins of one key across two instances -> exactly one owner', async () => {
      const k = key();
      const res = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => (i % 2 ? s1 : s2).begin('agent-a', k, FP)));
      assert.equal(res.filter((r) => r.status === 'fulfilled' && r.value.state === 'new').length, 1);
      for (const r of res) if (r.status === 'rejected') assert.equal((r.reason as GateError).code, 'idempotency_in_progress');
      assert.equal(res.filter((r) => r.status === 'rejected').length, 19);
    });

    const badKeys: [string, string][] = [['empty', ''], ['space', 'a b'], ['newline (header injection)', 'a\nb'], ['non-ASCII', 'clé'], ['256 characters', 'k'.repeat(256)]];
    for (const [name, k] of badKeys) {
      test(`invalid Idempotency-Key -> invalid_request: ${name}`, async () => {
        await assert.rejects(s1.begin('agent-a', k, FP), isCode('invalid_request'));
      });
    }

    test('a malformed response or missing scope is a programming error (TypeError)', async () => {
      const k = key();
      await s1.begin('agent-a', k, FP);
      await assert.rejects(s1.finish('agent-a', k, FP, { status: 42, body: {} }), TypeError);
      await assert.rejects(s1.finish('agent-a', k, FP, { status: 200, body: [] as unknown as Record<string, unknown> }), TypeError);
      await assert.rejects(s1.begin('', k, FP), TypeError);
    });

    test('attack: a corrupt stored response fails closed (idempotency_store_unavailable), never re-executes', async () => {
      const k = key();
      await s1.begin('agent-a', k, FP);
      await s1.finish('agent-a', k, FP, OK);
      await b.corrupt('agent-a', k);
      await assert.rejects(s2.begin('agent-a', k, FP), isCode('idempotency_store_unavailable'));
    });

    test('store down -> idempotency_store_unavailable (fail closed); it recovers', async () => {
      const { down, restore } = await b.outage(s1);
      const started = Date.now();
      await assert.rejects(down.begin('agent-a', key(), FP), isCode('idempotency_store_unavailable'));
      await assert.rejects(down.finish('agent-a', key(), FP, OK), isCode('idempotency_store_unavailable'));
      await assert.rejects(down.release('agent-a', key(), FP), isCode('idempotency_store_unavailable'));
      assert.ok(Date.now() - started < 4000, 'fails fast');
      assert.equal(await down.ping(), false);
      await restore();
      assert.equal((await s1.begin('agent-a', key(), FP)).state, 'new');
    });
  });
}

test('sqlite: the in-progress hold and the stored response expire on the clock', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-idem-'));
  const db = new Database(join(dir, 'state.db'));
  t.after(() => { db.close(); rmSync(dir, { recursive: true, force: true }); });
  const clock = new ManualClock();
  const s = new SqliteIdempotencyStore(db, { clock, inProgressTtlSeconds: 300, ttlSeconds: 86_400 });
  await s.begin('p', 'k1', FP);
  clock.advance(299_999);
  await assert.rejects(s.begin('p', 'k1', FP), isCode('idempotency_in_progress'));
  clock.advance(1);
  const again = await s.begin('p', 'k1', FP); // the first holder crashed: the key frees up
  assert.equal(again.state, 'new');
  await s.finish('p', 'k1', FP, OK);
  clock.advance(86_399_999);
  assert.equal((await s.begin('p', 'k1', FP)).state, 'replay');
  clock.advance(1);
  assert.equal((await s.begin('p', 'k1', FP)).state, 'new');
});

test('redis: TTLs are set on the key (in-progress hold, then the response TTL)', { skip: serviceSkipReason('redis') }, async (t) => {
  const server = await startRedis();
  const client = await fastRedisClient(server);
  t.after(async () => { client.disconnect(); await server.stop(); });
  const s = new RedisIdempotencyStore(client, { inProgressTtlSeconds: 300, ttlSeconds: 86_400 });
  await s.begin('p', 'k1', FP);
  const [rk] = await client.keys('portcullis:idem:*');
  const hold = await client.pttl(rk!);
  assert.ok(hold > 299_000 && hold <= 300_000, `hold ${hold}`);
  await s.finish('p', 'k1', FP, OK);
  const ttl = await client.pttl(rk!);
  assert.ok(ttl > 86_399_000 && ttl <= 86_400_000, `ttl ${ttl}`);
  assert.equal(await client.hget(rk!, 'token'), null, 'the owner token is dropped once finished');
});
