// `npm run bench`: every benchmark in one run — the transport floor, the embedded and production
// gates end to end (scripts/bench/daemon-bench.ts), policy evaluation and the sandbox — then the
// ratios to the floor and the targets as PASS/MISS. Progress on stderr, report on stdout.
// Usage: npm run bench -- [--quick] [--no-production] [--json FILE] [--cpu-prof DIR]
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatDaemonRatios, formatDaemonTable, formatTargets, runDaemonBench, targetChecks, type DaemonBenchResult, type TargetCheck } from './daemon-bench.ts';
import { formatLoad, machineLoad } from './lib.ts';
import { runPolicyBench, type PolicyBenchResult } from './policy-bench.ts';
import { formatSandboxBench, sandboxBench, type SandboxBenchResult } from './sandbox-bench.ts';

const ROOT = resolve(fileURLToPath(new URL('../../', import.meta.url)));

const USAGE = `Usage: npm run bench -- [options]
  --quick          short smoke run (small iteration counts; figures are not meaningful)
  --no-production  skip the Redis + PostgreSQL gate
  --json FILE      also write every figure as JSON
  --cpu-prof DIR   start the gates under node --cpu-prof (profiles land in DIR on shutdown)`;

function git(args: string[]): string {
  const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '';
}

async function section<T>(name: string, failures: string[], fn: () => Promise<T>): Promise<T | undefined> {
  const t0 = performance.now();
  process.stderr.write(`== ${name}\n`);
  try {
    return await fn();
  } catch (e) {
    failures.push(`${name}: ${(e as Error).stack ?? String(e)}`);
    return undefined;
  } finally {
    process.stderr.write(`== ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      'no-production': { type: 'boolean', default: false },
      json: { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const quick = values.quick;
  const started = performance.now();
  const loadStart = machineLoad();
  const rev = git(['rev-parse', '--short', 'HEAD']);
  const dirty = git(['status', '--porcelain', '--', 'src', 'manifests', 'providers', 'policy']) !== '';
  const failures: string[] = [];

  const header = [
    `Portcullis bench${quick ? ' (--quick: smoke run, figures not meaningful)' : ''} — ${new Date().toISOString()}`,
    `commit ${rev || 'unknown'}${dirty ? ' + uncommitted changes under src/manifests/providers/policy' : ''}; node ${process.version}; ${cpus()[0]?.model ?? 'cpu'}`,
    `${formatLoad(loadStart)} at start${loadStart.load1 > loadStart.cores ? '  ** machine busy: latencies are inflated, re-run when quieter **' : ''}`,
  ];

  const daemon = await section('daemon bench (floor, embedded, production)', failures, () => runDaemonBench({
    quick,
    production: !values['no-production'],
    ...(values['cpu-prof'] ? { cpuProfDir: resolve(values['cpu-prof']) } : {}),
  }));
  const policyLines: string[] = [];
  const policy = await section('policy bench', failures, () => runPolicyBench({
    iterations: quick ? 300 : 2000,
    warmup: quick ? 100 : 500,
    log: (l) => policyLines.push(l),
  }));
  const sandbox = await section('sandbox bench', failures, () => sandboxBench(quick ? { iterations: 100, warmup: 20 } : { iterations: 1000, warmup: 200 }));
  const loadEnd = machineLoad();

  const out: string[] = [...header, ''];
  let checks: TargetCheck[] = [];
  if (daemon) {
    checks = targetChecks(daemon);
    out.push(
      '## End to end over the client socket (PortcullisClient, keep-alive, fresh DPoP proof per call)',
      formatDaemonTable(daemon),
      '',
      '## Ratios and shares',
      formatDaemonRatios(daemon),
      '',
    );
  }
  if (policy) out.push('## Policy', ...policyLines, '');
  if (sandbox) out.push('## Sandbox', formatSandboxBench(sandbox), '');
  if (daemon) out.push('## Targets (issue: embedded echo on a 2-core machine)', formatTargets(checks), '');
  out.push(`${formatLoad(loadEnd)} at end; total ${((performance.now() - started) / 1000).toFixed(0)} s`);
  if (failures.length > 0) out.push('', `FAILED (${failures.length}):`, ...failures);
  console.log(out.join('\n'));

  if (values.json) {
    const doc: {
      started_at: string; commit: string; dirty: boolean; node: string; quick: boolean;
      load_start: typeof loadStart; load_end: typeof loadEnd;
      daemon?: DaemonBenchResult; policy?: PolicyBenchResult; sandbox?: SandboxBenchResult; targets: TargetCheck[]; failures: string[];
    } = {
      started_at: new Date(Date.now() - (performance.now() - started)).toISOString(), commit: rev, dirty, node: process.version, quick,
      load_start: loadStart, load_end: loadEnd, daemon, policy, sandbox, targets: checks, failures,
    };
    writeFileSync(resolve(values.json), `${JSON.stringify(doc, null, 2)}\n`);
  }
  return failures.length > 0 ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
