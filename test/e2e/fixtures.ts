// Fixtures for end-to-end tests: a manifests dir (the real manifests, plus webhook actions aimed
// at a loopback upstream reachable only through the unsafe test range) and a recording upstream.
import { mkdtempSync, readFileSync, writeFileSync, readdirSync, symlinkSync, mkdirSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');

export interface Upstream {
  url: string;
  port: number;
  requests: Array<{ method: string; path: string; headers: IncomingHttpHeaders; body: string }>;
  close(): Promise<void>;
}

/** A loopback HTTP server that records requests and echoes the Authorization header back (to test scrubbing). */
export async function startUpstream(): Promise<Upstream> {
  const requests: Upstream['requests'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      requests.push({ method: req.method!, path: req.url!, headers: req.headers, body });
      const auth = String(req.headers.authorization ?? '');
      const token = auth.replace(/^Bearer /, '');
      res.writeHead(200, { 'content-type': 'application/json', 'x-echo-auth': auth });
      res.end(JSON.stringify({ ok: true, echoed: auth, b64: Buffer.from(token).toString('base64'), url: encodeURIComponent(token) }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** Copies the real manifests and adds loopback variants of webhook_notify (medium) and webhook_high (high). */
export function makeManifestsDir(): string {
  const base = mkdtempSync(join(tmpdir(), 'portcullis-manifests-'));
  const dir = join(base, 'manifests');
  mkdirSync(dir);
  symlinkSync(join(ROOT, 'providers'), join(base, 'providers'));
  for (const f of readdirSync(join(ROOT, 'manifests'))) {
    if (f.endsWith('.json')) writeFileSync(join(dir, f), readFileSync(join(ROOT, 'manifests', f)));
  }
  const hook = JSON.parse(readFileSync(join(ROOT, 'manifests', 'webhook_notify.json'), 'utf8'));
  hook.egress.allowed_domains = ['127.0.0.1'];
  hook.request_schema.properties.url.pattern = '^https?://';
  writeFileSync(join(dir, 'webhook_notify.json'), JSON.stringify(hook, null, 2));
  const high = { ...hook, action_id: 'webhook_high', risk_level: 'high', description: 'webhook_notify held for approval (test)' };
  writeFileSync(join(dir, 'webhook_high.json'), JSON.stringify(high, null, 2));
  return dir;
}
