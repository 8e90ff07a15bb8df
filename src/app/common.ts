// What both sockets share: the error handler (GateError -> contract body; anything else -> 500
// internal_error logged with the trace id), trace ids, the body size limit, JSON body parsing.
import type { IncomingMessage } from 'node:http';
import type { Context, Hono, MiddlewareHandler } from 'hono';
import { uuidv7 } from '../ids.ts';
import { GateError, errorBody, sanitizeReason, toGateError } from '../errors.ts';
import type { GateEnv } from '../http/env.ts';
import { publish } from '../observe.ts';

export function newId(prefix: string): string {
  return `${prefix}_${uuidv7()}`;
}

/** Transport-level request body limit (contract: 1 MB -> 413). */
export const MAX_BODY_BYTES = 1024 * 1024;

export function traceIds(): MiddlewareHandler<GateEnv> {
  return async (c, next) => {
    c.set('traceId', newId('trc'));
    await next();
  };
}

export function installErrorHandler(app: Hono<GateEnv>, socket: 'client' | 'admin', nonce?: () => string | undefined): void {
  app.onError((err, c) => {
    const ge = toGateError(err);
    if (ge.status >= 500) {
      // The path is the caller's (percent-decoded): no control characters into a log line.
      publish('error', { trace_id: c.get('traceId'), socket, code: ge.code, path: sanitizeReason(c.req.path), message: ge.message, cause: ge.cause ?? (err instanceof GateError ? undefined : err) });
    }
    if (ge.status === 401) {
      publish('auth_rejected', { socket, code: ge.code });
      c.header('WWW-Authenticate', `DPoP algs="ES256", error="${ge.code === 'use_dpop_nonce' ? 'use_dpop_nonce' : 'invalid_token'}"`);
    }
    const n = nonce?.();
    if (n) c.header('DPoP-Nonce', n);
    return c.json(errorBody(ge), ge.status as 400);
  });
  app.notFound((c) => c.json({ error: 'not_found' }, 404));
}

/**
 * Reads the body, never holding more than `maxBytes`: a chunked body (no content-length) is
 * refused as soon as it passes the cap, not after it has been buffered whole.
 */
export async function readCappedBody(c: Context<GateEnv>, maxBytes: number): Promise<Uint8Array> {
  const len = c.req.header('content-length');
  if (len !== undefined && Number(len) > maxBytes) throw new GateError('payload_too_large');
  // Under @hono/node-server, read the Node request directly: building the web Request and its
  // ReadableStream costs more than the rest of the transport (docs/benchmarks.md).
  const incoming = (c.env as Partial<GateEnv['Bindings']> | undefined)?.incoming;
  if (incoming && typeof incoming.on === 'function' && !incoming.readableDidRead && !incoming.destroyed) return readIncoming(incoming, maxBytes);
  const stream = c.req.raw.body;
  if (!stream) return new Uint8Array(0);
  const reader = stream.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      // The rest is left unread: the server drains (bounded) or closes the connection after the 413.
      if (total > maxBytes) throw new GateError('payload_too_large');
      parts.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return Buffer.concat(parts, total);
}

/** The whole body of a Node request, refused (413) as soon as it passes `maxBytes`. */
function readIncoming(incoming: IncomingMessage, maxBytes: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let total = 0;
    const done = (err?: unknown) => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('close', onClose);
      if (err === undefined) resolve(Buffer.concat(parts, total));
      else reject(err);
    };
    const onData = (chunk: Buffer | string) => {
      const b = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      total += b.byteLength;
      if (total > maxBytes) {
        // The rest is left unread: the server drains (bounded) or closes the connection after the 413.
        incoming.pause();
        done(new GateError('payload_too_large'));
        return;
      }
      parts.push(b);
    };
    const onEnd = () => done();
    const onError = (e: unknown) => done(new GateError('invalid_request', 'request body could not be read', { cause: e }));
    // A client that goes away mid-body: 'close' without 'end'.
    const onClose = () => {
      if (!incoming.complete) done(new GateError('invalid_request', 'request body incomplete'));
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('close', onClose);
  });
}

/** Reads a JSON object body with a byte cap; bad JSON -> 400 invalid_request; too big -> 413. */
export async function readJsonBody(c: Context<GateEnv>, maxBytes = MAX_BODY_BYTES, opts: { optional?: boolean } = {}): Promise<unknown> {
  const buf = await readCappedBody(c, maxBytes);
  if (buf.byteLength === 0) {
    if (opts.optional) return undefined;
    throw new GateError('invalid_request', 'empty body');
  }
  const ct = c.req.header('content-type');
  if (ct !== undefined && !/^application\/(.+\+)?json\s*(;|$)/i.test(ct)) throw new GateError('unsupported_media_type');
  return decodeJson(buf);
}

/** Strict UTF-8 JSON from bytes; anything else is 400 invalid_request. */
export function decodeJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new GateError('invalid_request', 'body is not valid UTF-8 JSON');
  }
}
