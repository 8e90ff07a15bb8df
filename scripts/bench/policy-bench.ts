// Policy evaluation latency: the in-process engine (policy.wasm via opa-wasm, with input and
// answer validation) against the same decisions from an OPA server (`opa run --server`, the
// pinned binary from scripts/build-policy.sh) on a loopback ephemeral port over HTTP keep-alive.
// Run alone: node --import tsx scripts/bench/policy-bench.ts [iterations]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { loadPolicyEngine, POLICY_ENTRYPOINT } from '../../src/policy/engine.ts';
import type { PolicyData, PolicyInput } from '../../src/policy/types.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface LatencyStats {
  p50_us: number;
  p99_us: number;
  mean_us: number;
}

export interface PolicyBenchResult {
  iterations: number;
  in_process: LatencyStats;
  opa_server: LatencyStats;
  /** opa_server p50 / in_process p50. */
  ratio_p50: number;
  ratio_p99: number;
  opa_version: string;
}

export interface PolicyBenchOptions {
  iterations?: number;
  warmup?: number;
  /** Path of the opa binary; default: `scripts/build-policy.sh --opa-path`. */
  opaPath?: string;
  log?: (line: string) => void;
}

/** A realistic data document: 50 principals, 200 learned domains, a few allowlist entries. */
function benchData(): PolicyData {
  const acl: PolicyData['acl'] = {};
  for (let i = 0; i < 50; i++) acl[`agent-${i}`] = { actions: ['http_fetch', 'github_read', 'slack_post', 'http_delete'], sinks: ['http_read', 'http_write'] };
  return {
    policy_version: 'bench-1',
    revision: 1,
    acl,
    allowlist: { slack_post: { 'agent-3': true } },
    risk_overrides: { github_read: 'medium' },
    learned_domains: Array.from({ length: 200 }, (_, i) => ({ domain: `api${i}.example.com`, action_id: 'http_fetch', source: 'cli' as const, added_at: '2026-01-01T00:00:00Z' })),
    learned_paths: [{ path: '/data/reports', action_id: 'http_fetch', source: 'cli', added_at: '2026-01-01T00:00:00Z' }],
    modes: { principals: { 'agent-7': 'warn' }, actions: {} },
  };
}

/** Three calls with different outcomes (allow via learned domain, approval hold, deny), round-robin. */
function benchInputs(): PolicyInput[] {
  const base: PolicyInput = {
    principal: 'agent-1',
    session_id: 'ses_bench',
    action: { id: 'http_fetch', version: '1.0.0', risk_level: 'low', required_scopes: ['net:read'], declared_side_effects: ['http_read'], digest_trusted: true },
    scopes: ['tools:call', 'net:read'],
    budget: { exhausted: false, remaining_calls: 100, cost: 1 },
    requested_sinks: ['http_read'],
    egress: { unresolved_domains: ['api150.example.com'], unresolved_paths: [], sensitive_paths: [] },
  };
  return [
    base,
    { ...base, action: { ...base.action, id: 'http_delete', risk_level: 'high', declared_side_effects: ['http_write'] } },
    { ...base, principal: 'agent-unknown' },
  ];
}

function stats(samples: number[]): LatencyStats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  const round = (x: number) => Math.round(x * 10) / 10;
  return { p50_us: round(at(0.5)), p99_us: round(at(0.99)), mean_us: round(s.reduce((a, b) => a + b, 0) / s.length) };
}

function resolveOpa(): string {
  const r = spawnSync('bash', [join(ROOT, 'scripts/build-policy.sh'), '--opa-path'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot resolve the pinned opa binary: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function post(agent: Agent, port: number, path: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`opa answered ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function startOpa(opa: string, dir: string): Promise<{ child: ChildProcess; port: number }> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freeLoopbackPort();
    const child = spawn(opa, ['run', '--server', '--addr', `127.0.0.1:${port}`, '--log-level', 'error', join(dir, 'authz.rego'), join(dir, 'data.json')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let exited = false;
    child.once('exit', () => { exited = true; });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && !exited) {
      const ok = await new Promise<boolean>((resolve) => {
        const req = request({ host: '127.0.0.1', port, path: '/health', method: 'GET' }, (res) => { res.resume(); resolve(res.statusCode === 200); });
        req.on('error', () => resolve(false));
        req.end();
      });
      if (ok) return { child, port };
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGTERM');
  }
  throw new Error('opa server did not become healthy');
}

/** Runs both measurements in one process and returns (and logs) p50/p99 and the ratio. */
export async function runPolicyBench(opts: PolicyBenchOptions = {}): Promise<PolicyBenchResult> {
  const iterations = opts.iterations ?? 5000;
  const warmup = opts.warmup ?? Math.min(1000, iterations);
  const log = opts.log ?? ((l: string) => console.log(l));
  const opa = opts.opaPath ?? resolveOpa();
  const opaVersion = /^Version: (\S+)$/m.exec(spawnSync(opa, ['version'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';

  const data = benchData();
  const inputs = benchInputs();
  const engine = await loadPolicyEngine(new Uint8Array(readFileSync(join(ROOT, 'policy/policy.wasm'))), data);

  const dir = mkdtempSync(join(tmpdir(), 'portcullis-policy-bench-'));
  let child: ChildProcess | undefined;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    copyFileSync(join(ROOT, 'policy/authz.rego'), join(dir, 'authz.rego'));
    writeFileSync(join(dir, 'data.json'), JSON.stringify(data));
    const started = await startOpa(opa, dir);
    child = started.child;
    const path = `/v1/data/${POLICY_ENTRYPOINT}`;
    const bodies = inputs.map((input) => JSON.stringify({ input }));

    // Same decisions from both, or the comparison is meaningless.
    for (const [i, input] of inputs.entries()) {
      const local = engine.evaluate(input).decision;
      const remote = (JSON.parse(await post(agent, started.port, path, bodies[i]!)) as { result: unknown }).result;
      if (!isDeepStrictEqual(remote, local)) throw new Error(`decision ${i} differs between wasm and the OPA server`);
    }

    const inProc: number[] = [];
    for (let i = 0; i < warmup + iterations; i++) {
      const t0 = process.hrtime.bigint();
      engine.evaluate(inputs[i % inputs.length]!);
      const dt = Number(process.hrtime.bigint() - t0) / 1000;
      if (i >= warmup) inProc.push(dt);
    }
    const http: number[] = [];
    for (let i = 0; i < warmup + iterations; i++) {
      const t0 = process.hrtime.bigint();
      JSON.parse(await post(agent, started.port, path, bodies[i % bodies.length]!));
      const dt = Number(process.hrtime.bigint() - t0) / 1000;
      if (i >= warmup) http.push(dt);
    }

    const a = stats(inProc);
    const b = stats(http);
    const result: PolicyBenchResult = {
      iterations,
      in_process: a,
      opa_server: b,
      ratio_p50: Math.round((b.p50_us / a.p50_us) * 10) / 10,
      ratio_p99: Math.round((b.p99_us / a.p99_us) * 10) / 10,
      opa_version: opaVersion,
    };
    log(`policy evaluation, ${iterations} iterations after ${warmup} warm-up, 3 inputs round-robin (OPA ${opaVersion})`);
    log(`  in-process wasm : p50 ${a.p50_us} µs  p99 ${a.p99_us} µs  mean ${a.mean_us} µs`);
    log(`  OPA server HTTP : p50 ${b.p50_us} µs  p99 ${b.p99_us} µs  mean ${b.mean_us} µs`);
    log(`  ratio server/in-process: p50 ${result.ratio_p50}x  p99 ${result.ratio_p99}x`);
    return result;
  } finally {
    agent.destroy();
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const n = Number(process.argv[2] ?? '5000');
  runPolicyBench({ iterations: Number.isInteger(n) && n > 0 ? n : 5000 }).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
