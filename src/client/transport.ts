// HTTP over a Unix socket (or loopback TCP in dev), keep-alive, JSON in and out.
import { request, Agent, type IncomingHttpHeaders } from 'node:http';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: unknown;
  text: string;
}

export interface Transport {
  send(method: string, path: string, headers: Record<string, string>, body?: string): Promise<RawResponse>;
  close(): void;
}

/** A keep-alive transport to `socketPath` (or `http://127.0.0.1:port` in dev). */
export function unixTransport(socketPath: string, opts: { maxSockets?: number; timeoutMs?: number } = {}): Transport {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 64 });
  const timeout = opts.timeoutMs ?? 60_000;
  return {
    send(method, path, headers, body) {
      return new Promise((resolve, reject) => {
        const req = request({
          socketPath, path, method, agent, timeout,
          headers: { host: 'localhost', ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers },
        }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try { parsed = text ? JSON.parse(text) : undefined; } catch { /* not JSON (e.g. metrics) */ }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, text });
          });
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error(`request timed out after ${timeout} ms`)));
        req.on('error', reject);
        if (body !== undefined) req.write(body);
        req.end();
      });
    },
    close() {
      agent.destroy();
    },
  };
}
