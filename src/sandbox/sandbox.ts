// Runs providers: one fresh Extism instance of the instrumented module per step (a call is one or
// more steps), fuel carried across the steps of a call, host-side Extism allocations capped, the
// pinned digest re-verified before every instantiation, and a wall-clock deadline checked between
// steps and around host I/O. Failures are GateError `action_execution_failed` carrying
// `extra.failure_class` (fuel_exhausted | memory | timeout | provider_error) and `extra.runtime`.
import { createPlugin, type CallContext, type Plugin } from '@extism/extism';
import { performance } from 'node:perf_hooks';
import type { ProviderHttpRequest, ProviderHttpResponse } from '../contracts.ts';
import { GateError } from '../errors.ts';
import type { ActionManifest } from '../registry/manifest.ts';
import type { Registry } from '../registry/registry.ts';
import {
  ENTRYPOINT,
  EXTISM_NAMESPACE,
  FUEL_GLOBAL,
  INSTRUMENTATION_VERSION,
  MEMORY_IMPORT,
  ModuleRejectedError,
  OOM_GLOBAL,
  PAGE_BYTES,
  instrumentModule,
  type InstrumentedModule,
} from './instrument.ts';
import { PinnedModule } from './pinned-module.ts';
import { isWasmGlobal, type WasmGlobal } from './wasm-api.ts';
import { normalizeResponse, parseStepAnswer, ProtocolViolation } from './step-protocol.ts';

export type FailureClass = 'fuel_exhausted' | 'memory' | 'timeout' | 'provider_error';

/** What the execute response reports as `runtime`. */
export interface RuntimeReport {
  duration_ms: number;
  /** 0 success, 1 provider_error, 2 fuel_exhausted, 3 memory, 4 timeout. */
  exit_code: number;
  fuel_consumed: number;
  io_calls: number;
}

export const EXIT_CODES: Readonly<Record<'ok' | FailureClass, number>> = Object.freeze({
  ok: 0,
  provider_error: 1,
  fuel_exhausted: 2,
  memory: 3,
  timeout: 4,
});

/** `extra` of an `action_execution_failed` thrown by the sandbox (kept for receipts, never sent: 502). */
export interface ExecutionFailure {
  failure_class: FailureClass;
  /** Stable short reason, e.g. `trap`, `answer_not_json`, `max_io_calls_exceeded`, `deadline`. */
  reason: string;
  runtime: RuntimeReport;
  /** Present when the provider answered {"error": …} (control characters stripped, bounded). */
  provider_error?: { code: string; message: string };
  /** True when the deadline passed while a host I/O call was outstanding: its effect is unknown. */
  io_in_flight?: boolean;
}

export interface RunIo {
  /** Performs one provider HTTP request (the egress guard). `signal` aborts at the deadline. */
  (request: ProviderHttpRequest, context: { signal: AbortSignal }): Promise<ProviderHttpResponse>;
}

export interface RunOptions {
  io: RunIo;
  /** Caller cancellation (e.g. drain); observed between steps and around I/O, reported as timeout. */
  signal?: AbortSignal;
  /** When given, the run is refused (`action_not_registered`) unless the registered digest equals it. */
  digest?: string;
}

export interface RunResult {
  output: unknown;
  runtime: RuntimeReport;
}

/** Instrumented modules keyed by (digest, fuel, memory cap, instrumentation version); share it across reloads. */
export class InstrumentCache {
  readonly #entries = new Map<string, InstrumentedModule>();

  get size(): number {
    return this.#entries.size;
  }

  getOrCreate(pinned: PinnedModule, fuel: bigint, maxPages: number): InstrumentedModule {
    const key = `${pinned.digest}|${fuel}|${maxPages}|v${INSTRUMENTATION_VERSION}`;
    let hit = this.#entries.get(key);
    if (!hit) {
      hit = instrumentModule(pinned.bytes(), { fuel, maxPages });
      this.#entries.set(key, hit);
    }
    return hit;
  }
}

export interface SandboxOptions {
  cache?: InstrumentCache;
  /** Keep one instantiated instance per action ready, created off the request path. Default true. */
  prewarm?: boolean;
  /**
   * Where a prewarm runs: the gate passes its QuietQueue (src/runtime/quiet.ts), so that the
   * instantiation waits until no request is in flight. Default: a 0 ms timer.
   */
  schedule?: (task: () => void) => void;
  /** Monotonic milliseconds; tests may inject. */
  now?: () => number;
}

interface Entry {
  manifest: ActionManifest;
  pinned: PinnedModule;
  instrumented: InstrumentedModule;
  fuel: bigint;
  hostByteCap: number;
  next: LiveInstance | undefined;
  filling: boolean;
  /** Zeroed linear memories of the initial size, ready for the next instances (MemoryPool). */
  memories: MemoryPool;
}

interface LiveInstance {
  plugin: Plugin;
  /** The instance's linear memory (imported: see MEMORY_IMPORT). */
  memory: WasmMemory;
  fuel: WasmGlobal;
  oom: WasmGlobal;
  /** Fuel the start function spent during instantiation. */
  startFuel: bigint;
  hostLimitHit: () => boolean;
}

interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
const wasmGlobal = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => WasmMemory } }).WebAssembly;

/** At most this many bytes of spare memories are kept per action. */
const POOL_BYTES = 4 * 1048576;

/**
 * Linear memories for an action's instances. A fresh instance gets a memory nobody else holds,
 * all zero and of the module's initial size: exactly what a memory the module defined itself
 * would be. One is taken back only from an instance that returned normally (never after a trap)
 * and only if it did not grow; it is zeroed before it is kept, so no earlier call's bytes stay in
 * it. Creating a WebAssembly memory costs V8 a large reservation and the GC an unmap later, most
 * of an instantiation's cost (docs/benchmarks.md, seventh session); reusing one costs a memset.
 */
export class MemoryPool {
  readonly #spare: WasmMemory[] = [];
  readonly #bytes: number;
  readonly #cap: number;
  #created = 0;
  #reused = 0;

  constructor(readonly limits: { initial: number; maximum: number }) {
    this.#bytes = limits.initial * PAGE_BYTES;
    this.#cap = this.#bytes === 0 ? 16 : Math.min(16, Math.floor(POOL_BYTES / this.#bytes));
  }

  take(): WasmMemory {
    const m = this.#spare.pop();
    if (m) {
      this.#reused++;
      return m;
    }
    this.#created++;
    return new wasmGlobal.Memory({ initial: this.limits.initial, maximum: this.limits.maximum });
  }

  /** Takes back the memory of an instance that is finished and returned normally. */
  give(m: WasmMemory): void {
    // A grown memory cannot shrink back to the initial size: it is left to the GC.
    if (this.#spare.length >= this.#cap || m.buffer.byteLength !== this.#bytes) return;
    new Uint8Array(m.buffer).fill(0);
    this.#spare.push(m);
  }

  /** @internal tests and metrics: memories created and reused so far, and how many are spare. */
  get stats(): { created: number; reused: number; spare: number } {
    return { created: this.#created, reused: this.#reused, spare: this.#spare.length };
  }
}

/**
 * Extism 1.0.3 builds the import object from `functions` by calling `.bind(null, context)` on
 * every entry (createForegroundPlugin), and has no other way to pass an import. An entry whose
 * `bind` returns the memory places the memory itself in the import object. Should a later Extism
 * wrap entries differently, the import would not be a memory and instantiation fails (LinkError),
 * so no call could run on a memory it did not get from the pool (test/sandbox/memory-pool.test.ts).
 */
function memoryImport(memory: WasmMemory): (ctx: CallContext) => unknown {
  return { bind: () => memory } as unknown as (ctx: CallContext) => unknown;
}

const SILENT_LOGGER = {
  info: () => {},
  debug: () => {},
  warn: () => {},
  error: () => {},
  log: () => {},
  trace: () => {},
} as unknown as Console;

class HostLimitError extends Error {
  constructor() {
    super('host allocation cap exceeded');
    this.name = 'HostLimitError';
  }
}

class Deadline extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(reason);
    this.name = 'Deadline';
    this.reason = reason;
  }
}

function fail(
  actionId: string,
  failure: ExecutionFailure,
  cause?: unknown,
): GateError {
  return new GateError('action_execution_failed', `${actionId}: ${failure.failure_class} (${failure.reason})`, {
    extra: failure as unknown as Record<string, unknown>,
    cause,
  });
}

/** The `ExecutionFailure` on a sandbox failure, or undefined for any other error. */
export function executionFailure(err: unknown): ExecutionFailure | undefined {
  if (!(err instanceof GateError) || err.code !== 'action_execution_failed' || !err.extra) return undefined;
  const fc = err.extra.failure_class;
  return fc === 'fuel_exhausted' || fc === 'memory' || fc === 'timeout' || fc === 'provider_error'
    ? (err.extra as unknown as ExecutionFailure)
    : undefined;
}

export class Sandbox {
  readonly #entries = new Map<string, Entry>();
  readonly #cache: InstrumentCache;
  readonly #prewarm: boolean;
  readonly #schedule: (task: () => void) => void;
  readonly #now: () => number;
  #closed = false;

  constructor(options: SandboxOptions = {}) {
    this.#cache = options.cache ?? new InstrumentCache();
    this.#prewarm = options.prewarm ?? true;
    this.#schedule = options.schedule ?? ((task) => setTimeout(task, 0));
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Verifies the module against `manifest.provider_module_digest` (GateError `action_digest_mismatch`),
   * instruments it (cached by digest) and makes the action runnable. A module that breaks the
   * sandbox's rules is refused with `action_not_registered`.
   */
  async register(manifest: ActionManifest, module: Uint8Array | { path: string }): Promise<void> {
    if (this.#closed) throw new TypeError('sandbox is closed');
    const id = manifest.action_id;
    if (this.#entries.has(id)) throw new TypeError(`action ${id} is already registered in this sandbox`);
    const pinned =
      module instanceof Uint8Array
        ? PinnedModule.fromBytes(id, manifest.provider_module_digest, module)
        : PinnedModule.fromFile(id, manifest.provider_module_digest, module.path);
    const limits = manifest.resource_limits;
    const fuel = BigInt(limits.fuel);
    const maxPages = limits.memory_mb * (1048576 / PAGE_BYTES);
    let instrumented: InstrumentedModule;
    try {
      instrumented = this.#cache.getOrCreate(pinned, fuel, maxPages);
    } catch (err) {
      if (err instanceof ModuleRejectedError) {
        throw new GateError('action_not_registered', `${id}: module refused: ${err.message}`, { cause: err });
      }
      throw err;
    }
    const entry: Entry = {
      manifest,
      pinned,
      instrumented,
      fuel,
      hostByteCap: limits.memory_mb * 1048576,
      next: undefined,
      filling: false,
      memories: new MemoryPool(instrumented.memory),
    };
    this.#entries.set(id, entry);
    if (this.#prewarm) this.#schedulePrewarm(entry);
  }

  /** Registers every action of a registry from its pinned module file; the first failure aborts. */
  async registerAll(registry: Registry): Promise<void> {
    for (const action of registry.actions()) await this.register(action.manifest, { path: action.moduleFile });
  }

  /**
   * Re-verifies the registered module of `actionId` against its pinned digest (the file is
   * re-hashed when its identity changed). Throws action_not_registered / action_digest_mismatch.
   */
  verify(actionId: string): void {
    const entry = this.#entries.get(actionId);
    if (!entry) throw new GateError('action_not_registered', `${actionId}: not in the trust registry`);
    entry.pinned.verify();
  }

  has(actionId: string): boolean {
    return this.#entries.has(actionId);
  }

  /** @internal tests: the memory pool of a registered action. */
  memoryPool(actionId: string): MemoryPool | undefined {
    return this.#entries.get(actionId)?.memories;
  }

  /** The registered digest of an action, or undefined. */
  digestOf(actionId: string): string | undefined {
    return this.#entries.get(actionId)?.pinned.digest;
  }

  /** Drops every ready instance and refuses further work. */
  async close(): Promise<void> {
    this.#closed = true;
    const pending: Promise<void>[] = [];
    for (const e of this.#entries.values()) {
      if (e.next) pending.push(e.next.plugin.close());
      e.next = undefined;
    }
    await Promise.allSettled(pending);
  }

  /**
   * Runs one call of `actionId` with `input` (already schema-validated by the caller). Host I/O goes
   * through `options.io`. The output is NOT checked against response_schema here: the caller does
   * that (registry `assertResponse`).
   */
  async run(actionId: string, input: unknown, options: RunOptions): Promise<RunResult> {
    if (this.#closed) throw new GateError('action_not_registered', 'sandbox is closed');
    const entry = this.#entries.get(actionId);
    if (!entry) throw new GateError('action_not_registered', `${actionId}: not in the trust registry`);
    if (options.digest !== undefined && options.digest !== entry.pinned.digest) {
      throw new GateError('action_not_registered', `${actionId}: digest ${options.digest} is not the registered one`);
    }
    const m = entry.manifest;
    const limits = m.resource_limits;
    const inputJson = JSON.stringify(input);
    if (inputJson === undefined) throw new GateError('invalid_input', 'input is not JSON-serializable');
    if (Buffer.byteLength(inputJson, 'utf8') > m.max_request_bytes) {
      throw new GateError('payload_too_large', `${actionId}: input exceeds max_request_bytes`);
    }

    const started = this.#now();
    const deadlineAt = started + limits.timeout_ms;
    const controller = new AbortController();
    // Not unref'd: a call in flight keeps the process alive until it ends or its deadline fires.
    const timer = setTimeout(() => controller.abort(new Deadline('deadline')), limits.timeout_ms);
    const onCallerAbort = (): void => controller.abort(new Deadline('aborted'));
    if (options.signal) {
      if (options.signal.aborted) onCallerAbort();
      else options.signal.addEventListener('abort', onCallerAbort, { once: true });
    }
    const io: ProviderHttpResponse[] = [];
    let spent = 0n;
    let ioCalls = 0;
    const runtime = (cls: FailureClass | 'ok'): RuntimeReport => ({
      duration_ms: Math.max(0, Math.round((this.#now() - started) * 1000) / 1000),
      exit_code: EXIT_CODES[cls],
      fuel_consumed: Number(spent > entry.fuel ? entry.fuel : spent),
      io_calls: ioCalls,
    });
    const failWith = (failure_class: FailureClass, reason: string, more: Partial<ExecutionFailure> = {}, cause?: unknown): GateError =>
      fail(actionId, { failure_class, reason, runtime: runtime(failure_class), ...more }, cause);
    const checkDeadline = (): void => {
      if (controller.signal.aborted) {
        const r = controller.signal.reason instanceof Deadline ? controller.signal.reason.reason : 'aborted';
        throw failWith('timeout', r);
      }
      if (this.#now() >= deadlineAt) throw failWith('timeout', 'deadline');
    };

    try {
      for (;;) {
        checkDeadline();
        const live = await this.#acquire(entry);
        spent += live.startFuel;
        const remaining = entry.fuel - spent;
        if (remaining < 0n) {
          void live.plugin.close();
          throw failWith('fuel_exhausted', 'start_function');
        }
        live.fuel.value = remaining;
        const envelope = `{"input":${inputJson},"io":${JSON.stringify(io)}}`;
        let text: string;
        try {
          const out = await live.plugin.call(ENTRYPOINT, envelope);
          text = out === null ? '' : out.text();
        } catch (err) {
          throw this.#classifyTrap(live, err, failWith, () => (spent += remaining - (live.fuel.value as bigint)));
        } finally {
          void live.plugin.close();
        }
        // The instance returned normally and is done (a step never runs again): its memory goes
        // back, zeroed. After a trap it is not taken back.
        entry.memories.give(live.memory);
        spent += remaining - (live.fuel.value as bigint);
        checkDeadline();

        let answer;
        try {
          answer = parseStepAnswer(text);
        } catch (err) {
          if (err instanceof ProtocolViolation) throw failWith('provider_error', err.reason, {}, err);
          throw err;
        }
        if (answer.kind === 'output') {
          const json = JSON.stringify(answer.output);
          if (json === undefined || Buffer.byteLength(json, 'utf8') > m.max_response_bytes) {
            throw failWith('provider_error', 'response_too_large');
          }
          return { output: answer.output, runtime: runtime('ok') };
        }
        if (answer.kind === 'error') {
          throw failWith('provider_error', 'provider_declared_error', { provider_error: { code: answer.code, message: answer.message } });
        }
        if (ioCalls >= limits.max_io_calls) throw failWith('provider_error', 'max_io_calls_exceeded');
        ioCalls++;
        const response = await this.#performIo(answer.request, options.io, controller.signal, limits.max_host_response_bytes, failWith);
        io.push(response);
      }
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onCallerAbort);
    }
  }

  async #performIo(
    request: ProviderHttpRequest,
    io: RunIo,
    signal: AbortSignal,
    maxBodyBytes: number,
    failWith: (c: FailureClass, r: string, more?: Partial<ExecutionFailure>, cause?: unknown) => GateError,
  ): Promise<ProviderHttpResponse> {
    if (signal.aborted) throw failWith('timeout', signal.reason instanceof Deadline ? signal.reason.reason : 'aborted');
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason instanceof Deadline ? signal.reason : new Deadline('aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    const pending = Promise.resolve().then(() => io(request, { signal }));
    pending.catch(() => {});
    aborted.catch(() => {});
    let raw: unknown;
    try {
      raw = await Promise.race([pending, aborted]);
    } catch (err) {
      if (err instanceof Deadline) throw failWith('timeout', err.reason, { io_in_flight: true });
      if (err instanceof GateError) throw err;
      throw failWith('provider_error', 'io_failed', {}, err);
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
    const response = normalizeResponse(raw, maxBodyBytes);
    if (!response) throw new GateError('internal_error', 'io callback returned a malformed response');
    return response;
  }

  #classifyTrap(
    live: LiveInstance,
    err: unknown,
    failWith: (c: FailureClass, r: string, more?: Partial<ExecutionFailure>, cause?: unknown) => GateError,
    account: () => void,
  ): GateError {
    account();
    const fuelLeft = live.fuel.value as bigint;
    if (fuelLeft < 0n) return failWith('fuel_exhausted', 'fuel', {}, err);
    if (live.hostLimitHit() || (live.oom.value as number) !== 0 || err instanceof HostLimitError) {
      return failWith('memory', live.hostLimitHit() ? 'host_allocation_cap' : 'memory_grow_failed', {}, err);
    }
    return failWith('provider_error', 'trap', {}, err);
  }

  /**
   * An instance for one step: the prewarmed one when ready, else a fresh one. The pinned module
   * file is checked once per step: here for a prewarmed instance, in #instantiate for a fresh one.
   */
  async #acquire(entry: Entry): Promise<LiveInstance> {
    const ready = entry.next;
    if (ready) {
      entry.next = undefined;
      try {
        entry.pinned.verify();
      } catch (err) {
        void ready.plugin.close();
        throw err;
      }
      if (this.#prewarm) this.#schedulePrewarm(entry);
      return ready;
    }
    return this.#instantiate(entry);
  }

  async #instantiate(entry: Entry, verify = true): Promise<LiveInstance> {
    if (verify) entry.pinned.verify();
    let hostBytes = 0;
    let hostLimit = false;
    const cap = entry.hostByteCap;
    const refuse = (): never => {
      throw new HostLimitError();
    };
    let plugin: Plugin;
    let memory: WasmMemory;
    try {
      // Inside the try: a memory that cannot be allocated fails like any instantiation failure.
      memory = entry.memories.take();
      plugin = await createPlugin(
        { wasm: [{ module: entry.instrumented.module }] },
        {
          useWasi: false,
          runInWorker: false,
          logger: SILENT_LOGGER,
          config: {},
          allowedHosts: [],
          allowedPaths: {},
          functions: {
            [EXTISM_NAMESPACE]: {
              // Extism 1.0.3 has no host-side memory limit: every alloc is an ArrayBuffer of the
              // requested size. Count them per instance and refuse past memory_mb.
              alloc: (ctx: CallContext, n: bigint) => {
                const size = Number(n);
                if (!Number.isSafeInteger(size) || size < 0 || hostBytes + size > cap) {
                  hostLimit = true;
                  return refuse();
                }
                hostBytes += size;
                return ctx.alloc(size);
              },
              http_request: refuse,
              http_status_code: refuse,
            },
            [MEMORY_IMPORT.module]: { [MEMORY_IMPORT.name]: memoryImport(memory) },
          },
        },
      );
    } catch (err) {
      throw fail(entry.manifest.action_id, {
        failure_class: hostLimit ? 'memory' : 'provider_error',
        reason: 'instantiation_failed',
        runtime: { duration_ms: 0, exit_code: EXIT_CODES[hostLimit ? 'memory' : 'provider_error'], fuel_consumed: 0, io_calls: 0 },
      }, err);
    }
    const instance = await plugin.getInstance();
    const fuel = instance.exports[FUEL_GLOBAL];
    const oom = instance.exports[OOM_GLOBAL];
    if (!isWasmGlobal(fuel) || !isWasmGlobal(oom)) {
      await plugin.close();
      throw new GateError('internal_error', 'instrumented module lacks its fuel globals');
    }
    return {
      plugin,
      memory,
      fuel,
      oom,
      startFuel: entry.fuel - (fuel.value as bigint),
      hostLimitHit: () => hostLimit,
    };
  }

  #schedulePrewarm(entry: Entry): void {
    if (entry.filling || entry.next || this.#closed) return;
    entry.filling = true;
    // Off the request path: the gate runs this once no request is in flight (after the reply).
    this.#schedule(() => {
      if (this.#closed || !this.#entries.has(entry.manifest.action_id)) {
        entry.filling = false;
        return;
      }
      // No file check here: #acquire checks the file when it hands this instance out.
      this.#instantiate(entry, false).then(
        (live) => {
          entry.filling = false;
          if (this.#closed || entry.next) void live.plugin.close();
          else entry.next = live;
        },
        () => {
          // A failed prewarm (e.g. the file changed) is not reported here: the next call
          // instantiates inline and surfaces the error to its caller.
          entry.filling = false;
        },
      );
    });
  }
}
