// Idempotency keys on execute: one fingerprint and one final response per (principal, key).
import type Database from 'better-sqlite3';
import type { Redis } from 'ioredis';
import type { Clock } from '../contracts.ts';
import { RedisIdempotencyStore, type RedisIdempotencyStoreOptions } from './redis-store.ts';
import { SqliteIdempotencyStore } from './sqlite-store.ts';
import type { IdempotencyStore, IdempotencyStoreOptions } from './types.ts';

export type { IdempotencyBegin, IdempotencyStore, IdempotencyStoreOptions, IdempotentResponse } from './types.ts';
export { IDEMPOTENCY_KEY, idempotencyFingerprint } from './common.ts';
export { RedisIdempotencyStore, type RedisIdempotencyStoreOptions } from './redis-store.ts';
export { SqliteIdempotencyStore, migrateSqliteIdempotency, type SqliteIdempotencyStoreOptions } from './sqlite-store.ts';

export type IdempotencyBackend = { kind: 'redis'; redis: Redis } | { kind: 'sqlite'; db: Database.Database };

/** The store for the gate's mode: Redis in production, the embedded state database otherwise. */
export function createIdempotencyStore(backend: IdempotencyBackend, options: IdempotencyStoreOptions & RedisIdempotencyStoreOptions & { clock?: Clock } = {}): IdempotencyStore {
  return backend.kind === 'redis' ? new RedisIdempotencyStore(backend.redis, options) : new SqliteIdempotencyStore(backend.db, options);
}
