// peercred identity end to end: a real hono app served by @hono/node-server on a Unix socket,
// real clients (this process, and another uid when running as root), table-driven mapping and
// refusal cases; every way of not knowing the peer is identity_unavailable, never a guess.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, Agent } from 'node:http';
import { Socket, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { errorBody, GateError, toGateError } from '../../src/errors.ts';
import type { GateEnv } from '../../src/http/env.ts';
import { IdentityConfigError } from '../../src/identity/config.ts';
import { createIdentityProvider } from '../../src/identity/create.ts';
import { PeerSocketError, peerSocket, socketFd } from '../../src/identity/peer-socket.ts';
import { createPeercredProvider } from '../../src/identity/peercred.ts';
import type { IdentityProvider } from '../../src/identity/types.ts';
import { ensureIdentityAddon } from './helpers/addon.ts';

ensureIdentityAddon();

type T = { after(fn: () => void | Promise<void>): void };
interface Reply {
  status: number;
  body: Record<string, unknown>;
}

const ME = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };

function whoamiApp(provider: IdentityProvider): Hono<GateEnv> {
  const app = new Hono<GateEnv>();
  app.get('/whoami', async (c) => {
    try {
      const identity = await provider.identify(c);
      return c.json({ principal: identity.principal, scopes: identity.scopes ?? null, peer: identity.peer ?? null });
    } catch (err) {
      const gateError = toGateError(err);
      return c.json(errorBody(gateError), gateError.status as ContentfulStatusCode);
    }
  });
  return app;
}

/** Serves the app on a fresh Unix socket (or loopback TCP); returns where it listens. */
async function serve(t: T, provider: IdentityProvider, on: 'unix' | 'tcp' = 'unix'): Promise<{ socketPath?: string; port?: number; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-peercred-'));
  const server = createAdaptorServer({ fetch: whoamiApp(provider).fetch });
  t.after(async () => {
    server.close();
    await once(server, 'close');
    rmSync(dir, { recursive: true, force: true });
  });
  if (on === 'unix') {
    const socketPath = join(dir, 'gate.sock');
    server.listen(socketPath);
    await once(server, 'listening');
    return { socketPath, dir };
  }
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, dir };
}

function get(where: { socketPath?: string; port?: number }, agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const target = where.socketPath !== undefined ? { socketPath: where.socketPath } : { host: '127.0.0.1', port: where.port };
    const req = httpRequest({ ...target, path: '/whoami', agent: agent ?? false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end();
  });
}

// Mapping and refusal, with this process as the real peer. ---------------------------------------
const me = String(ME.uid);
const other = String(ME.uid === 4242 ? 4243 : 4242);
const mapping: { name: string; config: unknown; expect: Reply }[] = [
  {
    name: 'mapped uid gets its principal and scopes',
    config: { provider: 'peercred', map: { [me]: { principal: 'agent-a', scopes: ['tools:call'] } } },
    expect: { status: 200, body: { principal: 'agent-a', scopes: ['tools:call'], peer: ME } },
  },
  {
    name: 'mapped uid without scopes may request any scope',
    config: { provider: 'peercred', map: { [me]: { principal: 'agent-a' } } },
    expect: { status: 200, body: { principal: 'agent-a', scopes: null, peer: ME } },
  },
  {
    name: 'mapped uid with empty scopes may request none',
    config: { provider: 'peercred', map: { [me]: { principal: 'agent-a', scopes: [] } } },
    expect: { status: 200, body: { principal: 'agent-a', scopes: [], peer: ME } },
  },
  {
    name: 'attack: unmapped uid is refused with identity_denied',
    config: { provider: 'peercred', map: { [other]: { principal: 'agent-b' } } },
    expect: { status: 403, body: { error: 'identity_denied' } },
  },
  {
    name: 'unmapped uid gets the configured fallback',
    config: { provider: 'peercred', map: { [other]: { principal: 'agent-b' } }, unmapped: { principal: 'guest', scopes: ['tools:list'] } },
    expect: { status: 200, body: { principal: 'guest', scopes: ['tools:list'], peer: ME } },
  },
  {
    name: 'a mapped uid wins over the fallback',
    config: { provider: 'peercred', map: { [me]: { principal: 'agent-a' } }, unmapped: { principal: 'guest' } },
    expect: { status: 200, body: { principal: 'agent-a', scopes: null, peer: ME } },
  },
];

for (const c of mapping) {
  test(`peercred over a Unix socket: ${c.name}`, async (t) => {
    const where = await serve(t, createIdentityProvider(c.config));
    assert.deepEqual(await get(where), c.expect);
  });
}

test('peercred identifies every request on a keep-alive connection', async (t) => {
  const where = await serve(t, createIdentityProvider({ provider: 'peercred', map: { [me]: { principal: 'agent-a' } } }));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  for (let i = 0; i < 3; i++) assert.deepEqual(await get(where, agent), { status: 200, body: { principal: 'agent-a', scopes: null, peer: ME } });
});

test('the request socket and its fd are found from the hono context', async (t) => {
  const app = new Hono<GateEnv>();
  app.get('/whoami', (c) => {
    const socket = peerSocket(c);
    return c.json({ same: socket === c.env.incoming.socket, fdOk: Number.isInteger(socketFd(socket)) });
  });
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-peercred-'));
  const server = createAdaptorServer({ fetch: app.fetch });
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  server.listen(join(dir, 'gate.sock'));
  await once(server, 'listening');
  assert.deepEqual(await get({ socketPath: join(dir, 'gate.sock') }), { status: 200, body: { same: true, fdOk: true } });
});

// A different real uid (needs root to spawn the client as another user). ---------------------------
const notRoot = ME.uid === 0 ? false : 'needs root to connect as another uid';
const CLIENT = `
const http = require('node:http');
http.get({ socketPath: process.argv[1], path: '/whoami', agent: false }, (res) => {
  let t = ''; res.setEncoding('utf8'); res.on('data', (c) => (t += c));
  res.on('end', () => process.stdout.write(JSON.stringify({ status: res.statusCode, body: JSON.parse(t) })));
}).on('error', (e) => { process.stderr.write(String(e)); process.exit(2); });
`;

async function getAs(uid: number, socketPath: string): Promise<{ reply: Reply; pid: number }> {
  const child = spawn(process.execPath, ['-e', CLIENT, socketPath], { uid, gid: uid, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, err);
  return { reply: JSON.parse(out) as Reply, pid: child.pid! };
}

const otherUid: { name: string; config: unknown; expect: (pid: number) => Reply }[] = [
  {
    name: 'another mapped uid gets its own principal',
    config: { provider: 'peercred', map: { [me]: { principal: 'agent-a' }, '4242': { principal: 'agent-b', scopes: ['tools:call'] } } },
    expect: (pid) => ({ status: 200, body: { principal: 'agent-b', scopes: ['tools:call'], peer: { pid, uid: 4242, gid: 4242 } } }),
  },
  {
    name: 'attack: another uid cannot borrow the gate owner’s mapping',
    config: { provider: 'peercred', map: { [me]: { principal: 'agent-a' } } },
    expect: () => ({ status: 403, body: { error: 'identity_denied' } }),
  },
];

for (const c of otherUid) {
  test(`peercred with a client running as uid 4242: ${c.name}`, { skip: notRoot }, async (t) => {
    const where = await serve(t, createIdentityProvider(c.config));
    // Test-only: let uid 4242 reach the socket (a real gate sets 0660 + group at bind time).
    chmodSync(where.dir, 0o711);
    chmodSync(where.socketPath!, 0o666);
    const { reply, pid } = await getAs(4242, where.socketPath!);
    assert.deepEqual(reply, c.expect(pid));
  });
}

// Unknowable peers. --------------------------------------------------------------------------------
const anyone = { provider: 'peercred', map: { [me]: { principal: 'agent-a' } }, unmapped: { principal: 'guest' } };

test('attack: over TCP there are no peer credentials: identity_unavailable, not the fallback', async (t) => {
  const where = await serve(t, createIdentityProvider(anyone), 'tcp');
  assert.deepEqual(await get(where), { status: 503, body: { error: 'identity_unavailable' } });
});

test('a request with no connection socket (app.request) is identity_unavailable', async () => {
  const res = await whoamiApp(createIdentityProvider(anyone)).request('/whoami');
  assert.equal(res.status, 503);
  assert.deepEqual(await res.json(), { error: 'identity_unavailable' });
});

const unknowable: { name: string; source: () => Socket; cause: string }[] = [
  { name: 'a socket that was never connected', source: () => new Socket(), cause: 'ERR_PEER_SOCKET_CLOSED' },
  {
    name: 'a destroyed socket',
    source: () => {
      const s = new Socket();
      s.destroy();
      return s;
    },
    cause: 'ERR_PEER_SOCKET_CLOSED',
  },
];
for (const c of unknowable) {
  test(`identify on ${c.name} rejects identity_unavailable`, async () => {
    const provider = createIdentityProvider(anyone);
    await assert.rejects(provider.identify(c.source()), (err: unknown) => {
      assert.ok(err instanceof GateError);
      assert.equal(err.code, 'identity_unavailable');
      assert.ok(err.cause instanceof PeerSocketError);
      assert.equal(err.cause.code, c.cause);
      return true;
    });
  });
}

test('identify accepts the raw connection socket as well as the hono context', async (t) => {
  const provider = createIdentityProvider(anyone);
  let seen: unknown;
  const app = new Hono<GateEnv>();
  app.get('/whoami', async (c) => {
    seen = await provider.identify(c.env.incoming.socket);
    return c.json({});
  });
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-peercred-'));
  const server = createAdaptorServer({ fetch: app.fetch });
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  server.listen(join(dir, 'gate.sock'));
  await once(server, 'listening');
  await get({ socketPath: join(dir, 'gate.sock') });
  assert.deepEqual(seen, { principal: 'agent-a', scopes: undefined, peer: ME });
});

// Mapping rules with injected credentials (uids this test cannot really connect as). ---------------
const injected: { name: string; uid: number; config: unknown; expect: { principal: string } | { code: string } }[] = [
  { name: 'uid 1000 mapped', uid: 1000, config: { provider: 'peercred', map: { '1000': { principal: 'a' } } }, expect: { principal: 'a' } },
  { name: 'attack: uid 0 is not implicitly trusted', uid: 0, config: { provider: 'peercred', map: { '1000': { principal: 'a' } } }, expect: { code: 'identity_denied' } },
  { name: 'attack: uid 10000 is not uid 1000 (no prefix match)', uid: 10000, config: { provider: 'peercred', map: { '1000': { principal: 'a' } } }, expect: { code: 'identity_denied' } },
  { name: 'attack: overflow uid of a foreign user namespace is unmapped', uid: 65534, config: { provider: 'peercred', map: { '1000': { principal: 'a' } } }, expect: { code: 'identity_denied' } },
  { name: 'largest uid mapped', uid: 4294967294, config: { provider: 'peercred', map: { '4294967294': { principal: 'big' } } }, expect: { principal: 'big' } },
];
for (const c of injected) {
  test(`peercred mapping: ${c.name}`, async () => {
    const provider = createIdentityProvider(c.config, { readCredentials: () => ({ pid: 1, uid: c.uid, gid: c.uid }) });
    if ('principal' in c.expect) {
      assert.equal((await provider.identify(new Socket())).principal, c.expect.principal);
    } else {
      await assert.rejects(provider.identify(new Socket()), { name: 'GateError', code: c.expect.code });
    }
  });
}

test('a failing credential reader is identity_unavailable, with the cause kept for the log', async () => {
  const cause = Object.assign(new Error('getsockopt(SO_PEERCRED) EBADF'), { code: 'EBADF' });
  const provider = createIdentityProvider(anyone, {
    readCredentials: () => {
      throw cause;
    },
  });
  await assert.rejects(provider.identify(new Socket()), (err: unknown) => err instanceof GateError && err.code === 'identity_unavailable' && err.cause === cause);
});

test('identities are frozen: a caller cannot widen a principal’s scopes for the next request', async () => {
  const provider = createIdentityProvider(
    { provider: 'peercred', map: { '1000': { principal: 'a', scopes: ['x'] } } },
    { readCredentials: () => ({ pid: 1, uid: 1000, gid: 1000 }) },
  );
  const first = await provider.identify(new Socket());
  assert.throws(() => (first.scopes as string[]).push('admin'), TypeError);
  assert.deepEqual((await provider.identify(new Socket())).scopes, ['x']);
});

test('mapping the kernel overflow uid is refused at start-up', () => {
  assert.throws(
    () => createPeercredProvider({ provider: 'peercred', map: { '65534': { principal: 'a' } } }, { overflowUid: 65534 }),
    (err: unknown) => err instanceof IdentityConfigError && err.key === 'identity.map.65534' && /overflow uid/.test(err.reason),
  );
  assert.throws(
    () => createIdentityProvider({ provider: 'peercred', map: { '77': { principal: 'a' } } }, { overflowUid: 77, configKey: 'gate.identity' }),
    { key: 'gate.identity.map.77' },
  );
});
