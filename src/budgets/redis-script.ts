// One Lua script run with EVALSHA, falling back to EVAL when Redis answers NOSCRIPT (first use,
// restart, SCRIPT FLUSH). Every call is bounded by a timeout so a dead Redis fails fast instead of
// hanging a request; a timed-out script may still run later, which can only over-count a budget.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/** Default upper bound for one script call, on top of the client's own commandTimeout. */
export const DEFAULT_REDIS_TIMEOUT_MS = 2000;

export class RedisTimeoutError extends Error {
  constructor(ms: number) {
    super(`redis call exceeded ${ms} ms`);
    this.name = 'RedisTimeoutError';
  }
}

/** Races `p` against a timer; the loser's rejection is swallowed so it is never unhandled. */
export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisTimeoutError(ms)), ms);
    timer.unref();
  });
  p.catch(() => {});
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function isNoScript(e: unknown): boolean {
  // NOSCRIPT is the protocol's error code (the reply's first word), not free text.
  return e instanceof Error && e.message.startsWith('NOSCRIPT');
}

export class RedisScript {
  readonly sha: string;

  constructor(readonly lua: string, private readonly numberOfKeys: number) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  /** Runs the script (keys then args); rejects on any Redis failure or after `timeoutMs`. */
  run(redis: Redis, keys: string[], args: (string | number)[], timeoutMs = DEFAULT_REDIS_TIMEOUT_MS): Promise<unknown> {
    if (keys.length !== this.numberOfKeys) throw new TypeError(`script expects ${this.numberOfKeys} keys, got ${keys.length}`);
    const call = async () => {
      try {
        return await redis.evalsha(this.sha, this.numberOfKeys, ...keys, ...args);
      } catch (e) {
        if (!isNoScript(e)) throw e;
        return await redis.eval(this.lua, this.numberOfKeys, ...keys, ...args);
      }
    };
    return withTimeout(call(), timeoutMs);
  }
}
