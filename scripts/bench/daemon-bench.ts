// End-to-end gate latency over the real client socket: a bare hono JSON round trip (the floor),
// then the gate as a child process in embedded mode (`up`, SQLite) and in production mode
// (`serve`, throwaway Redis + PostgreSQL), driven by PortcullisClient (a fresh DPoP proof per call).
// Every child process and temp dir is removed on exit, failure or SIGINT/SIGTERM.
// Run alone: node --import tsx scripts/bench/daemon-bench.ts [--quick] [--no-production] [--cpu-prof DIR]
import { spawn, type ChildProcess } from 'node:child_process';
import { KeyObject, randomBytes, randomUUID, sign as cryptoSign, webcrypto } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { PortcullisClient, PortcullisError, createProof } from '../../src/client/index.ts';
import { unixTransport, type Transport } from '../../src/client/transport.ts';
import { AdminClient, resolveAdminTarget } from '../../src/cli/admin-client.ts';
import { ensureStateDir, newOperatorCredential, operatorConfigEntry } from '../../src/runtime/state-dir.ts';
import { ServiceUnavailable, startPostgres, startRedis, type PostgresServer, type RedisServer } from '../../test/helpers/services.ts';
import {
  fmtUs, formatLoad, machineLoad, ratio, runLoad, table,
  type LoadOptions, type LoadResult, type MachineLoad, type Summary,
} from './lib.ts';

const ROOT = resolve(fileURLToPath(new URL('../../', import.meta.url)));
const BIN = join(ROOT, 'src/cli/bin.js');
const SELF = fileURLToPath(import.meta.url);
const ECHO_INPUT = { message: 'hello' };
const DENIED_ACTION = 'http_post';
const DENIED_INPUT = { url: 'https://example.com/bench', body: 'x' };
/** Raised for the bench; the shipped default is 50/s with a burst of 50 (see docs/benchmarks.md). */
const BENCH_LEASES_PER_SECOND = 100_000;
const READY_TIMEOUT_MS = 180_000;
/** No measured series runs longer than this, however slow the machine (the row's n says how many calls fit). */
const SERIES_MAX_MS = 20_000;
const GATE_WARMUP_MAX_MS = 15_000;
const load = (concurrency: number, [warmup, iterations]: [number, number]): LoadOptions => ({ concurrency, warmup, iterations, maxMs: SERIES_MAX_MS });

/** Iteration counts (warm-up, measured) for every series. */
export interface DaemonBenchCounts {
  /**
   * Allowed echo calls (at c=16, at most 15 s) before any gate series is measured. V8 keeps
   * optimizing the gate's code for the first ~2000 calls (measured with --trace-opt: CPU per echo
   * fell from 10.4 to 6.5 ms over the first 2500 calls), so a short warm-up measures the JIT.
   */
  gate_warmup: number;
  floor_c1: [number, number];
  floor_c16: [number, number];
  proof: [number, number];
  lease: [number, number];
  echo_c1: [number, number];
  echo_c16: [number, number];
  denied: [number, number];
}

export const FULL_COUNTS: DaemonBenchCounts = {
  gate_warmup: 2500,
  floor_c1: [2000, 5000], floor_c16: [800, 10000], proof: [200, 2000],
  lease: [100, 1000], echo_c1: [300, 2000], echo_c16: [320, 4000], denied: [100, 500],
};

export const QUICK_COUNTS: DaemonBenchCounts = {
  gate_warmup: 100,
  floor_c1: [50, 300], floor_c16: [64, 800], proof: [20, 200],
  lease: [10, 100], echo_c1: [30, 200], echo_c16: [32, 480], denied: [10, 50],
};

export interface DaemonBenchOptions {
  quick?: boolean;
  counts?: Partial<DaemonBenchCounts>;
  /** Skip the Redis + PostgreSQL daemon. */
  production?: boolean;
  /** Start the gates with `node --cpu-prof --cpu-prof-dir DIR` (profiles are written on shutdown). */
  cpuProfDir?: string;
  log?: (line: string) => void;
}

export interface GateFigures {
  mode: 'embedded' | 'production';
  /** Spawn until /readyz answered 200. */
  startup_ms: number;
  lease_c1: LoadResult;
  echo_c1: LoadResult;
  echo_c16: LoadResult;
  denied_c1: LoadResult;
  load_before: MachineLoad;
  load_after: MachineLoad;
}

export interface FloorFigures {
  c1: LoadResult;
  c16: LoadResult;
  load_before: MachineLoad;
  load_after: MachineLoad;
}

export interface DaemonBenchResult {
  counts: DaemonBenchCounts;
  floor: FloorFigures;
  /** Client-side cost of one DPoP proof (WebCrypto ES256 sign + base64url + ath hash), as PortcullisClient does per call. */
  proof_sign: Summary;
  embedded: GateFigures;
  production: GateFigures | { skipped: string };
}

// ---------------------------------------------------------------------------------------------
// Child processes and cleanup

/** LIFO cleanup actions, run once (normal end, failure or signal). */
class Cleanup {
  private readonly actions: Array<() => Promise<void> | void> = [];
  private running?: Promise<void>;
  defer(fn: () => Promise<void> | void): void {
    this.actions.push(fn);
  }
  run(): Promise<void> {
    this.running ??= (async () => {
      while (this.actions.length > 0) {
        const fn = this.actions.pop()!;
        try { await fn(); } catch (e) { process.stderr.write(`cleanup: ${(e as Error).message}\n`); }
      }
    })();
    return this.running;
  }
}

interface Child {
  proc: ChildProcess;
  /** The last few KB of stdout+stderr, for error messages. */
  tail(): string;
  stop(): Promise<void>;
}

/** The parent's environment without PORTCULLIS_* overrides or a systemd notify socket. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PORTCULLIS_') && k !== 'NOTIFY_SOCKET') env[k] = v;
  return env;
}

function spawnNode(args: string[], cleanup: Cleanup, nodeFlags: string[] = []): Child {
  const proc = spawn(process.execPath, [...nodeFlags, ...args], { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  const keep = (d: Buffer) => { buf = (buf + d.toString('utf8')).slice(-4096); };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const killed = await Promise.race([exited.then(() => false), delay(20_000).then(() => true)]);
    if (killed) {
      proc.kill('SIGKILL');
      await exited;
    }
  };
  cleanup.defer(stop);
  return { proc, tail: () => buf.trim(), stop };
}

/** Polls GET /readyz on `socketPath` until 200; fails early if the child exits. Returns ms since `since`. */
async function waitReady(socketPath: string, child: Child, since: number): Promise<number> {
  const t = unixTransport(socketPath, { maxSockets: 1, timeoutMs: 5000 });
  try {
    while (performance.now() - since < READY_TIMEOUT_MS) {
      if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
        throw new Error(`process exited (${child.proc.exitCode ?? child.proc.signalCode}) before it was ready:\n${child.tail()}`);
      }
      const ok = await t.send('GET', '/readyz', {}).then((r) => r.status === 200, () => false);
      if (ok) return Math.round(performance.now() - since);
      await delay(100);
    }
    throw new Error(`not ready after ${READY_TIMEOUT_MS} ms:\n${child.tail()}`);
  } finally {
    t.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The floor: hono alone, same socket kind, same client, same bytes in and out

/** Runs in the child: a bare hono app on a Unix socket answering like an execute of echo. */
async function floorServer(socketPath: string): Promise<void> {
  const { Hono } = await import('hono');
  const { createAdaptorServer } = await import('@hono/node-server');
  const app = new Hono();
  app.get('/readyz', (c) => c.json({ status: 'ready' }));
  app.post('/v1/actions/:id/execute', async (c) => {
    const body = await c.req.json<{ message?: unknown }>();
    const message = typeof body.message === 'string' ? body.message : '';
    // The same keys and about the same size (≈420 bytes) as the gate's answer to echo.
    return c.json({
      trace_id: `trc_${randomUUID()}`,
      action_id: c.req.param('id'),
      grant_id: `grant_${randomUUID()}`,
      receipt_id: `rcpt_${randomUUID()}`,
      output: { message, length: message.length },
      verification_outcome: 'unverifiable_declared',
      verification: { outcome: 'unverifiable_declared', is_fully_successful: true },
      runtime: { duration_ms: 0.5, exit_code: 0, fuel_consumed: 1693 },
    });
  });
  rmSync(socketPath, { force: true });
  const server = createAdaptorServer({ fetch: app.fetch }) as import('node:http').Server;
  server.keepAliveTimeout = 65_000; // as the gate's listener (src/server.ts)
  server.listen(socketPath);
  const stop = () => server.close(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/** Header values the size of a real lease (≈590 bytes) and DPoP proof (≈545 bytes), so the floor parses as many bytes. */
function floorHeaders(): Record<string, string> {
  return { authorization: `DPoP ${randomBytes(440).toString('base64url')}`, dpop: randomBytes(408).toString('base64url') };
}

async function benchFloor(counts: DaemonBenchCounts, cleanup: Cleanup, dir: string): Promise<FloorFigures> {
  const socketPath = join(dir, 'floor.sock');
  const started = performance.now();
  const child = spawnNode([SELF, 'floor-server', socketPath], cleanup, ['--import', 'tsx']);
  await waitReady(socketPath, child, started);
  const t = unixTransport(socketPath);
  try {
    const headers = floorHeaders();
    const body = JSON.stringify(ECHO_INPUT);
    const call = async () => {
      const res = await t.send('POST', '/v1/actions/echo/execute', headers, body);
      if (res.status !== 200 || (res.body as { output?: { message?: string } }).output?.message !== ECHO_INPUT.message) {
        throw new Error(`floor answered ${res.status}: ${res.text.slice(0, 200)}`);
      }
    };
    const load_before = machineLoad();
    const pid = child.proc.pid;
    const c1 = await runLoad({ ...load(1, counts.floor_c1), serverPid: pid }, call);
    const c16 = await runLoad({ ...load(16, counts.floor_c16), serverPid: pid }, call);
    return { c1, c16, load_before, load_after: machineLoad() };
  } finally {
    t.close();
    await child.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// The gate

/** The client's per-call proof, built the same way as PortcullisClient (non-extractable WebCrypto key). */
async function benchProofSigning(counts: DaemonBenchCounts): Promise<Summary> {
  const pair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']) as webcrypto.CryptoKeyPair;
  const j = await webcrypto.subtle.exportKey('jwk', pair.publicKey);
  const jwk = { kty: 'EC' as const, crv: 'P-256' as const, x: j.x!, y: j.y! };
  const token = randomBytes(440).toString('base64url');
  // As src/client/index.ts signs: node:crypto over the KeyObject view of the non-extractable key.
  const key = KeyObject.from(pair.privateKey);
  const r = await runLoad(load(1, counts.proof), () => createProof({
    jwk, method: 'POST', htu: 'http://localhost/v1/actions/echo/execute', accessToken: token,
    sign: async (data) => cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }),
  }));
  return r.latency;
}

/** Measures one running gate over its client socket. */
async function benchGate(mode: GateFigures['mode'], socketPath: string, pid: number | undefined, startup_ms: number, counts: DaemonBenchCounts): Promise<GateFigures> {
  const client = new PortcullisClient({ socketPath });
  const raw: Transport = unixTransport(socketPath, { maxSockets: 1 });
  try {
    await client.connect();
    const echo = async () => {
      const out = await client.execute<{ output?: { message?: string } }>('echo', ECHO_INPUT);
      if (out.output?.message !== ECHO_INPUT.message) throw new Error(`echo answered ${JSON.stringify(out).slice(0, 200)}`);
    };
    const denied = async () => {
      try {
        await client.execute(DENIED_ACTION, DENIED_INPUT);
      } catch (e) {
        if (e instanceof PortcullisError && e.status === 403 && e.code === 'policy_denied') return;
        throw e;
      }
      throw new Error(`${DENIED_ACTION} was allowed; the bench expects a policy deny`);
    };
    const { jwk } = await newPublicJwk();
    const leaseBody = JSON.stringify({ scopes: ['tools:call'], dpop_jwk: jwk });
    const lease = async () => {
      const res = await raw.send('POST', '/v1/leases', {}, leaseBody);
      if (res.status !== 200) throw new Error(`lease answered ${res.status}: ${res.text.slice(0, 200)}`);
    };

    await echo(); // fail fast (e.g. missing grant) before any timing
    await denied();
    await runLoad({ concurrency: 16, warmup: 0, iterations: counts.gate_warmup, maxMs: GATE_WARMUP_MAX_MS }, echo);
    const load_before = machineLoad();
    const on = (concurrency: number, c: [number, number]): LoadOptions => ({ ...load(concurrency, c), serverPid: pid });
    const echo_c1 = await runLoad(on(1, counts.echo_c1), echo);
    const echo_c16 = await runLoad(on(16, counts.echo_c16), echo);
    const denied_c1 = await runLoad(on(1, counts.denied), denied);
    const lease_c1 = await runLoad(on(1, counts.lease), lease);
    return { mode, startup_ms, lease_c1, echo_c1, echo_c16, denied_c1, load_before, load_after: machineLoad() };
  } finally {
    client.close();
    raw.close();
  }
}

async function newPublicJwk(): Promise<{ jwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string } }> {
  const pair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair;
  const j = await webcrypto.subtle.exportKey('jwk', pair.publicKey);
  return { jwk: { kty: 'EC', crv: 'P-256', x: j.x!, y: j.y! } };
}

/** One directory per gate: node writes a profile per thread (main, module-loader hooks), named by pid and thread. */
function profFlags(opts: DaemonBenchOptions, name: string): string[] {
  return opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', join(opts.cpuProfDir, name)] : [];
}

async function benchEmbedded(counts: DaemonBenchCounts, cleanup: Cleanup, opts: DaemonBenchOptions): Promise<GateFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-embedded-'));
  cleanup.defer(() => rmSync(dir, { recursive: true, force: true }));
  const layout = ensureStateDir(dir);
  appendFileSync(layout.configPath, `\n[rate_limits]\nleases_per_second = ${BENCH_LEASES_PER_SECOND}\n`);
  const started = performance.now();
  const child = spawnNode([BIN, 'up', '--state-dir', dir], cleanup, profFlags(opts, 'embedded'));
  const startup = await waitReady(join(dir, 'gate.sock'), child, started);
  try {
    return await benchGate('embedded', join(dir, 'gate.sock'), child.proc.pid, startup, counts);
  } finally {
    await child.stop();
  }
}

async function benchProduction(counts: DaemonBenchCounts, cleanup: Cleanup, opts: DaemonBenchOptions): Promise<GateFigures> {
  const redis: RedisServer = await startRedis();
  cleanup.defer(() => redis.stop());
  const pg: PostgresServer = await startPostgres();
  cleanup.defer(() => pg.stop());
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-production-'));
  cleanup.defer(() => rmSync(dir, { recursive: true, force: true }));
  const cred = newOperatorCredential('bench');
  writeFileSync(join(dir, 'operator.json'), `${JSON.stringify(cred, null, 2)}\n`, { mode: 0o600 });
  const op = operatorConfigEntry(cred);
  const s = JSON.stringify;
  const configPath = join(dir, 'portcullis.toml');
  writeFileSync(configPath, [
    'mode = "production"',
    'state_dir = "."',
    `redis_url = ${s(redis.url)}`,
    `database_url = ${s(pg.url)}`,
    'unsafe_dev = true # identity provider "none" in production',
    '',
    '[identity]',
    'provider = "none"',
    'principal = "agent"',
    '',
    '[rate_limits]',
    `leases_per_second = ${BENCH_LEASES_PER_SECOND}`,
    '',
    '[[operators]]',
    `name = ${s(op.name)}`,
    `api_key_sha256 = ${s(op.api_key_sha256)}`,
    `dpop_jkt = ${s(op.dpop_jkt)}`,
    '',
  ].join('\n'), { mode: 0o600 });
  const started = performance.now();
  const child = spawnNode([BIN, 'serve', '--config', configPath], cleanup, profFlags(opts, 'production'));
  const startup = await waitReady(join(dir, 'gate.sock'), child, started);
  try {
    const admin = new AdminClient(resolveAdminTarget({ stateDir: dir }));
    try {
      const res = await admin.request('POST', '/v1/admin/policy/grant', { principal: 'agent', actions: ['echo'] });
      if (res.status !== 200) throw new Error(`grant answered ${res.status}: ${res.text.slice(0, 200)}`);
    } finally {
      admin.close();
    }
    return await benchGate('production', join(dir, 'gate.sock'), child.proc.pid, startup, counts);
  } finally {
    await child.stop();
  }
}

/** Runs floor, embedded and production in sequence (one child at a time) and returns the figures. */
export async function runDaemonBench(opts: DaemonBenchOptions = {}): Promise<DaemonBenchResult> {
  const counts: DaemonBenchCounts = { ...(opts.quick ? QUICK_COUNTS : FULL_COUNTS), ...opts.counts };
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const cleanup = new Cleanup();
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`${sig}: stopping the bench's processes\n`);
    void cleanup.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const scratch = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
    cleanup.defer(() => rmSync(scratch, { recursive: true, force: true }));
    log('floor: bare hono on a Unix socket ...');
    const floor = await benchFloor(counts, cleanup, scratch);
    log('client: DPoP proof signing ...');
    const proof_sign = await benchProofSigning(counts);
    log('embedded gate: starting `up` ...');
    const embedded = await benchEmbedded(counts, cleanup, opts);
    let production: DaemonBenchResult['production'];
    if (opts.production === false) {
      production = { skipped: 'disabled (--no-production)' };
    } else {
      log('production gate: starting Redis, PostgreSQL and `serve` ...');
      try {
        production = await benchProduction(counts, cleanup, opts);
      } catch (e) {
        if (!(e instanceof ServiceUnavailable)) throw e;
        production = { skipped: (e as Error).message };
      }
    }
    return { counts, floor, proof_sign, embedded, production };
  } finally {
    await cleanup.run();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting

/** The targets for embedded echo on a 2-core machine. */
export const TARGETS = { echo_c1_p50_us: 2000, echo_c1_p99_us: 6000, echo_c16_per_s: 600 } as const;

export interface TargetCheck {
  name: string;
  measured: string;
  target: string;
  pass: boolean;
}

export function targetChecks(r: DaemonBenchResult): TargetCheck[] {
  const e = r.embedded;
  return [
    { name: 'embedded echo p50, c=1', measured: fmtUs(e.echo_c1.latency.p50_us), target: `<= ${fmtUs(TARGETS.echo_c1_p50_us)}`, pass: e.echo_c1.latency.p50_us <= TARGETS.echo_c1_p50_us },
    { name: 'embedded echo p99, c=1', measured: fmtUs(e.echo_c1.latency.p99_us), target: `<= ${fmtUs(TARGETS.echo_c1_p99_us)}`, pass: e.echo_c1.latency.p99_us <= TARGETS.echo_c1_p99_us },
    { name: 'embedded echo throughput, c=16', measured: `${e.echo_c16.throughput}/s`, target: `>= ${TARGETS.echo_c16_per_s}/s`, pass: e.echo_c16.throughput >= TARGETS.echo_c16_per_s },
  ];
}

function isFigures(p: DaemonBenchResult['production']): p is GateFigures {
  return !('skipped' in p);
}

/** The latency/throughput table (one row per series). */
export function formatDaemonTable(r: DaemonBenchResult): string {
  const row = (name: string, x: LoadResult): string[] => [
    name, String(x.concurrency), fmtUs(x.latency.p50_us), fmtUs(x.latency.p90_us), fmtUs(x.latency.p99_us), fmtUs(x.latency.mean_us), String(x.throughput),
    x.server_cpu_us_per_call === undefined ? 'n/a' : fmtUs(x.server_cpu_us_per_call),
    x.server_main_cpu_us_per_call === undefined ? 'n/a' : fmtUs(x.server_main_cpu_us_per_call),
    fmtUs(x.client_cpu_us_per_call), String(x.latency.n),
  ];
  const rows: string[][] = [
    row('floor: bare hono JSON round trip', r.floor.c1),
    row('floor: bare hono JSON round trip', r.floor.c16),
    ['client: DPoP proof signing (ES256)', '-', fmtUs(r.proof_sign.p50_us), fmtUs(r.proof_sign.p90_us), fmtUs(r.proof_sign.p99_us), fmtUs(r.proof_sign.mean_us), '-', '-', '-', '-', String(r.proof_sign.n)],
  ];
  for (const g of [r.embedded, r.production]) {
    if (!isFigures(g)) continue;
    rows.push(
      row(`${g.mode}: lease issuance (new session)`, g.lease_c1),
      row(`${g.mode}: execute echo (allowed)`, g.echo_c1),
      row(`${g.mode}: execute echo (allowed)`, g.echo_c16),
      row(`${g.mode}: execute ${DENIED_ACTION} (403 denied)`, g.denied_c1),
    );
  }
  return table(['series', 'c', 'p50', 'p90', 'p99', 'mean', 'calls/s', 'server CPU/call', 'main thread', 'client CPU/call', 'n'], rows);
}

/** Ratios against the floor, the server's share of a call, start-up times and load averages. */
export function formatDaemonRatios(r: DaemonBenchResult): string {
  const lines: string[] = [];
  const cpu = (x: LoadResult) => (x.server_cpu_us_per_call === undefined ? 'n/a' : fmtUs(x.server_cpu_us_per_call));
  // The event loop is one thread: its CPU per call bounds throughput on any number of cores. All
  // of the call's CPU (gate threads + the client, on the same machine) shares the cores.
  const mainCeiling = (x: LoadResult) => (x.server_main_cpu_us_per_call ? String(Math.round(1e6 / x.server_main_cpu_us_per_call)) : 'n/a');
  const cores = r.embedded && isFigures(r.embedded) ? r.embedded.load_before.cores : 2;
  const machineCeiling = (x: LoadResult) => (x.server_cpu_us_per_call ? String(Math.round((cores * 1e6) / (x.server_cpu_us_per_call + x.client_cpu_us_per_call))) : 'n/a');
  const f = r.floor;
  for (const g of [r.embedded, r.production]) {
    if (!isFigures(g)) {
      lines.push(`production: skipped (${g.skipped})`);
      continue;
    }
    lines.push(
      `${g.mode}: echo p50 / floor p50 (c=1) = ${ratio(g.echo_c1.latency.p50_us, f.c1.latency.p50_us)}x`
      + `   p99 / floor p99 = ${ratio(g.echo_c1.latency.p99_us, f.c1.latency.p99_us)}x`
      + `   throughput / floor throughput (c=16) = ${ratio(g.echo_c16.throughput, f.c16.throughput)}`,
      `${g.mode}: echo p50 ${fmtUs(g.echo_c1.latency.p50_us)} = client proof ${fmtUs(r.proof_sign.p50_us)} + transport floor ${fmtUs(f.c1.latency.p50_us)}`
      + ` + gate ≈ ${fmtUs(g.echo_c1.latency.p50_us - r.proof_sign.p50_us - f.c1.latency.p50_us)}   (denied p50 ${fmtUs(g.denied_c1.latency.p50_us)})`,
      `${g.mode}: gate CPU per echo ${cpu(g.echo_c1)} at c=1, ${cpu(g.echo_c16)} at c=16 (floor ${cpu(f.c1)});`
      + ` at c=16: event-loop thread ${g.echo_c16.server_main_cpu_us_per_call === undefined ? 'n/a' : fmtUs(g.echo_c16.server_main_cpu_us_per_call)}, client ${fmtUs(g.echo_c16.client_cpu_us_per_call)};`
      + ` ceilings ≈ ${mainCeiling(g.echo_c16)} calls/s (event loop) and ${machineCeiling(g.echo_c16)} calls/s (all CPU on ${cores} cores)`,
      `${g.mode}: start-up to /readyz ${(g.startup_ms / 1000).toFixed(1)} s; ${formatLoad(g.load_before)} before, ${g.load_after.load1} after`,
    );
  }
  lines.push(`floor: ${formatLoad(f.load_before)} before, ${f.load_after.load1} after`);
  return lines.join('\n');
}

export function formatTargets(checks: readonly TargetCheck[]): string {
  return table(['target (embedded, 2 cores)', 'measured', 'target', 'result'], checks.map((c) => [c.name, c.measured, c.target, c.pass ? 'PASS' : 'MISS']));
}

if (process.argv[1] && resolve(process.argv[1]) === SELF) {
  const args = process.argv.slice(2);
  if (args[0] === 'floor-server' && args[1]) {
    await floorServer(args[1]);
  } else {
    const profAt = args.indexOf('--cpu-prof');
    try {
      const r = await runDaemonBench({
        quick: args.includes('--quick'),
        production: !args.includes('--no-production'),
        ...(profAt >= 0 && args[profAt + 1] ? { cpuProfDir: resolve(args[profAt + 1]!) } : {}),
      });
      console.log([formatDaemonTable(r), '', formatDaemonRatios(r), '', formatTargets(targetChecks(r))].join('\n'));
    } catch (err) {
      console.error(err);
      process.exitCode = 1;
    }
  }
}
