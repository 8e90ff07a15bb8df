// Redis implementations of the core stores (production). Commands fail fast when Redis is down
// (no offline queue, short command timeout), so a request gets a 503 instead of hanging.
import { Redis, type RedisOptions } from 'ioredis';
import { GateError } from '../errors.ts';
import type { ReplayStore, RevocationState, RevocationStore } from './types.ts';

/** Parses redis://, rediss:// and redis+unix:///path (or unix:///path) URLs into ioredis options. */
export function redisOptions(url: string): RedisOptions {
  const base: RedisOptions = {
    lazyConnect: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 2000,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(50 * times, 1000),
  };
  const u = new URL(url);
  if (u.protocol === 'redis+unix:' || u.protocol === 'unix:') {
    return { ...base, path: decodeURIComponent(u.pathname), db: Number(u.searchParams.get('db') ?? 0) };
  }
  return {
    ...base,
    host: u.hostname,
    port: Number(u.port || 6379),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: Number(u.pathname.replace('/', '') || 0),
    tls: u.protocol === 'rediss:' ? {} : undefined,
  };
}

export function createRedis(url: string): Redis {
  const r = new Redis(redisOptions(url));
  // Connection errors surface on each command; the 'error' event must have a listener.
  r.on('error', () => {});
  return r;
}

/** Waits until the client is ready (or `timeoutMs` passes: the gate then starts not-ready and keeps retrying). */
export function waitReady(r: Redis, timeoutMs = 3000): Promise<boolean> {
  if (r.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => { r.off('ready', on); resolve(false); }, timeoutMs);
    const on = () => { clearTimeout(t); resolve(true); };
    r.once('ready', on);
  });
}

const EPOCH_KEY = 'portcullis:epoch';

export class RedisReplayStore implements ReplayStore {
  constructor(private readonly redis: Redis, private readonly prefix = 'portcullis:jti:') {}

  async markUsed(key: string, ttlMs: number): Promise<boolean> {
    try {
      const r = await this.redis.set(this.prefix + key, '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
      return r === 'OK';
    } catch (e) {
      throw new GateError('replay_cache_unavailable', 'redis replay store failed', { cause: e });
    }
  }

  async close(): Promise<void> { /* the shared client is closed by its owner */ }
}

// Raises the epoch to ARGV[1] when it is below (never lowers it); returns the epoch after.
const RAISE_EPOCH = "local cur = tonumber(redis.call('GET', KEYS[1]) or '0'); local f = tonumber(ARGV[1]); if cur < f then redis.call('SET', KEYS[1], ARGV[1]); return f end; return cur";
// Advances from max(stored, ARGV[1]): an empty Redis must not restart the count below what was seen.
const ADVANCE_EPOCH = "local cur = tonumber(redis.call('GET', KEYS[1]) or '0'); local f = tonumber(ARGV[1]); if cur < f then cur = f end; cur = cur + 1; redis.call('SET', KEYS[1], tostring(cur)); return cur";

export class RedisRevocationStore implements RevocationStore {
  /**
   * The highest epoch this process has seen. A Redis that restarted empty (or was flushed) would
   * otherwise roll the kill switch back until the durable floor is re-applied (epoch-floor.ts, every
   * 5 s): any lower read is raised back at once, so old leases never become valid again.
   */
  private seen = 0;

  constructor(private readonly redis: Redis) {}

  private fail(e: unknown): never {
    throw new GateError('epoch_store_unavailable', 'redis revocation store failed', { cause: e });
  }

  private async observed(raw: string | null): Promise<number> {
    const epoch = Number(raw ?? 0);
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new Error('revocation epoch is not a non-negative integer');
    if (epoch >= this.seen) {
      this.seen = epoch;
      return epoch;
    }
    const raised = Number(await this.redis.eval(RAISE_EPOCH, 1, EPOCH_KEY, String(this.seen)));
    if (raised > this.seen) this.seen = raised;
    return raised;
  }

  async currentEpoch(): Promise<number> {
    try {
      return await this.observed(await this.redis.get(EPOCH_KEY));
    } catch (e) { this.fail(e); }
  }

  async advanceEpoch(): Promise<[number, number]> {
    try {
      const next = Number(await this.redis.eval(ADVANCE_EPOCH, 1, EPOCH_KEY, String(this.seen)));
      if (next > this.seen) this.seen = next;
      return [next - 1, next];
    } catch (e) { this.fail(e); }
  }

  async state(sessionId: string, principal: string): Promise<RevocationState> {
    try {
      const [epoch, ses, pri] = await this.redis.mget(EPOCH_KEY, `portcullis:revoked:session:${sessionId}`, `portcullis:revoked:principal:${principal}`);
      return { epoch: await this.observed(epoch ?? null), sessionRevoked: ses !== null, principalRevokedBefore: Number(pri ?? 0) };
    } catch (e) { this.fail(e); }
  }

  async revokeSession(sessionId: string, ttlMs: number): Promise<void> {
    try {
      await this.redis.set(`portcullis:revoked:session:${sessionId}`, '1', 'PX', Math.ceil(ttlMs));
    } catch (e) { this.fail(e); }
  }

  async revokePrincipal(principal: string, atMs: number, ttlMs: number): Promise<void> {
    try {
      // Keep the later of an existing mark and this one (never move a revocation backwards).
      await this.redis.eval(
        "local cur = tonumber(redis.call('GET', KEYS[1]) or '0'); if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end; return 1",
        1, `portcullis:revoked:principal:${principal}`, String(atMs), String(Math.ceil(ttlMs)));
    } catch (e) { this.fail(e); }
  }

  async ping(): Promise<boolean> {
    try { return (await this.redis.ping()) === 'PONG'; } catch { return false; }
  }

  async close(): Promise<void> {}
}
