// Helpers for end-to-end tests that run the gate as a real process (`portcullis serve` / `up`):
// config and state-dir writers, a spawned gate with its log and readiness polling, a hand-rolled
// agent (one DPoP key + one lease usable on several gates), a slim manifests dir, an upstream
// that never answers, and a bounded CLI runner.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { stringify as toToml } from 'smol-toml';
import { unixTransport, type RawResponse, type Transport } from '../../src/client/transport.ts';
import { operatorConfigEntry, type OperatorCredential } from '../../src/runtime/state-dir.ts';
import { getLease, newP256, operatorHeaders, proof, type TestKey } from '../helpers/gate.ts';
import { makeManifestsDir } from './fixtures.ts';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'src', 'cli', 'bin.js');

/** Every gate start pays the TypeScript loader and provider instrumentation: be generous. */
export const START_TIMEOUT_MS = 180_000;

/** The real manifests dir reduced to the actions these tests use (fewer modules to instrument at start-up). */
export function makeSlimManifestsDir(keep: readonly string[] = ['echo', 'webhook_notify', 'webhook_high']): string {
  const dir = makeManifestsDir();
  for (const f of readdirSync(dir)) {
    if (!keep.includes(f.replace(/\.json$/, ''))) rmSync(join(dir, f));
  }
  return dir;
}

export interface ServeConfigOptions {
  dir: string;
  redisUrl: string;
  databaseUrl: string;
  keysDir: string;
  manifestsDir: string;
  operators: OperatorCredential[];
  extra?: Record<string, unknown>;
}

/** Writes a production-mode TOML config (unsafe_dev, loopback egress, identity none) and returns its path. */
export function writeServeConfig(o: ServeConfigOptions): string {
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const doc = {
    mode: 'production',
    state_dir: o.dir,
    redis_url: o.redisUrl,
    database_url: o.databaseUrl,
    manifests_dir: o.manifestsDir,
    unsafe_dev: true,
    unsafe_egress_allow: ['127.0.0.0/8'],
    identity: { provider: 'none', principal: 'agent' },
    keys: { dir: o.keysDir },
    ...o.extra,
    operators: o.operators.map(operatorConfigEntry),
  };
  const path = join(o.dir, 'portcullis.toml');
  writeFileSync(path, toToml(doc), { mode: 0o600 });
  return path;
}

/** Lays out an embedded state dir for `portcullis up` with our operator credential and manifests. */
export function prepareEmbeddedStateDir(dir: string, manifestsDir: string, operator: OperatorCredential): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  writeFileSync(join(dir, 'operator.json'), `${JSON.stringify(operator, null, 2)}\n`, { mode: 0o600 });
  const doc = {
    mode: 'embedded',
    state_dir: '.',
    public_base_url: 'http://localhost',
    manifests_dir: manifestsDir,
    unsafe_egress_allow: ['127.0.0.0/8'],
    identity: { provider: 'none', principal: 'agent' },
    operators: [operatorConfigEntry(operator)],
  };
  writeFileSync(join(dir, 'portcullis.toml'), toToml(doc), { mode: 0o600 });
}

/** A credential file for the CLI's --credential (0600). */
export function writeCredentialFile(path: string, operator: OperatorCredential): string {
  writeFileSync(path, `${JSON.stringify(operator, null, 2)}\n`, { mode: 0o600 });
  return path;
}

export interface GateProcess {
  name: string;
  proc: ChildProcess;
  clientSocket: string;
  adminSocket: string;
  client: Transport;
  admin: Transport;
  /** Everything the process wrote to stdout and stderr so far. */
  log(): string;
  /** Resolves with the exit status once the process is gone. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Polls /readyz on the client socket until 200 (throws with the log if the process dies or time runs out). */
  waitReady(timeoutMs?: number): Promise<void>;
  /** An operator call on the admin socket. */
  adminCall(op: OperatorCredential, method: string, path: string, body?: unknown): Promise<RawResponse>;
  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs` if still alive). */
  kill(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/** Spawns `node src/cli/bin.js <args>` (cwd = repo root) and captures its output. */
export function spawnGate(name: string, args: string[], sockets: { client: string; admin: string }): GateProcess {
  const proc = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  let dead = false;
  void exited.then(() => { dead = true; });
  const client = unixTransport(sockets.client, { timeoutMs: 60_000 });
  const admin = unixTransport(sockets.admin, { timeoutMs: 60_000 });
  return {
    name, proc, clientSocket: sockets.client, adminSocket: sockets.admin, client, admin, exited,
    log: () => out,
    async waitReady(timeoutMs = START_TIMEOUT_MS) {
      const probe = unixTransport(sockets.client, { timeoutMs: 5000 });
      const deadline = Date.now() + timeoutMs;
      try {
        while (Date.now() < deadline) {
          if (dead) throw new Error(`${name} exited during start-up:\n${out}`);
          const res = await probe.send('GET', '/readyz', {}).catch(() => undefined);
          if (res?.status === 200) return;
          await delay(100);
        }
      } finally {
        probe.close();
      }
      throw new Error(`${name} not ready within ${timeoutMs} ms:\n${out}`);
    },
    adminCall(op, method, path, body) {
      return admin.send(method, path, operatorHeaders(op, method, path.split('?')[0]!), body === undefined ? undefined : JSON.stringify(body));
    },
    async kill(signal = 'SIGTERM', graceMs = 15_000) {
      if (!dead && proc.exitCode === null && proc.signalCode === null) {
        proc.kill(signal);
        const t = setTimeout(() => { if (!dead) proc.kill('SIGKILL'); }, graceMs);
        await exited;
        clearTimeout(t);
      }
      client.close();
      admin.close();
    },
  };
}

/** The sockets a gate with `state_dir = dir` listens on (the defaults). */
export function socketsOf(dir: string): { client: string; admin: string } {
  return { client: join(dir, 'gate.sock'), admin: join(dir, 'gate-admin.sock') };
}

/**
 * An agent with one DPoP key and one lease that can call any gate accepting the lease (gates that
 * share the keys dir and the stores): every call carries a fresh proof with a unique jti.
 */
export class Agent {
  readonly key: TestKey = newP256();
  lease?: { lease_jwt: string; session_id: string };

  async obtainLease(t: Transport, body: Record<string, unknown> = {}): Promise<{ lease_jwt: string; session_id: string }> {
    this.lease = await getLease(t, this.key, body);
    return this.lease;
  }

  /** A lease-authenticated call with a fresh proof. */
  send(t: Transport, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
    if (!this.lease) throw new Error('no lease');
    const token = this.lease.lease_jwt;
    return t.send(method, path, {
      ...headers,
      authorization: `DPoP ${token}`,
      dpop: proof({ key: this.key, htm: method, htu: `http://localhost${path.split('?')[0]}`, token }),
    }, body === undefined ? undefined : JSON.stringify(body));
  }

  execute(t: Transport, actionId: string, input: unknown): Promise<RawResponse> {
    return this.send(t, 'POST', `/v1/actions/${actionId}/execute`, input);
  }
}

export interface HangingUpstream {
  url: string;
  /** Requests received (none is ever answered). */
  requests: Array<{ method: string; path: string }>;
  /** Resolves when the `n`-th request has arrived. */
  received(n?: number): Promise<void>;
  close(): Promise<void>;
}

/** A loopback HTTP server that reads each request and never answers it (an in-flight egress call). */
export async function startHangingUpstream(): Promise<HangingUpstream> {
  const requests: HangingUpstream['requests'] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req: IncomingMessage, _res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      requests.push({ method: req.method!, path: req.url! });
      for (const w of waiters.splice(0)) {
        if (requests.length >= w.n) w.resolve();
        else waiters.push(w);
      }
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    received: (n = 1) => (requests.length >= n ? Promise.resolve() : new Promise((r) => waiters.push({ n, resolve: r }))),
    close: () => new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

/** Runs `node src/cli/bin.js <args>` to completion (killed after `timeoutMs`). */
export function runCli(args: string[], timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolveRun, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('error', (e) => { clearTimeout(t); reject(e); });
    p.once('exit', (code) => { clearTimeout(t); resolveRun({ code, stdout, stderr }); });
  });
}

/** Runs async jobs with at most `limit` at a time (CLI processes are CPU-heavy to start). */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Polls `check` until it returns true (bounded). */
export async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await delay(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}
