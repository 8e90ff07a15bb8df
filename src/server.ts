// The only place that knows about sockets, file modes, signals and readiness.
// Each Unix socket gets its mode at creation (umask around bind; never chmod after listen);
// a live socket is refused, a stale one removed; both are removed on clean shutdown.
import { createAdaptorServer } from '@hono/node-server';
import type { Hono } from 'hono';
import { connect } from 'node:net';
import { lstatSync, unlinkSync, statSync, chownSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { Server } from 'node:http';
import type { GateEnv } from './http/env.ts';

export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/** Connects to `path`: true if something is listening, false if the socket is stale. */
function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
  });
}

/** Refuses a live socket or a non-socket file at `path`; removes a stale socket. */
export async function clearSocketPath(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new StartupError(`${path} exists and is not a socket; refusing to replace it`);
  if (await isLive(path)) throw new StartupError(`${path} is live: another gate is already listening there`);
  unlinkSync(path);
}

function groupId(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const r = spawnSync('getent', ['group', name], { encoding: 'utf8' });
  const gid = r.status === 0 ? Number(r.stdout.split(':')[2]) : NaN;
  if (!Number.isInteger(gid)) throw new StartupError(`client_socket_group: unknown group ${name}`);
  return gid;
}

export interface Listener {
  server: Server;
  path?: string;
  close(): Promise<void>;
}

const serverOptions = { keepAliveTimeout: 65_000, headersTimeout: 10_000, requestTimeout: 120_000 };

function tune(server: Server): void {
  server.keepAliveTimeout = serverOptions.keepAliveTimeout;
  server.headersTimeout = serverOptions.headersTimeout;
  server.requestTimeout = serverOptions.requestTimeout;
  server.maxHeadersCount = 64;
}

/** Listens on a Unix socket created with exactly `mode` (e.g. 0o660, 0o600). */
export async function listenUnix(app: Hono<GateEnv>, path: string, mode: number, group?: string): Promise<Listener> {
  await clearSocketPath(path);
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  tune(server);
  // bind(2) on a Unix socket happens synchronously inside listen(): the umask window covers
  // exactly that call and no other file creation.
  const listening = new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const previous = process.umask(0o777 & ~mode);
  try {
    server.listen(path);
  } finally {
    process.umask(previous);
  }
  await listening;
  const actual = statSync(path).mode & 0o777;
  if (actual !== mode) {
    server.close();
    throw new StartupError(`${path} was created with mode ${actual.toString(8)}, expected ${mode.toString(8)}`);
  }
  if (group) chownSync(path, process.getuid?.() ?? -1, groupId(group));
  return {
    server,
    path,
    close: () => closeServer(server, path),
  };
}

/** Dev only: a TCP listener on a loopback address. */
export async function listenLoopbackTcp(app: Hono<GateEnv>, hostPort: string): Promise<Listener> {
  const m = /^(.*):(\d+)$/.exec(hostPort);
  if (!m) throw new StartupError(`http_listen: expected host:port, got ${hostPort}`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  if (!(host === 'localhost' || host === '::1' || /^127\./.test(host))) throw new StartupError('http_listen must be a loopback address');
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  tune(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(m[2]), host, () => resolve());
  });
  return { server, close: () => closeServer(server) };
}

function closeServer(server: Server, path?: string): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 5000).unref();
  }).then(() => {
    if (path) {
      try { unlinkSync(path); } catch { /* already gone */ }
    }
  });
}
