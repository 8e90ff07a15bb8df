// Shared fixtures for the egress tests: loopback upstreams that record what they receive, and an
// injected resolver that counts its calls (no test touches the real network or the OS resolver).
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import type { ResolvedAddress, Resolver } from '../../src/egress/guard.ts';
import { GateError, type GateErrorCode } from '../../src/errors.ts';

export interface Hit {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  servername?: string;
}

export interface Upstream {
  port: number;
  hits: Hit[];
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, hit: Hit) => void;

/** Starts a loopback HTTP (or HTTPS with `tls`) server; closed after the test. */
export async function startUpstream(t: TestContext | { after: (fn: () => unknown) => void }, handler: Handler, tls?: https.ServerOptions): Promise<Upstream> {
  const hits: Hit[] = [];
  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const hit: Hit = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        servername: (req.socket as { servername?: string }).servername,
      };
      hits.push(hit);
      handler(req, res, hit);
    });
  };
  const server = tls ? https.createServer(tls, listener) : http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as AddressInfo).port, hits };
}

export type Answer = string[] | Error | ((call: number) => string[]);

/** A resolver over a fixed table; `calls` counts every call per name. Unknown names fail like NXDOMAIN. */
export function tableResolver(table: Record<string, Answer>): Resolver & { calls: Map<string, number>; total: () => number } {
  const calls = new Map<string, number>();
  const resolve = async (hostname: string): Promise<ResolvedAddress[]> => {
    const n = (calls.get(hostname) ?? 0) + 1;
    calls.set(hostname, n);
    const entry = Object.hasOwn(table, hostname) ? table[hostname] : undefined;
    if (entry === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    if (entry instanceof Error) throw entry;
    const list = typeof entry === 'function' ? entry(n) : entry;
    return list.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(resolve, { calls, total: () => [...calls.values()].reduce((a, b) => a + b, 0) });
}

/** Asserts a GateError with the code (and reason, and any other extra fields given). */
export function isGate(code: GateErrorCode, extra: Record<string, unknown> = {}): (err: unknown) => boolean {
  return (err: unknown) => {
    if (!(err instanceof GateError)) throw new Error(`expected GateError ${code}, got ${String(err)}`, { cause: err });
    if (err.code !== code) throw new Error(`expected ${code}, got ${err.code} ${JSON.stringify(err.extra)}`);
    for (const [k, v] of Object.entries(extra)) {
      if (err.extra?.[k] !== v) throw new Error(`expected extra.${k}=${String(v)}, got ${JSON.stringify(err.extra)}`);
    }
    return true;
  };
}

export const LIMITS = { max_host_response_bytes: 1 << 20, timeout_ms: 5000 };
