// Input: size cap, the action's request schema (ajv), then RFC 8785 canonical form and
// request_hash = "sha256:" + hex(SHA-256(canonical)).
import { hash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { GateError } from '../../errors.ts';
import type { Stage } from '../context.ts';
import { assertRequest } from '../../registry/index.ts';

export const inputSchema: Stage = async (ctx) => {
  const m = ctx.action!.manifest;
  const size = Buffer.byteLength(JSON.stringify(ctx.body) ?? '', 'utf8');
  if (size > m.max_request_bytes) throw new GateError('payload_too_large', `request exceeds max_request_bytes (${m.max_request_bytes})`);
  assertRequest(ctx.action!, ctx.body);
};

/** RFC 8785 canonical form of a request and its `request_hash` ("sha256:" + hex). */
export function hashRequest(body: unknown): { canonical: string; requestHash: string } {
  const canonical = (canonicalize as unknown as (v: unknown) => string | undefined)(body);
  if (canonical === undefined) throw new GateError('invalid_request', 'request is not canonicalizable JSON');
  return { canonical, requestHash: `sha256:${hash('sha256', canonical, 'hex')}` };
}

export const canonicalizeRequest: Stage = async (ctx) => {
  ({ canonical: ctx.canonical, requestHash: ctx.requestHash } = hashRequest(ctx.body));
};
