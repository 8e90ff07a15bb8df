// Sandbox overhead: a warm `echo` call through the Sandbox (digest re-check, instance, call, fuel
// accounting, step parsing) against bare Extism calls of the uninstrumented module, in one process.
// Run alone: node --import tsx scripts/bench/sandbox-bench.ts [iterations]
import { createPlugin } from '@extism/extism';
import { readFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const tick = (): Promise<void> => sleep(1);
import { fileURLToPath } from 'node:url';
import { loadRegistry } from '../../src/registry/index.ts';
import { PinnedModule, Sandbox, instrumentModule } from '../../src/sandbox/index.ts';
import { compileModule } from '../../src/sandbox/wasm-api.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Percentiles {
  p50_us: number;
  p99_us: number;
  mean_us: number;
}

export interface SandboxBenchResult {
  iterations: number;
  /** Sandbox.run with a prewarmed instance (calls spaced by 1 ms, as requests arriving over a socket are). */
  sandbox_prewarmed: Percentiles;
  /** Sandbox.run instantiating inline (back-to-back calls; no time for the prewarm). */
  sandbox_inline: Percentiles;
  /** Bare Extism: createPlugin (precompiled, uninstrumented) + call + close. */
  bare_fresh: Percentiles;
  /** Bare Extism: call on one long-lived plugin (not isolated: state persists across calls). */
  bare_warm: Percentiles;
  /** PinnedModule.verify(): stat of the module file (re-hashed only when it changed). */
  digest_verify: Percentiles;
  /** One-off instrumentation of echo.wasm (ms). */
  instrument_ms: number;
  ratio_prewarmed_vs_bare_fresh: number;
  ratio_inline_vs_bare_fresh: number;
  ratio_prewarmed_vs_bare_warm: number;
}

function stats(samples: number[]): Percentiles {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => (s[Math.min(s.length - 1, Math.floor(q * s.length))] as number) * 1000;
  const mean = (s.reduce((a, b) => a + b, 0) / s.length) * 1000;
  return { p50_us: Math.round(at(0.5) * 10) / 10, p99_us: Math.round(at(0.99) * 10) / 10, mean_us: Math.round(mean * 10) / 10 };
}

async function measure(n: number, warmup: number, fn: () => Promise<void>, spaced: boolean): Promise<number[]> {
  for (let i = 0; i < warmup; i++) {
    await fn();
    if (spaced) await tick();
  }
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (spaced) await tick();
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

const noIo = async (): Promise<never> => {
  throw new Error('echo performs no I/O');
};

/** Runs the benchmark and returns the figures (nothing printed). */
export async function sandboxBench(options: { iterations?: number; warmup?: number } = {}): Promise<SandboxBenchResult> {
  const n = options.iterations ?? 2000;
  const warmup = options.warmup ?? 200;
  const registry = loadRegistry(resolve(ROOT, 'manifests'));
  const echo = registry.require('echo');
  const bytes = new Uint8Array(readFileSync(echo.moduleFile));
  const input = { message: 'hello' };
  const envelope = JSON.stringify({ input, io: [] });

  const t0 = performance.now();
  instrumentModule(bytes, { fuel: BigInt(echo.manifest.resource_limits.fuel), maxPages: echo.manifest.resource_limits.memory_mb * 16 });
  const instrument_ms = Math.round((performance.now() - t0) * 10) / 10;

  const prewarmed = new Sandbox({ prewarm: true });
  await prewarmed.register(echo.manifest, { path: echo.moduleFile });
  const inline = new Sandbox({ prewarm: false });
  await inline.register(echo.manifest, { path: echo.moduleFile });

  const sandbox_prewarmed = stats(await measure(n, warmup, async () => void (await prewarmed.run('echo', input, { io: noIo })), true));
  const sandbox_inline = stats(await measure(n, warmup, async () => void (await inline.run('echo', input, { io: noIo })), false));

  const plain = compileModule(bytes);
  const bare_fresh = stats(
    await measure(
      n,
      warmup,
      async () => {
        const p = await createPlugin({ wasm: [{ module: plain as never }] }, { useWasi: false });
        await p.call('step', envelope);
        await p.close();
      },
      false,
    ),
  );
  const warm = await createPlugin({ wasm: [{ module: plain as never }] }, { useWasi: false });
  const bare_warm = stats(await measure(n, warmup, async () => void (await warm.call('step', envelope)), false));
  await warm.close();

  const pinned = PinnedModule.fromFile('echo', echo.manifest.provider_module_digest, echo.moduleFile);
  const digest_verify = stats(await measure(n, warmup, async () => pinned.verify(), false));

  await prewarmed.close();
  await inline.close();
  const r = (a: Percentiles, b: Percentiles) => Math.round((a.p50_us / b.p50_us) * 100) / 100;
  return {
    iterations: n,
    sandbox_prewarmed,
    sandbox_inline,
    bare_fresh,
    bare_warm,
    digest_verify,
    instrument_ms,
    ratio_prewarmed_vs_bare_fresh: r(sandbox_prewarmed, bare_fresh),
    ratio_inline_vs_bare_fresh: r(sandbox_inline, bare_fresh),
    ratio_prewarmed_vs_bare_warm: r(sandbox_prewarmed, bare_warm),
  };
}

export function formatSandboxBench(b: SandboxBenchResult): string {
  const row = (name: string, p: Percentiles) =>
    `${name.padEnd(44)} p50 ${String(p.p50_us).padStart(8)} µs   p99 ${String(p.p99_us).padStart(8)} µs   mean ${String(p.mean_us).padStart(8)} µs`;
  return [
    `sandbox bench: echo, ${b.iterations} calls each`,
    row('sandbox run, prewarmed instance', b.sandbox_prewarmed),
    row('sandbox run, inline instantiation', b.sandbox_inline),
    row('bare extism: createPlugin+call+close', b.bare_fresh),
    row('bare extism: warm call on one plugin', b.bare_warm),
    row('module file check per step (stat)', b.digest_verify),
    `instrumentation of echo.wasm (once per digest): ${b.instrument_ms} ms`,
    `ratio p50 sandbox(prewarmed) / bare fresh: ${b.ratio_prewarmed_vs_bare_fresh}`,
    `ratio p50 sandbox(inline)    / bare fresh: ${b.ratio_inline_vs_bare_fresh}`,
    `ratio p50 sandbox(prewarmed) / bare warm:  ${b.ratio_prewarmed_vs_bare_warm}`,
  ].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const iterations = Number(process.argv[2] ?? 2000);
  sandboxBench({ iterations }).then(
    (b) => console.log(formatSandboxBench(b)),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
