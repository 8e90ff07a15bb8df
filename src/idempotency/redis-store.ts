// Redis Idempotency-Key store (production): begin, finish and release are each one Lua script, so
// exactly one request owns a key and a stored response is never overwritten, across gate instances.
import type { Redis } from 'ioredis';
import { pingRedis } from '../stores/ping.ts';
import { DEFAULT_REDIS_TIMEOUT_MS, RedisScript } from '../budgets/redis-script.ts';
import { checkArgs, checkResponse, conflict, inProgress, newToken, parseBody, storageKey, ttls, unavailable } from './common.ts';
import type { IdempotencyBegin, IdempotencyStore, IdempotencyStoreOptions, IdempotentResponse } from './types.ts';

// KEYS[1]; ARGV: fingerprint, token, in-progress ttl ms. (SET NX semantics plus the checks, atomically.)
const BEGIN = new RedisScript(`
local cur = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'body')
if not cur[1] then
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'new'}
end
if cur[2] ~= ARGV[1] then return {'conflict'} end
if cur[1] == 'running' then return {'in_progress'} end
return {'replay', cur[3], cur[4]}
`, 1);

// KEYS[1]; ARGV: fingerprint, token ('' = any holder), status, body, ttl ms.
const FINISH = new RedisScript(`
local cur = redis.call('HMGET', KEYS[1], 'state', 'fp', 'token')
if cur[1] ~= 'running' or cur[2] ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and cur[3] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[3], 'body', ARGV[4])
redis.call('HDEL', KEYS[1], 'token')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`, 1);

// KEYS[1]; ARGV: fingerprint, token ('' = any holder).
const RELEASE = new RedisScript(`
local cur = redis.call('HMGET', KEYS[1], 'state', 'fp', 'token')
if cur[1] ~= 'running' or cur[2] ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and cur[3] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`, 1);

function replayed(status: unknown, body: unknown): IdempotentResponse {
  try {
    return { status: Number(status), body: parseBody(String(body)) };
  } catch (e) {
    unavailable(e);
  }
}

export interface RedisIdempotencyStoreOptions extends IdempotencyStoreOptions {
  /** Key prefix (default `portcullis:idem:`). */
  prefix?: string;
  /** Upper bound per Redis call in ms (default 2000). */
  timeoutMs?: number;
}

export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly ttlMs: number;
  private readonly lockMs: number;

  /** `redis` is owned by the caller; create it with `enableOfflineQueue: false` and a short `commandTimeout`. */
  constructor(private readonly redis: Redis, options: RedisIdempotencyStoreOptions = {}) {
    this.prefix = options.prefix ?? 'portcullis:idem:';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    ({ ttlMs: this.ttlMs, lockMs: this.lockMs } = ttls(options));
  }

  private k(scope: string, key: string): string {
    return this.prefix + storageKey(scope, key);
  }

  private async run(script: RedisScript, key: string, args: string[]): Promise<unknown> {
    try {
      return await script.run(this.redis, [key], args, this.timeoutMs);
    } catch (e) {
      unavailable(e);
    }
  }

  async begin(scope: string, key: string, fingerprint: string): Promise<IdempotencyBegin> {
    checkArgs(scope, key, fingerprint);
    const token = newToken();
    const r = await this.run(BEGIN, this.k(scope, key), [fingerprint, token, String(this.lockMs)]);
    if (!Array.isArray(r)) unavailable(new Error('unexpected idempotency script reply'));
    switch (r[0]) {
      case 'new': return { state: 'new', token };
      case 'conflict': throw conflict();
      case 'in_progress': throw inProgress();
      case 'replay': return { state: 'replay', response: replayed(r[1], r[2]) };
      default: unavailable(new Error('unexpected idempotency script reply'));
    }
  }

  async finish(scope: string, key: string, fingerprint: string, response: IdempotentResponse, token?: string): Promise<boolean> {
    checkArgs(scope, key, fingerprint);
    const body = checkResponse(response);
    return (await this.run(FINISH, this.k(scope, key), [fingerprint, token ?? '', String(response.status), body, String(this.ttlMs)])) === 1;
  }

  async release(scope: string, key: string, fingerprint: string, token?: string): Promise<boolean> {
    checkArgs(scope, key, fingerprint);
    return (await this.run(RELEASE, this.k(scope, key), [fingerprint, token ?? ''])) === 1;
  }

  async ping(): Promise<boolean> {
    return pingRedis(this.redis, this.timeoutMs);
  }

  /** The Redis client belongs to the caller. */
  async close(): Promise<void> {}
}
