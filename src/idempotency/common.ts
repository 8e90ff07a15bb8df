// Shared checks of the Idempotency-Key stores: argument validation, storage key derivation, errors.
import { createHash, randomBytes } from 'node:crypto';
import { GateError } from '../errors.ts';
import type { IdempotencyStoreOptions, IdempotentResponse } from './types.ts';

/** The header's grammar: 1..255 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** The fingerprint binding a key to one call: action id + the canonical request hash. */
export function idempotencyFingerprint(actionId: string, requestHash: string): string {
  return `${actionId}:${requestHash}`;
}

export function checkArgs(scope: string, key: string, fingerprint: string): void {
  if (typeof scope !== 'string' || scope.length === 0) throw new TypeError('scope is required');
  if (typeof fingerprint !== 'string' || fingerprint.length === 0 || fingerprint.length > 1024) throw new TypeError('fingerprint must be 1..1024 characters');
  if (typeof key !== 'string' || !IDEMPOTENCY_KEY.test(key)) throw new GateError('invalid_request', 'Idempotency-Key must be 1-255 visible ASCII characters');
}

export function checkResponse(r: IdempotentResponse): string {
  if (!Number.isInteger(r.status) || r.status < 100 || r.status > 599) throw new TypeError('response.status must be an HTTP status');
  if (typeof r.body !== 'object' || r.body === null || Array.isArray(r.body)) throw new TypeError('response.body must be an object');
  return JSON.stringify(r.body);
}

/** A fixed-length storage key per (scope, key); the scope is length-prefixed so no two pairs collide. */
export function storageKey(scope: string, key: string): string {
  return createHash('sha256').update(`${scope.length}:${scope}\n${key}`).digest('hex');
}

export function newToken(): string {
  return randomBytes(16).toString('hex');
}

export function ttls(o: IdempotencyStoreOptions): { ttlMs: number; lockMs: number } {
  const ttlMs = (o.ttlSeconds ?? 86_400) * 1000;
  const lockMs = (o.inProgressTtlSeconds ?? 300) * 1000;
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new TypeError('ttlSeconds must be a positive integer');
  if (!Number.isSafeInteger(lockMs) || lockMs <= 0) throw new TypeError('inProgressTtlSeconds must be a positive integer');
  return { ttlMs, lockMs };
}

export function conflict(): GateError {
  return new GateError('idempotency_key_conflict', 'Idempotency-Key was used with a different request');
}

export function inProgress(): GateError {
  return new GateError('idempotency_in_progress', 'a request with this Idempotency-Key is still running');
}

export function unavailable(e: unknown): never {
  if (e instanceof GateError) throw e;
  throw new GateError('idempotency_store_unavailable', 'idempotency store failed', { cause: e });
}

export function parseBody(raw: string): Record<string, unknown> {
  const body = JSON.parse(raw) as unknown;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('stored idempotent body is not an object');
  return body as Record<string, unknown>;
}
