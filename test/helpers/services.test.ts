// The throwaway service harness itself: both servers start, answer, and are removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { startRedis, startPostgres, serviceSkipReason } from './services.ts';

test('throwaway redis answers over its unix socket as soon as it is returned, and is removed on stop', { skip: serviceSkipReason('redis') }, async (t) => {
  const r = await startRedis();
  t.after(() => r.stop());
  const client = new Redis({ path: r.socketPath, lazyConnect: true });
  t.after(() => client.disconnect());
  await client.connect();
  assert.equal(await client.set('k', 'v', 'EX', 5, 'NX'), 'OK');
  assert.equal(await client.set('k', 'v', 'EX', 5, 'NX'), null);
  client.disconnect();
  await r.stop();
  assert.equal(existsSync(r.socketPath), false);
});

test('throwaway postgres answers over its unix socket', { skip: serviceSkipReason('postgres') }, async () => {
  const p = await startPostgres();
  const client = new pg.Client({ connectionString: p.url });
  await client.connect();
  const res = await client.query('select 1 as one');
  assert.equal(res.rows[0].one, 1);
  await client.end();
  await p.stop();
  assert.equal(existsSync(p.socketDir), false);
});
