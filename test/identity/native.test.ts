// The identity addon against real sockets: SO_PEERCRED of a live connection, refusal of every fd
// that has no peer credentials, and sd_notify delivery to path and abstract datagram sockets.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, copyFileSync, fstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadIdentityAddon, sdNotify } from '../../src/identity/native.ts';
import { ensureIdentityAddon } from './helpers/addon.ts';

ensureIdentityAddon();
const addon = loadIdentityAddon();

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-identity-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function handleFd(handleOwner: Socket | Server): number {
  const fd = (handleOwner as unknown as { _handle: { fd: number } })._handle.fd;
  assert.ok(Number.isInteger(fd) && fd >= 0);
  return fd;
}

/** A Unix stream server and one connected client; resolves with the server-side connection. */
async function connectedPair(t: { after(fn: () => void): void }): Promise<{ server: Server; conn: Socket; client: Socket }> {
  const path = join(tempDir(t), 's.sock');
  const server = createServer();
  server.listen(path);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = createConnection(path);
  const [conn] = await accepted;
  t.after(() => {
    client.destroy();
    conn.destroy();
    server.close();
  });
  return { server, conn, client };
}

test('peercred returns this process pid/uid/gid for a connection it made', async (t) => {
  const { conn } = await connectedPair(t);
  assert.deepEqual(addon.peercred(handleFd(conn)), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
});

test('peercred still answers after the peer hung up (credentials are fixed at connect)', async (t) => {
  const { conn, client } = await connectedPair(t);
  client.end();
  await once(conn, 'end');
  assert.equal(addon.peercred(handleFd(conn)).pid, process.pid);
});

const badArguments: { name: string; fd: unknown; error: { name: string; code: string } }[] = [
  { name: 'negative fd', fd: -1, error: { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' } },
  { name: 'fractional fd', fd: 3.5, error: { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' } },
  { name: 'NaN fd', fd: Number.NaN, error: { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' } },
  { name: 'Infinity fd', fd: Number.POSITIVE_INFINITY, error: { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' } },
  { name: 'fd above INT_MAX', fd: 2 ** 31, error: { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' } },
  { name: 'string fd', fd: '3', error: { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' } },
  { name: 'bigint fd', fd: 3n, error: { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' } },
  { name: 'missing fd', fd: undefined, error: { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' } },
];
for (const c of badArguments) {
  test(`peercred refuses a bad argument: ${c.name}`, () => {
    assert.throws(() => (addon.peercred as (fd: unknown) => unknown)(c.fd), c.error);
  });
}

test('peercred throws EBADF for a closed fd', () => {
  const fd = openSync(fileURLToPath(import.meta.url), 'r');
  closeSync(fd);
  // Synchronously after close: nothing in this process can have reused the number yet.
  assert.throws(() => addon.peercred(fd), { code: 'EBADF', errno: -9, syscall: 'getsockopt(SO_DOMAIN)' });
});

test('peercred throws EBADF for an fd that was never open', () => {
  const fd = 1_000_000;
  assert.throws(() => fstatSync(fd), { code: 'EBADF' });
  assert.throws(() => addon.peercred(fd), { code: 'EBADF' });
});

test('peercred throws ENOTSOCK for a regular file', (t) => {
  const fd = openSync(fileURLToPath(import.meta.url), 'r');
  t.after(() => closeSync(fd));
  assert.throws(() => addon.peercred(fd), { code: 'ENOTSOCK', syscall: 'getsockopt(SO_DOMAIN)' });
});

test('peercred refuses a TCP connection (no kernel credentials; SO_PEERCRED would say uid -1)', async (t) => {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = createConnection(port, '127.0.0.1');
  const [conn] = await accepted;
  t.after(() => {
    client.destroy();
    conn.destroy();
    server.close();
  });
  assert.throws(() => addon.peercred(handleFd(conn)), { code: 'ERR_PEERCRED_NOT_UNIX' });
});

test('peercred refuses the listening socket (the kernel would report our own credentials)', async (t) => {
  const { server } = await connectedPair(t);
  assert.throws(() => addon.peercred(handleFd(server)), { code: 'ERR_PEERCRED_LISTENING' });
});

// sd_notify ------------------------------------------------------------------------------------

const python = ['python3', 'python'].find((bin) => spawnSync(bin, ['-c', 'import socket; socket.AF_UNIX'], { stdio: 'ignore' }).status === 0);
const noPython = python === undefined ? 'no python3 to receive Unix datagrams (Node has no AF_UNIX SOCK_DGRAM)' : false;

// Binds a Unix datagram socket (path, or "@name" for the abstract namespace), says "ready", prints
// the first datagram received, exits.
const RECEIVER = `
import socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + name[1:] if name.startswith('@') else name)
sys.stdout.write('ready\\n'); sys.stdout.flush()
sys.stdout.write(s.recv(65536).decode()); sys.stdout.flush()
`;

async function receiveOne(address: string, send: () => void): Promise<string> {
  const child = spawn(python!, ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (out.startsWith('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`receiver exited early with ${String(code)}`)));
  });
  const exited = once(child, 'exit');
  try {
    await ready;
    send();
    await exited;
  } finally {
    child.kill();
  }
  return out.slice('ready\n'.length);
}

function withNotifySocket(t: { after(fn: () => void): void }, value: string | undefined): void {
  const saved = process.env.NOTIFY_SOCKET;
  if (value === undefined) delete process.env.NOTIFY_SOCKET;
  else process.env.NOTIFY_SOCKET = value;
  t.after(() => {
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
  });
}

for (const value of [undefined, '']) {
  test(`sdNotify returns false when NOTIFY_SOCKET is ${value === undefined ? 'unset' : 'empty'}`, (t) => {
    withNotifySocket(t, value);
    assert.equal(addon.sdNotify('READY=1'), false);
    assert.equal(sdNotify('READY=1'), false);
  });
}

test('sdNotify delivers to a path socket', { skip: noPython }, async (t) => {
  const path = join(tempDir(t), 'notify.sock');
  withNotifySocket(t, path);
  let sent: boolean | undefined;
  const got = await receiveOne(path, () => (sent = sdNotify('READY=1\nSTATUS=serving')));
  assert.equal(sent, true);
  assert.equal(got, 'READY=1\nSTATUS=serving');
});

test('sdNotify delivers to an abstract socket (@name)', { skip: noPython }, async (t) => {
  const address = `@portcullis-test-${process.pid}-${Date.now()}`;
  withNotifySocket(t, address);
  let sent: boolean | undefined;
  const got = await receiveOne(address, () => (sent = addon.sdNotify('STOPPING=1')));
  assert.equal(sent, true);
  assert.equal(got, 'STOPPING=1');
});

test('sdNotify throws ECONNREFUSED when nothing listens at the path', (t) => {
  const path = join(tempDir(t), 'not-a-socket');
  writeFileSync(path, '');
  withNotifySocket(t, path);
  assert.throws(() => sdNotify('READY=1'), { code: 'ECONNREFUSED', syscall: 'sendto' });
});

test('sdNotify throws EPROTOTYPE when NOTIFY_SOCKET is a stream socket', async (t) => {
  const { server } = await connectedPair(t);
  withNotifySocket(t, server.address() as string);
  assert.throws(() => sdNotify('READY=1'), { code: 'EPROTOTYPE', syscall: 'sendto' });
});

const badAddresses: { name: string; value: string; code: string }[] = [
  { name: 'missing path', value: '/nonexistent/portcullis/notify.sock', code: 'ENOENT' },
  { name: 'relative path', value: 'notify.sock', code: 'ERR_SD_NOTIFY_ADDRESS' },
  { name: 'vsock address', value: 'vsock:2:1234', code: 'ERR_SD_NOTIFY_ADDRESS' },
  { name: 'empty abstract name', value: '@', code: 'ERR_SD_NOTIFY_ADDRESS' },
  { name: 'path longer than sun_path', value: `/${'a'.repeat(200)}`, code: 'ERR_SD_NOTIFY_ADDRESS' },
  { name: 'abstract name longer than sun_path', value: `@${'a'.repeat(200)}`, code: 'ERR_SD_NOTIFY_ADDRESS' },
];
for (const c of badAddresses) {
  test(`sdNotify throws for a bad NOTIFY_SOCKET: ${c.name}`, (t) => {
    withNotifySocket(t, c.value);
    assert.throws(() => sdNotify('READY=1'), { code: c.code });
  });
}

const badStates: { name: string; state: unknown; error: { name: string } }[] = [
  { name: 'empty state', state: '', error: { name: 'RangeError' } },
  { name: 'state with NUL', state: 'READY=1\0', error: { name: 'RangeError' } },
  { name: 'non-string state', state: 1, error: { name: 'TypeError' } },
];
for (const c of badStates) {
  for (const notifySocket of [undefined, '/run/portcullis-test/none.sock']) {
    test(`sdNotify refuses ${c.name} (NOTIFY_SOCKET ${notifySocket === undefined ? 'unset' : 'set'})`, (t) => {
      withNotifySocket(t, notifySocket);
      assert.throws(() => (sdNotify as (s: unknown) => boolean)(c.state), c.error);
      if (notifySocket !== undefined) assert.throws(() => (addon.sdNotify as (s: unknown) => boolean)(c.state), c.error);
    });
  }
}

test('the loader names the build command when the addon is missing', (t) => {
  const dir = tempDir(t);
  copyFileSync(fileURLToPath(new URL('../../src/identity/native.ts', import.meta.url)), join(dir, 'native.ts'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  const script = `
    const m = await import(${JSON.stringify(pathToFileURL(join(dir, 'native.ts')).href)});
    try { m.loadIdentityAddon(); process.exit(3); }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }
    console.log(JSON.stringify({ notify: m.sdNotify('READY=1') }));`;
  const env = { ...process.env };
  delete env.NOTIFY_SOCKET;
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', env });
  assert.equal(run.status, 0, run.stderr);
  const [loadError, notify] = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(loadError?.code, 'ERR_IDENTITY_ADDON_NOT_BUILT');
  assert.match(String(loadError?.message), /npm run build:native/);
  assert.match(String(loadError?.message), /node-gyp rebuild --directory src\/identity\/native/);
  // Without NOTIFY_SOCKET, sdNotify needs no addon at all.
  assert.deepEqual(notify, { notify: false });
});
