// Turns a verified provider module into the module the sandbox runs: a fuel counter at every
// function entry, loop header and return (binaryen `log-execution`, its import replaced by an
// exported i64 `__fuel` that is decremented and traps below zero), an `__oom` flag set when
// `memory.grow` fails, and a memory maximum capped from the manifest. The capped memory is then
// turned into an import (`portcullis:sandbox.memory`, same limits): the sandbox gives each fresh
// instance a zeroed memory of its own from a pool, instead of V8 mapping (and the GC unmapping) a
// new one per call. The module's own imports must be a subset of Extism's kernel; anything else,
// a memory import included, is refused before any code runs.
import binaryen from 'binaryen';
import { createHash } from 'node:crypto';
import { capMemory, importMemory, WasmFormatError, type MemoryLimits } from './wasm-binary.ts';
import { compileModule, moduleExports, moduleImports, type WasmModule } from './wasm-api.ts';

/** The exported function the host calls once per step. */
export const ENTRYPOINT = 'step';
export const FUEL_GLOBAL = '__fuel';
export const OOM_GLOBAL = '__oom';
export const EXTISM_NAMESPACE = 'extism:host/env';
/** Where the instrumented module imports its linear memory from (module, name). */
export const MEMORY_IMPORT = { module: 'portcullis:sandbox', name: 'memory' } as const;
export const PAGE_BYTES = 65536;

/** Extism kernel functions a provider may import. No HTTP (the step protocol replaces it), no WASI. */
export const ALLOWED_IMPORTS: ReadonlySet<string> = new Set([
  'alloc',
  'free',
  'length',
  'length_unsafe',
  'load_u8',
  'load_u64',
  'store_u8',
  'store_u64',
  'input_offset',
  'input_length',
  'input_load_u8',
  'input_load_u64',
  'output_set',
  'error_set',
  'config_get',
  'var_get',
  'var_set',
  'log_info',
  'log_warn',
  'log_debug',
  'log_error',
]);

/** Explicit feature set (FINDINGS: Features.All yields modules Node 20 cannot compile). */
const F = binaryen.Features;
export const FEATURES =
  F.MutableGlobals | F.NontrappingFPToInt | F.SIMD128 | F.BulkMemory | F.BulkMemoryOpt | F.SignExt | F.ReferenceTypes | F.Multivalue;

/** Bumped whenever the instrumentation changes, so cached results are never reused across versions. */
export const INSTRUMENTATION_VERSION = 2;

/** Functions binaryen's passes import; each is replaced by an internal definition below. */
const PASS_IMPORTS = [
  'log_execution',
  'memory_grow_pre',
  'memory_grow_post',
  'load_ptr',
  'load_val_i32',
  'load_val_i64',
  'load_val_f32',
  'load_val_f64',
  'store_ptr',
  'store_val_i32',
  'store_val_i64',
  'store_val_f32',
  'store_val_f64',
];

export interface InstrumentOptions {
  /** Initial `__fuel` value; also what the start function may spend during instantiation. */
  fuel: bigint;
  /** Linear memory cap in 64 KiB pages. */
  maxPages: number;
}

export interface InstrumentedModule {
  /** sha256 of the instrumented bytes (diagnostics; the pinned digest is the original's). */
  instrumentedDigest: string;
  bytes: Uint8Array;
  module: WasmModule;
  /** The limits of the memory the module imports as MEMORY_IMPORT (maximum capped). */
  memory: MemoryLimits & { maximum: number };
  /** Kernel functions the module imports (all from `extism:host/env`). */
  imports: string[];
}

/** The module cannot be run under the sandbox's rules; the reason names what is wrong. */
export class ModuleRejectedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModuleRejectedError';
  }
}

function checkInterface(module: WasmModule): string[] {
  const imports = moduleImports(module);
  const names: string[] = [];
  for (const i of imports) {
    if (i.module !== EXTISM_NAMESPACE || i.kind !== 'function' || !ALLOWED_IMPORTS.has(i.name)) {
      throw new ModuleRejectedError(`import ${i.module}.${i.name} (${i.kind}) is not allowed`);
    }
    names.push(i.name);
  }
  const exports = moduleExports(module);
  if (!exports.some((e) => e.name === ENTRYPOINT && e.kind === 'function')) {
    throw new ModuleRejectedError(`module does not export the function ${JSON.stringify(ENTRYPOINT)}`);
  }
  for (const reserved of [FUEL_GLOBAL, OOM_GLOBAL]) {
    if (exports.some((e) => e.name === reserved)) throw new ModuleRejectedError(`export ${reserved} is reserved for the sandbox`);
  }
  return names;
}

/**
 * Instruments `original` (already digest-verified by the caller). Synchronous and CPU-bound
 * (~0.1–0.3 s for a 30 KB module): call it once per digest and cache the result.
 */
export function instrumentModule(original: Uint8Array, options: InstrumentOptions): InstrumentedModule {
  if (options.fuel <= 0n || options.fuel >= 2n ** 62n) throw new RangeError('fuel out of range');
  if (!Number.isInteger(options.maxPages) || options.maxPages < 1 || options.maxPages > 65536) throw new RangeError('maxPages out of range');
  let compiledOriginal: WasmModule;
  try {
    compiledOriginal = compileModule(original);
  } catch (err) {
    throw new ModuleRejectedError('module does not compile', { cause: err });
  }
  const imports = checkInterface(compiledOriginal);
  const originalExports = moduleExports(compiledOriginal).map((e) => `${e.kind}:${e.name}`);

  let m: binaryen.Module;
  try {
    // binaryen.js accepts a feature set as the second argument (its .d.ts omits it).
    m = (binaryen.readBinary as (data: Uint8Array, features: number) => binaryen.Module)(original, FEATURES);
  } catch (err) {
    throw new ModuleRejectedError('binaryen cannot read the module with the supported feature set', { cause: err });
  }
  let emitted: Uint8Array;
  try {
    m.setFeatures(FEATURES);
    if (!m.validate()) throw new ModuleRejectedError('module uses features outside the supported set');
    for (const name of PASS_IMPORTS) {
      if (m.getFunction(name) !== 0) throw new ModuleRejectedError(`function name ${name} collides with the instrumentation`);
    }
    for (const name of [FUEL_GLOBAL, OOM_GLOBAL]) {
      if (m.getGlobal(name) !== 0) throw new ModuleRejectedError(`global name ${name} collides with the instrumentation`);
    }
    binaryen.setPassArgument('instrument-memory', 'memory.grow');
    try {
      m.runPasses(['log-execution', 'instrument-memory']);
    } finally {
      binaryen.setPassArgument('instrument-memory', null);
    }
    for (const name of PASS_IMPORTS) {
      if (m.getFunction(name) !== 0) m.removeFunction(name);
    }
    const i32 = binaryen.i32;
    const i64 = binaryen.i64;
    m.addGlobal(FUEL_GLOBAL, i64, true, m.i64.const(options.fuel));
    m.addGlobal(OOM_GLOBAL, i32, true, m.i32.const(0));
    m.addGlobalExport(FUEL_GLOBAL, FUEL_GLOBAL);
    m.addGlobalExport(OOM_GLOBAL, OOM_GLOBAL);
    // One unit per function entry / loop iteration / return; trapping below zero leaves __fuel
    // negative, which is how the host tells fuel exhaustion from any other trap.
    m.addFunction(
      'log_execution',
      binaryen.createType([i32]),
      binaryen.none,
      [],
      m.block(null, [
        m.global.set(FUEL_GLOBAL, m.i64.sub(m.global.get(FUEL_GLOBAL, i64), m.i64.const(1n))),
        m.if(m.i64.lt_s(m.global.get(FUEL_GLOBAL, i64), m.i64.const(0n)), m.unreachable()),
      ]),
    );
    m.addFunction('memory_grow_pre', binaryen.createType([i32, i32]), i32, [], m.local.get(1, i32));
    m.addFunction(
      'memory_grow_post',
      binaryen.createType([i32, i32]),
      i32,
      [],
      m.block(
        null,
        [m.if(m.i32.eq(m.local.get(1, i32), m.i32.const(-1)), m.global.set(OOM_GLOBAL, m.i32.const(1))), m.local.get(1, i32)],
        i32,
      ),
    );
    if (!m.validate()) throw new ModuleRejectedError('instrumented module does not validate');
    emitted = m.emitBinary();
  } finally {
    m.dispose();
  }

  let capped: { bytes: Uint8Array; limits: MemoryLimits & { maximum: number } };
  try {
    capped = importMemory(capMemory(emitted, options.maxPages).bytes, MEMORY_IMPORT.module, MEMORY_IMPORT.name);
  } catch (err) {
    if (err instanceof WasmFormatError) throw new ModuleRejectedError(err.message, { cause: err });
    throw err;
  }
  let module: WasmModule;
  try {
    module = compileModule(capped.bytes);
  } catch (err) {
    throw new ModuleRejectedError('instrumented module does not compile', { cause: err });
  }
  // The instrumentation may add nothing to the module's interface but the two globals and the
  // memory import (imports compared as lists: a module may import one kernel function twice).
  const after = moduleImports(module).map((i) => `${i.kind}:${i.module}.${i.name}`).sort();
  const before = [...imports.map((n) => `function:${EXTISM_NAMESPACE}.${n}`), `memory:${MEMORY_IMPORT.module}.${MEMORY_IMPORT.name}`].sort();
  if (after.length !== before.length || after.some((i, k) => i !== before[k])) throw new ModuleRejectedError('instrumentation left an unexpected import');
  const exportsAfter = moduleExports(module).map((e) => `${e.kind}:${e.name}`);
  const expected = new Set([...originalExports, `global:${FUEL_GLOBAL}`, `global:${OOM_GLOBAL}`]);
  if (exportsAfter.length !== expected.size || exportsAfter.some((e) => !expected.has(e))) {
    throw new ModuleRejectedError('instrumentation changed the module exports');
  }
  return {
    instrumentedDigest: `sha256:${createHash('sha256').update(capped.bytes).digest('hex')}`,
    bytes: capped.bytes,
    module,
    memory: capped.limits,
    imports,
  };
}
