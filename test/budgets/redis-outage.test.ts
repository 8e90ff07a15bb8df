// Redis failure modes of the budget store: a dead Redis is budget_store_unavailable, fast, for every
// operation (never an allow); after a restart the same store object recovers and reloads its script
// (NOSCRIPT fallback); sessions whose counters were lost fail closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GateError } from '../../src/errors.ts';
import { RedisBudgetStore } from '../../src/budgets/index.ts';
import { serviceSkipReason, startRedis } from '../helpers/services.ts';
import { ManualClock, fastRedisClient, ready } from './backends.ts';

const isCode = (code: string) => (e: unknown) => e instanceof GateError && e.code === code;

test('redis stopped mid-run -> budget_store_unavailable fast; restart -> the same store recovers', { skip: serviceSkipReason('redis') }, async (t) => {
  const server = await startRedis();
  const client = await fastRedisClient(server);
  t.after(async () => { client.disconnect(); await server.stop(); });
  const store = new RedisBudgetStore(client, { clock: new ManualClock(), timeoutMs: 1500 });
  const lease = { max_calls: 5 };
  const query = { sessionId: 'ses_outage', principal: 'agent', actionId: 'a', lease };
  await store.initSession('ses_outage', lease, 300);
  await store.setPrincipalBudget({ principal: 'agent', window_seconds: 60, max_calls: 100 });
  await store.debit(query);

  await server.pause();
  const ops: [string, () => Promise<unknown>][] = [
    ['debit', () => store.debit(query)],
    ['snapshot', () => store.snapshot(query)],
    ['initSession', () => store.initSession('ses_other', lease, 300)],
    ['refund', () => store.refund('dbt_x')],
    ['setPrincipalBudget', () => store.setPrincipalBudget({ principal: 'agent', window_seconds: 60, max_calls: 1 })],
    ['getPrincipalBudget', () => store.getPrincipalBudget('agent')],
    ['listPrincipalBudgets', () => store.listPrincipalBudgets()],
  ];
  for (const [name, op] of ops) {
    const started = Date.now();
    await assert.rejects(op(), isCode('budget_store_unavailable'), name);
    assert.ok(Date.now() - started < 2500, `${name} failed fast`);
  }
  assert.equal(await store.ping(), false);

  await server.start();
  await ready(client);
  assert.equal(await store.ping(), true);
  // A restarted Redis starts with an empty script cache; the store reloads it (NOSCRIPT -> EVAL).
  assert.deepEqual(await client.script('EXISTS', (await import('node:crypto')).createHash('sha1').update('x').digest('hex')), [0]);
  await store.snapshot({ ...query, lease: undefined });
  // Whether the counters survived depends on Redis persistence; model the loss explicitly:
  // a budgeted session whose counter is gone must not turn unlimited.
  await client.flushall();
  await client.script('FLUSH');
  await assert.rejects(store.debit(query), isCode('budget_session_not_found'));
  await store.initSession('ses_after', { max_calls: 1 }, 300);
  await store.debit({ ...query, sessionId: 'ses_after', lease: { max_calls: 1 } });
  await assert.rejects(store.debit({ ...query, sessionId: 'ses_after', lease: { max_calls: 1 } }), isCode('budget_exhausted'));
});

test('script cache flushed -> EVALSHA falls back to EVAL and the debit stays exact', { skip: serviceSkipReason('redis') }, async (t) => {
  const server = await startRedis();
  const client = await fastRedisClient(server);
  t.after(async () => { client.disconnect(); await server.stop(); });
  const store = new RedisBudgetStore(client, { clock: new ManualClock() });
  const lease = { max_calls: 2 };
  const query = { sessionId: 'ses_flush', principal: 'agent', actionId: 'a', lease };
  await store.initSession('ses_flush', lease, 300);
  await store.debit(query);
  await client.script('FLUSH');
  assert.deepEqual(await client.script('EXISTS', '0'.repeat(40)), [0]);
  assert.equal((await store.debit(query)).remaining_calls, 0);
  await assert.rejects(store.debit(query), isCode('budget_exhausted'));
});

test('lease counters expire with the lease (Redis TTL set from ttlSeconds)', { skip: serviceSkipReason('redis') }, async (t) => {
  const server = await startRedis();
  const client = await fastRedisClient(server);
  t.after(async () => { client.disconnect(); await server.stop(); });
  const store = new RedisBudgetStore(client);
  await store.initSession('ses_ttl', { max_calls: 3 }, 120);
  const ttl = await client.pttl('portcullis:budget:session:ses_ttl');
  assert.ok(ttl > 119_000 && ttl <= 120_000, `pttl ${ttl}`);
});
