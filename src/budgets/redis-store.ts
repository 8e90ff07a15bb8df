// Redis budget store (production). Every debit is one Lua script that reads the session counter,
// the principal's budget and its window counter, and debits all of them or none: exact under any
// concurrency and across gate instances sharing the Redis. Any Redis failure is budget_store_unavailable.
import { randomUUID } from 'node:crypto';
import { pingRedis } from '../stores/ping.ts';
import type { Redis } from 'ioredis';
import { systemClock, type Clock } from '../contracts.ts';
import { GateError } from '../errors.ts';
import { checkPrincipal, checkQuery, parseStoredBudget, validatePrincipalBudget } from './config.ts';
import { DEFAULT_REDIS_TIMEOUT_MS, RedisScript, withTimeout } from './redis-script.ts';
import { debitFromRaw, failFromStatus, snapshotFromRaw, type RawBudgetState } from './result.ts';
import type { BudgetDebitResult, BudgetQuery, BudgetSnapshot, BudgetStore, PrincipalBudget } from './types.ts';

export interface RedisBudgetStoreOptions {
  clock?: Clock;
  /** Key prefix (default `portcullis:budget:`). */
  prefix?: string;
  /** Upper bound per Redis call in ms (default 2000). */
  timeoutMs?: number;
  /** How long a debit can still be refunded, in seconds (default 3600). */
  debitRecordTtlSeconds?: number;
}

// Shared by the snapshot and debit scripts. KEYS: session, principal budget, principal window.
// ARGV: now_ms, lease_required (1/0), action_id, explicit cost ('' = none).
const PRELUDE = `
local function s(x) if x == false then return '' end return string.format('%.0f', x) end
local now = tonumber(ARGV[1])
local sess = redis.call('HMGET', KEYS[1], 'max', 'used')
local lease_left = false
if sess[1] then
  lease_left = tonumber(sess[1]) - tonumber(sess[2] or '0')
elseif ARGV[2] == '1' then
  return {'session_not_found'}
end
local cfg = false
local raw = redis.call('GET', KEYS[2])
if raw then cfg = cjson.decode(raw) end
local action = ARGV[3]
local cost
if cfg and type(cfg.action_costs) == 'table' and type(cfg.action_costs[action]) == 'number' then
  cost = cfg.action_costs[action]
elseif ARGV[4] ~= '' then
  cost = tonumber(ARGV[4])
elseif cfg and type(cfg.default_cost) == 'number' then
  cost = cfg.default_cost
else
  cost = 1
end
local calls_left, cost_left = false, false
local ws, wstart, wcalls, wcost, wend = 0, 0, 0, 0, false
if cfg then
  ws = tonumber(cfg.window_seconds)
  wstart = now - (now % (ws * 1000))
  wend = wstart + ws * 1000
  local w = redis.call('HMGET', KEYS[3], 'ws', 'start', 'calls', 'cost')
  -- A window never moves backwards: an instance whose clock lags keeps counting in the newer window.
  if w[1] and tonumber(w[1]) == ws and tonumber(w[2]) >= wstart then
    wstart = tonumber(w[2])
    wend = wstart + ws * 1000
    wcalls = tonumber(w[3])
    wcost = tonumber(w[4])
  end
  if type(cfg.max_calls) == 'number' then calls_left = cfg.max_calls - wcalls end
  if type(cfg.max_cost) == 'number' then cost_left = cfg.max_cost - wcost end
end
local by = ''
if lease_left ~= false and lease_left < 1 then by = 'lease'
elseif calls_left ~= false and calls_left < 1 then by = 'principal_calls'
elseif cost_left ~= false and cost_left < cost then by = 'principal_cost' end
`;

const SNAPSHOT = new RedisScript(`${PRELUDE}
return {'ok', by, s(lease_left), s(calls_left), s(cost_left), s(cost), s(wend)}
`, 3);

// KEYS[4]: the debit record. ARGV[5]: its ttl (ms), ARGV[6]: session id, ARGV[7]: principal.
const DEBIT = new RedisScript(`${PRELUDE}
if by ~= '' then
  return {'exhausted', by, s(lease_left), s(calls_left), s(cost_left), s(cost), s(wend)}
end
if lease_left ~= false then
  redis.call('HINCRBY', KEYS[1], 'used', 1)
  lease_left = lease_left - 1
end
if cfg then
  redis.call('HSET', KEYS[3], 'ws', s(ws), 'start', s(wstart), 'calls', s(wcalls + 1), 'cost', s(wcost + cost))
  -- Expiry only collects garbage (a stale window never matches ws/start); relative, so Redis's clock does not matter.
  redis.call('PEXPIRE', KEYS[3], s(wend - now + 1000))
  if calls_left ~= false then calls_left = calls_left - 1 end
  if cost_left ~= false then cost_left = cost_left - cost end
end
redis.call('HSET', KEYS[4], 'sid', ARGV[6], 'principal', ARGV[7], 'lease', lease_left ~= false and '1' or '0',
  'ws', s(ws), 'start', s(wstart), 'cost', s(cost), 'windowed', cfg and '1' or '0')
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return {'ok', by, s(lease_left), s(calls_left), s(cost_left), s(cost), s(wend)}
`, 4);

// KEYS: debit record, session, principal window. Deletes the record first so a refund happens once.
const REFUND = new RedisScript(`
local d = redis.call('HMGET', KEYS[1], 'lease', 'windowed', 'ws', 'start', 'cost')
if not d[1] then return 0 end
redis.call('DEL', KEYS[1])
if d[1] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  if tonumber(redis.call('HGET', KEYS[2], 'used') or '0') > 0 then redis.call('HINCRBY', KEYS[2], 'used', -1) end
end
if d[2] == '1' then
  local w = redis.call('HMGET', KEYS[3], 'ws', 'start', 'calls', 'cost')
  if w[1] == d[3] and w[2] == d[4] then
    local calls = math.max(tonumber(w[3]) - 1, 0)
    local cost = math.max(tonumber(w[4]) - tonumber(d[5]), 0)
    redis.call('HSET', KEYS[3], 'calls', string.format('%.0f', calls), 'cost', string.format('%.0f', cost))
  end
end
return 1
`, 3);

// KEYS: session. ARGV: max_calls, ttl ms. Never resets an existing counter.
const INIT = new RedisScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'max', ARGV[1], 'used', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`, 1);

export class RedisBudgetStore implements BudgetStore {
  private readonly clock: Clock;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly debitTtlMs: number;

  /** `redis` is owned by the caller; create it with `enableOfflineQueue: false` and a short `commandTimeout`. */
  constructor(private readonly redis: Redis, options: RedisBudgetStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.prefix = options.prefix ?? 'portcullis:budget:';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    this.debitTtlMs = (options.debitRecordTtlSeconds ?? 3600) * 1000;
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) throw new TypeError('timeoutMs must be positive');
    if (!Number.isSafeInteger(this.debitTtlMs) || this.debitTtlMs <= 0) throw new TypeError('debitRecordTtlSeconds must be a positive integer');
  }

  private sessionKey(id: string) { return `${this.prefix}session:${id}`; }
  private configKey(p: string) { return `${this.prefix}principal:${p}`; }
  private windowKey(p: string) { return `${this.prefix}window:${p}`; }
  private debitKey(id: string) { return `${this.prefix}debit:${id}`; }
  private get indexKey() { return `${this.prefix}principals`; }

  private unavailable(e: unknown): never {
    if (e instanceof GateError) throw e;
    throw new GateError('budget_store_unavailable', 'redis budget store failed', { cause: e });
  }

  private async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await withTimeout(op(), this.timeoutMs);
    } catch (e) {
      this.unavailable(e);
    }
  }

  async initSession(sessionId: string, budgets: { max_calls: number }, ttlSeconds: number): Promise<void> {
    if (typeof sessionId !== 'string' || sessionId.length === 0) throw new TypeError('sessionId is required');
    if (!Number.isSafeInteger(budgets.max_calls) || budgets.max_calls < 0) throw new TypeError('max_calls must be a non-negative integer');
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new TypeError('ttlSeconds must be positive');
    await this.guard(() => INIT.run(this.redis, [this.sessionKey(sessionId)], [String(budgets.max_calls), String(Math.ceil(ttlSeconds * 1000))], this.timeoutMs));
  }

  async extendSession(sessionId: string, ttlSeconds: number): Promise<void> {
    if (typeof sessionId !== 'string' || sessionId.length === 0) throw new TypeError('sessionId is required');
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new TypeError('ttlSeconds must be positive');
    const ms = Math.ceil(ttlSeconds * 1000);
    // Only lengthens a live counter (PEXPIRE on a missing key is a no-op; GT never shortens).
    await this.guard(() => this.redis.eval(
      "local t = redis.call('PTTL', KEYS[1]); if t >= 0 and t < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end; return 1",
      1, this.sessionKey(sessionId), String(ms)));
  }

  private args(q: BudgetQuery): (string | number)[] {
    return [String(this.clock.now()), q.lease?.max_calls !== undefined ? '1' : '0', q.actionId, q.cost === undefined ? '' : String(q.cost)];
  }

  async snapshot(q: BudgetQuery): Promise<BudgetSnapshot> {
    checkQuery(q);
    const raw = await this.guard(() => SNAPSHOT.run(this.redis,
      [this.sessionKey(q.sessionId), this.configKey(q.principal), this.windowKey(q.principal)], this.args(q), this.timeoutMs));
    return snapshotFromRaw(parseRaw(raw));
  }

  async debit(q: BudgetQuery): Promise<BudgetDebitResult> {
    checkQuery(q);
    const debitId = `dbt_${randomUUID()}`;
    const raw = parseRaw(await this.guard(() => DEBIT.run(this.redis,
      [this.sessionKey(q.sessionId), this.configKey(q.principal), this.windowKey(q.principal), this.debitKey(debitId)],
      [...this.args(q), String(this.debitTtlMs), q.sessionId, q.principal], this.timeoutMs)));
    if (raw.status !== 'ok') failFromStatus(raw, this.clock.now());
    return debitFromRaw(debitId, raw);
  }

  async refund(debitId: string): Promise<boolean> {
    if (typeof debitId !== 'string' || !debitId.startsWith('dbt_')) return false;
    return this.guard(async () => {
      const [sid, principal] = await this.redis.hmget(this.debitKey(debitId), 'sid', 'principal');
      if (typeof sid !== 'string' || typeof principal !== 'string') return false;
      const r = await REFUND.run(this.redis, [this.debitKey(debitId), this.sessionKey(sid), this.windowKey(principal)], [], this.timeoutMs);
      return r === 1;
    });
  }

  async setPrincipalBudget(budget: PrincipalBudget): Promise<PrincipalBudget> {
    const b = validatePrincipalBudget(budget);
    await this.guard(async () => {
      const res = await this.redis.multi().set(this.configKey(b.principal), JSON.stringify(b)).sadd(this.indexKey, b.principal).exec();
      for (const [err] of res ?? [[new Error('transaction aborted')]]) if (err) throw err;
    });
    return b;
  }

  async getPrincipalBudget(principal: string): Promise<PrincipalBudget | undefined> {
    checkPrincipal(principal);
    const raw = await this.guard(() => this.redis.get(this.configKey(principal)));
    return raw === null ? undefined : this.parseConfig(raw);
  }

  async listPrincipalBudgets(): Promise<PrincipalBudget[]> {
    return this.guard(async () => {
      const names = (await this.redis.smembers(this.indexKey)).sort();
      if (names.length === 0) return [];
      const raws = await this.redis.mget(...names.map((n) => this.configKey(n)));
      return raws.filter((r): r is string => r !== null).map((r) => this.parseConfig(r));
    });
  }

  async removePrincipalBudget(principal: string): Promise<boolean> {
    checkPrincipal(principal);
    return this.guard(async () => {
      const res = await this.redis.multi().del(this.configKey(principal)).del(this.windowKey(principal)).srem(this.indexKey, principal).exec();
      if (!res) throw new Error('transaction aborted');
      for (const [err] of res) if (err) throw err;
      return res[0]?.[1] === 1;
    });
  }

  private parseConfig(raw: string): PrincipalBudget {
    return parseStoredBudget(raw);
  }

  async ping(): Promise<boolean> {
    return pingRedis(this.redis, this.timeoutMs);
  }

  /** The Redis client belongs to the caller. */
  async close(): Promise<void> {}
}

function parseRaw(raw: unknown): RawBudgetState {
  if (!Array.isArray(raw) || typeof raw[0] !== 'string') throw new GateError('budget_store_unavailable', 'unexpected budget script reply');
  const [status, by, lease, calls, cost, charge, wend] = raw as string[];
  const num = (v: string | undefined) => (v === undefined || v === '' ? null : Number(v));
  return {
    status: status as RawBudgetState['status'],
    by: (by || null) as RawBudgetState['by'],
    leaseLeft: num(lease),
    callsLeft: num(calls),
    costLeft: num(cost),
    cost: num(charge) ?? 0,
    windowEnd: num(wend),
  };
}
