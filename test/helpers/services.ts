// Throwaway Redis and PostgreSQL servers for integration tests: a temp directory, a Unix socket,
// no fixed port, stopped afterwards. When a binary is missing: under CI=true the test fails,
// otherwise it is skipped with the reason (a developer without redis-server can still run the rest).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readdirSync, chmodSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { connect } from 'node:net';

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

export class ServiceUnavailable extends Error {}

/** Returns a skip reason when the service is missing and we are not in CI; throws in CI. */
export function serviceSkipReason(name: 'redis' | 'postgres'): string | undefined {
  const found = name === 'redis' ? findRedisServer() : findPgBin('initdb');
  if (found) return undefined;
  const why = `${name} binaries not found (install redis-server / postgresql-15)`;
  if (IN_CI) throw new ServiceUnavailable(`CI requires ${name}: ${why}`);
  return why;
}

function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  const out = r.stdout.trim();
  return r.status === 0 && out ? out : undefined;
}

export function findRedisServer(): string | undefined {
  return which('redis-server');
}

export function findPgBin(name: string): string | undefined {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base).sort().reverse();
    for (const v of versions) {
      const p = join(base, v, 'bin', name);
      if (existsSync(p)) return p;
    }
  }
  return which(name);
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await delay(25);
  }
  throw new ServiceUnavailable(`${what} did not become ready within ${timeoutMs} ms`);
}

export interface RedisServer {
  url: string;
  socketPath: string;
  stop(): Promise<void>;
  /** Stops the server process but keeps its directory, to simulate an outage; `start()` brings it back. */
  pause(): Promise<void>;
  start(): Promise<void>;
}

/** True when a Redis server on the Unix socket answers PING with PONG (within 1 s). */
function answersPing(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(socketPath);
    let got = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
    sock.on('error', () => done(false));
  });
}

/**
 * A detached shell that runs `cleanup` once this test process is gone, so a test file the runner
 * kills (its 240 s timeout) does not leave its servers running for every later file. `cancel()`
 * after a normal stop.
 */
function reaper(cleanup: string): { cancel(): void } {
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ${cleanup}`;
  const child = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' });
  child.unref();
  return {
    cancel() {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}

const shq = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

export async function startRedis(): Promise<RedisServer> {
  const bin = findRedisServer();
  if (!bin) throw new ServiceUnavailable('redis-server not found');
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-redis-'));
  const socketPath = join(dir, 'redis.sock');
  let proc: ChildProcess | undefined;
  const launch = async () => {
    proc = spawn(bin, ['--port', '0', '--unixsocket', socketPath, '--unixsocketperm', '700', '--dir', dir,
      '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
    const p = proc;
    let exited = false;
    p.once('exit', () => { exited = true; });
    // Ready when it answers PING: the socket file appears at bind(), before listen() and before
    // the append-only file is loaded, and a client connecting then is refused.
    await waitFor(async () => {
      if (exited) throw new ServiceUnavailable('redis-server exited during start-up');
      return existsSync(socketPath) && (await answersPing(socketPath));
    }, 'redis');
  };
  const halt = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await done;
    rmSync(socketPath, { force: true });
  };
  await launch();
  // redis-server runs in the foreground as our child, under a pid that changes on restart, and
  // retitles itself `redis-server unixsocket:<path>`: the reaper matches the (unique) socket path
  // (`[r]`: a pattern that does not match the reaper's own command line, which contains it).
  const reap = reaper(`pkill -KILL -f -- ${shq(`[r]edis-server.*${socketPath}`)}; rm -rf ${shq(dir)}`);
  return {
    url: `redis+unix://${socketPath}`,
    socketPath,
    pause: halt,
    start: launch,
    async stop() {
      reap.cancel();
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PostgresServer {
  /** A libpq-style connection string using the Unix socket directory. */
  url: string;
  socketDir: string;
  database: string;
  user: string;
  stop(): Promise<void>;
  pause(): Promise<void>;
  start(): Promise<void>;
}

/** initdb refuses root, so when we are root the cluster is created and run as the `postgres` user. */
export async function startPostgres(): Promise<PostgresServer> {
  const initdb = findPgBin('initdb');
  const pgCtl = findPgBin('pg_ctl');
  if (!initdb || !pgCtl) throw new ServiceUnavailable('PostgreSQL binaries not found');
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-pg-'));
  const dataDir = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  let pgUid: number | undefined;
  let pgGid: number | undefined;
  if (asRoot) {
    const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    if (id.status !== 0) throw new ServiceUnavailable('running as root and there is no postgres user');
    pgUid = Number(id.stdout.trim());
    pgGid = Number(gid.stdout.trim());
    chownSync(dir, pgUid, pgGid);
  }
  chmodSync(dir, 0o700);
  const run = (cmd: string, args: string[]) => {
    const full = asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] as const : [cmd, args] as const;
    const r = spawnSync(full[0], [...full[1]], { encoding: 'utf8' });
    if (r.status !== 0) throw new ServiceUnavailable(`${cmd} failed: ${r.stderr || r.stdout}`);
  };
  const user = asRoot ? 'postgres' : (process.env.USER ?? 'postgres');
  run(initdb, ['-D', dataDir, '-A', 'trust', '-U', user, '--no-sync', '-E', 'UTF8']);
  const opts = `-c listen_addresses='' -c unix_socket_directories='${dir}' -c fsync=off -c max_connections=200`;
  const launch = async () => {
    run(pgCtl, ['-D', dataDir, '-o', opts, '-w', '-t', '30', '-l', join(dir, 'log'), 'start']);
  };
  const halt = async () => {
    try { run(pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', 'stop']); } catch { /* already stopped */ }
  };
  await launch();
  const stopCmd = [pgCtl, '-D', dataDir, '-m', 'immediate', '-w', 'stop'].map(shq).join(' ');
  const reap = reaper(`${asRoot ? `runuser -u postgres -- ${stopCmd}` : stopCmd} >/dev/null 2>&1; rm -rf ${shq(dir)}`);
  const database = 'postgres';
  return {
    url: `postgresql://${encodeURIComponent(user)}@/${database}?host=${encodeURIComponent(dir)}`,
    socketDir: dir,
    database,
    user,
    pause: halt,
    start: launch,
    async stop() {
      reap.cancel();
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
