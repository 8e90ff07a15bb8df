// The harness behind docs/benchmarks.md's step-by-step figures and profiles: one embedded gate
// (`up`) as a child process, a 2000-call warm-up, then allowed echo at c=1 and c=16 and a denied
// call at c=1, printing latency, the gate's CPU per call (all threads) and the client's. Faster to
// iterate with than `npm run bench`; the same counting method.
//
//   node --import tsx scripts/bench/gate-profile.ts [--c1 N] [--c16 N] [--warm N] [--node-flags="..."] [--pid-file F --pause-ms MS]
//   (GP_EXTRA="<toml>" appends to the gate's portcullis.toml, e.g. a [ledger] section)
//
// To profile the gate while it serves c=16 load:
//   node --import tsx scripts/bench/gate-profile.ts --node-flags=--perf-basic-prof --c1 1 --c16 6000 --pid-file /tmp/gate.pid &
//   (wait for the pid file) perf record -F 2000 -g -p "$(cat /tmp/gate.pid)" -- sleep 10
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { PortcullisClient, PortcullisError } from '../../src/client/index.ts';
import { ensureStateDir } from '../../src/runtime/state-dir.ts';
import { machineLoad, runLoad, type LoadResult } from './lib.ts';

const ROOT = resolve(fileURLToPath(new URL('../../', import.meta.url)));
const { values: opt } = parseArgs({
  options: {
    c1: { type: 'string', default: '1500' },
    c16: { type: 'string', default: '4000' },
    warm: { type: 'string', default: '2000' },
    'node-flags': { type: 'string', default: '' },
    'pid-file': { type: 'string' },
    'pause-ms': { type: 'string', default: '0' },
  },
});

const dir = mkdtempSync(join(tmpdir(), 'portcullis-gate-profile-'));
const layout = ensureStateDir(dir);
appendFileSync(layout.configPath, '\n[rate_limits]\nleases_per_second = 100000\n' + (process.env.GP_EXTRA ?? ''));
const child = spawn(process.execPath, [...opt['node-flags']!.split(' ').filter(Boolean), join(ROOT, 'src/cli/bin.js'), 'up', '--state-dir', dir], {
  // With extra node flags (e.g. --trace-gc) the gate's stdout is shown too.
  cwd: ROOT, stdio: ['ignore', opt['node-flags'] ? 'inherit' : 'ignore', 'inherit'],
});
const stop = async () => {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  rmSync(dir, { recursive: true, force: true });
};
try {
  const client = new PortcullisClient({ socketPath: join(dir, 'gate.sock') });
  for (let i = 0; ; i++) {
    try {
      await client.connect();
      break;
    } catch (e) {
      if (i > 600 || child.exitCode !== null) throw e;
      await delay(100);
    }
  }
  const echo = async () => {
    const o = await client.execute<{ output?: { message?: string } }>('echo', { message: 'hello' });
    if (o.output?.message !== 'hello') throw new Error(`echo answered ${JSON.stringify(o).slice(0, 200)}`);
  };
  const denied = async () => {
    try {
      await client.execute('http_post', { url: 'https://example.com/x', body: 'x' });
    } catch (e) {
      if (e instanceof PortcullisError && e.status === 403) return;
      throw e;
    }
    throw new Error('http_post was allowed');
  };
  const line = (name: string, r: LoadResult) => {
    const l = r.latency;
    console.log(`${name.padEnd(10)} p50 ${(l.p50_us / 1000).toFixed(2)} ms  p99 ${(l.p99_us / 1000).toFixed(2)} ms  ${r.throughput}/s  `
      + `gate CPU/call ${r.server_cpu_us_per_call} µs (event loop ${r.server_main_cpu_us_per_call} µs)  client ${r.client_cpu_us_per_call} µs  n=${l.n}`);
  };
  await runLoad({ concurrency: 16, warmup: 0, iterations: Number(opt.warm) }, echo);
  console.log('load', JSON.stringify(machineLoad()));
  if (opt['pid-file']) {
    writeFileSync(opt['pid-file'], String(child.pid));
    await delay(Number(opt['pause-ms']));
  }
  const pid = child.pid;
  line('echo c=1', await runLoad({ concurrency: 1, warmup: 100, iterations: Number(opt.c1), serverPid: pid }, echo));
  line('echo c=16', await runLoad({ concurrency: 16, warmup: 100, iterations: Number(opt.c16), serverPid: pid }, echo));
  line('deny c=1', await runLoad({ concurrency: 1, warmup: 50, iterations: 500, serverPid: pid }, denied));
  console.log('load', JSON.stringify(machineLoad()));
  client.close();
} finally {
  await stop();
}
