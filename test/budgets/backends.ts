// Budget store backends for the table-driven tests: each opens any number of independent store
// instances (separate Redis clients / separate SQLite connections) over one shared storage.
import { once } from 'node:events';
import { Redis } from 'ioredis';
import type { Clock } from '../../src/contracts.ts';
import { RedisBudgetStore, SqliteBudgetStore, type BudgetStore } from '../../src/budgets/index.ts';
import { serviceSkipReason, startRedis, type RedisServer } from '../helpers/services.ts';
import { sharedSqliteFile } from '../helpers/sqlite.ts';

/** A clock the test moves by hand. Starts at a whole minute so window arithmetic is easy to read. */
export class ManualClock implements Clock {
  t: number;
  constructor(start = Math.floor(Date.now() / 60_000) * 60_000 + 60_000) { this.t = start; }
  now(): number { return this.t; }
  advance(ms: number): void { this.t += ms; }
}

export interface BudgetBackend {
  /** A new store instance with its own connection, over the shared storage. */
  open(clock: Clock): Promise<BudgetStore>;
  /** Overwrites a stored principal budget with garbage (to test fail-closed parsing). */
  corruptConfig(principal: string): Promise<void>;
  close(): Promise<void>;
}

/** Fail-fast client options: no offline queue, short timeouts, quick reconnects. */
export async function fastRedisClient(server: RedisServer): Promise<Redis> {
  const client = new Redis({
    path: server.socketPath,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 1000,
    connectTimeout: 1000,
    retryStrategy: () => 50,
  });
  client.on('error', () => {});
  await ready(client);
  return client;
}

/**
 * Resolves when the client is ready (first connect or after a server restart). Connection errors
 * in between are expected (the client retries every 50 ms); gives up 15 s after the call.
 */
export async function ready(client: Redis, deadline = Date.now() + 15_000): Promise<void> {
  while (client.status !== 'ready') {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('redis client did not become ready within 15 s');
    // events.once rejects on an 'error' event (a failed reconnect attempt): just wait again.
    await once(client, 'ready', { signal: AbortSignal.timeout(left) }).catch(() => {});
  }
}

async function redisBackend(): Promise<BudgetBackend> {
  const server = await startRedis();
  const clients: Redis[] = [];
  return {
    async open(clock) {
      const c = await fastRedisClient(server);
      clients.push(c);
      return new RedisBudgetStore(c, { clock, timeoutMs: 1500 });
    },
    async corruptConfig(principal) {
      await clients[0]!.set(`portcullis:budget:principal:${principal}`, '{not json');
    },
    async close() {
      for (const c of clients) c.disconnect();
      await server.stop();
    },
  };
}

async function sqliteBackend(): Promise<BudgetBackend> {
  const sqlite = sharedSqliteFile('portcullis-budget-');
  const connect = sqlite.connect;
  return {
    async open(clock) {
      return new SqliteBudgetStore(connect(), { clock });
    },
    async corruptConfig(principal) {
      connect().prepare('UPDATE budget_principals SET config = ? WHERE principal = ?').run('{not json', principal);
    },
    async close() {
      sqlite.close();
    },
  };
}

export const BACKENDS: { name: string; skip: string | undefined; make: () => Promise<BudgetBackend> }[] = [
  { name: 'redis', skip: serviceSkipReason('redis'), make: redisBackend },
  { name: 'sqlite', skip: undefined, make: sqliteBackend },
];
