// Timing and statistics helpers shared by the benches: percentiles over samples, sequential and
// fixed-concurrency load loops (warm-up first, then a bounded number of measured calls), and a
// plain-text table. Samples are milliseconds from performance.now(); nothing here prints.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg, cpus } from 'node:os';

/** Percentiles of one series, in microseconds (rounded to 0.1 µs). */
export interface Summary {
  n: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  mean_us: number;
  max_us: number;
}

/** Nearest-rank percentile of an ascending array (q in 0..1). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(q * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

const r1 = (x: number) => Math.round(x * 10) / 10;

/** Summarises samples given in milliseconds. */
export function summarize(samplesMs: readonly number[]): Summary {
  const s = [...samplesMs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return {
    n: s.length,
    p50_us: r1(percentile(s, 0.5) * 1000),
    p90_us: r1(percentile(s, 0.9) * 1000),
    p99_us: r1(percentile(s, 0.99) * 1000),
    mean_us: r1(mean * 1000),
    max_us: r1((s[s.length - 1] ?? Number.NaN) * 1000),
  };
}

/** A latency series plus the rate the loop achieved (completed calls / wall time). */
export interface LoadResult {
  concurrency: number;
  latency: Summary;
  /** Completed calls per second over the measured phase. */
  throughput: number;
  elapsed_ms: number;
  /** CPU time (user + system, all threads) the measured process spent per call; absent off Linux. */
  server_cpu_us_per_call?: number;
  /** The same for the server's main (event-loop) thread alone: the part that cannot use a second core. */
  server_main_cpu_us_per_call?: number;
  /** CPU time of this (the client's) process per call. */
  client_cpu_us_per_call: number;
}

export interface LoadOptions {
  concurrency: number;
  /** Calls before measuring (not recorded), run at the same concurrency. */
  warmup: number;
  /** Measured calls, shared by all workers. */
  iterations: number;
  /** Stop starting new measured calls after this long (warm-up: a quarter of it); bounds a slow run. */
  maxMs?: number;
  /** The server's pid: its CPU time over the measured phase is reported per call. */
  serverPid?: number;
}

/**
 * Runs `fn` `warmup` then `iterations` times with `concurrency` calls in flight (or until `maxMs`);
 * any failure aborts. Throughput is completed calls over the measured phase's wall time.
 */
export async function runLoad(opts: LoadOptions, fn: (i: number) => Promise<unknown>): Promise<LoadResult> {
  const phase = async (count: number, budgetMs: number, record?: number[]) => {
    let next = 0;
    const deadline = performance.now() + budgetMs;
    const worker = async () => {
      while (next < count && performance.now() < deadline) {
        const i = next++;
        const t0 = performance.now();
        await fn(i);
        record?.push(performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, Math.max(count, 1)) }, worker));
  };
  const budget = opts.maxMs ?? Number.POSITIVE_INFINITY;
  await phase(opts.warmup, budget / 4);
  const samples: number[] = [];
  const pid = opts.serverPid;
  const cpu0 = pid === undefined ? undefined : processCpuMs(pid);
  const main0 = pid === undefined ? undefined : processCpuMs(pid, pid);
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  await phase(opts.iterations, budget, samples);
  const elapsed = performance.now() - t0;
  const own = process.cpuUsage(own0);
  const cpu1 = pid === undefined ? undefined : processCpuMs(pid);
  const main1 = pid === undefined ? undefined : processCpuMs(pid, pid);
  const perCall = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && samples.length > 0 ? Math.round(((b - a) / samples.length) * 1000) : undefined);
  const server = perCall(cpu0, cpu1);
  const serverMain = perCall(main0, main1);
  return {
    concurrency: opts.concurrency,
    latency: summarize(samples),
    throughput: Math.round((samples.length / elapsed) * 1000),
    elapsed_ms: Math.round(elapsed),
    ...(server !== undefined ? { server_cpu_us_per_call: server } : {}),
    ...(serverMain !== undefined ? { server_main_cpu_us_per_call: serverMain } : {}),
    client_cpu_us_per_call: samples.length > 0 ? Math.round((own.user + own.system) / samples.length) : 0,
  };
}

let clockTicks: number | undefined;

/**
 * user + system CPU time of a live process (or of one of its threads, `tid`) in ms (Linux /proc;
 * clock-tick resolution), or undefined.
 */
export function processCpuMs(pid: number, tid?: number): number | undefined {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    clockTicks ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / clockTicks;
  } catch {
    return undefined;
  }
}

/** The 1-, 5- and 15-minute load averages and the core count, for the record. */
export interface MachineLoad {
  load1: number;
  load5: number;
  load15: number;
  cores: number;
}

export function machineLoad(): MachineLoad {
  const [a, b, c] = loadavg();
  return { load1: Math.round(a! * 100) / 100, load5: Math.round(b! * 100) / 100, load15: Math.round(c! * 100) / 100, cores: cpus().length };
}

export function formatLoad(l: MachineLoad): string {
  return `load average ${l.load1} ${l.load5} ${l.load15} on ${l.cores} cores`;
}

/** Microseconds as a short human figure: "87 µs", "1.84 ms". */
export function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return 'n/a';
  return us < 1000 ? `${Math.round(us)} µs` : `${(us / 1000).toFixed(2)} ms`;
}

/** b / a rounded to two decimals ("how many times a"). */
export function ratio(b: number, a: number): number {
  return a > 0 && Number.isFinite(a) && Number.isFinite(b) ? Math.round((b / a) * 100) / 100 : Number.NaN;
}

/** Left-aligned first column, right-aligned others; a rule under the header. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
