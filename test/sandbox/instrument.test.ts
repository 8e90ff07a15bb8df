import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GateError } from '../../src/errors.ts';
import { executionFailure, instrumentModule, ModuleRejectedError, readMemoryLimits, Sandbox } from '../../src/sandbox/index.ts';
import { capMemory, encodeU32, WasmFormatError } from '../../src/sandbox/wasm-binary.ts';
import { compileModule, moduleExports, moduleImports, type WasmModule } from '../../src/sandbox/wasm-api.ts';
import { manifestFor, MISBEHAVE, noIo, wat } from './helpers.ts';
import { EXTISM_NAMESPACE, MEMORY_IMPORT } from '../../src/sandbox/instrument.ts';

// The bits of the WebAssembly JS API these tests use (the project's lib has no DOM types).
const WebAssembly = (globalThis as unknown as {
  WebAssembly: {
    Instance: new (m: unknown, imports: object) => object;
    Memory: new (d: { initial: number; maximum: number }) => object;
    LinkError: new () => Error;
    Module: unknown;
  };
}).WebAssembly;

const STEP = '(func (export "step") (result i32) (i32.const 0))';

describe('module rules (refused before any code runs)', () => {
  const cases: { name: string; text: string }[] = [
    { name: 'attack: imports its memory', text: `(module (import "env" "memory" (memory 1)) ${STEP})` },
    { name: 'attack: shared memory', text: `(module (memory 1 2 shared) ${STEP})` },
    { name: 'attack: initial memory above the cap', text: `(module (memory 100) ${STEP})` },
    { name: 'attack: imports Extism http_request', text: `(module (import "extism:host/env" "http_request" (func (param i64 i64) (result i64))) (memory 1) ${STEP})` },
    { name: 'attack: imports WASI', text: `(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory 1) ${STEP})` },
    { name: 'attack: imports an unknown host function', text: `(module (import "env" "abort" (func (param i32 i32 i32 i32))) (memory 1) ${STEP})` },
    { name: 'attack: exports the reserved __fuel', text: `(module (memory 1) (global $g (mut i64) (i64.const 9)) (export "__fuel" (global $g)) ${STEP})` },
    { name: 'no step export', text: '(module (memory 1) (func (export "run") (result i32) (i32.const 0)))' },
    { name: 'no memory at all', text: `(module ${STEP})` },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const bytes = wat(c.text);
      assert.throws(() => instrumentModule(bytes, { fuel: 1000n, maxPages: 64 }), ModuleRejectedError);
      const sb = new Sandbox({ prewarm: false });
      await assert.rejects(sb.register(manifestFor('bad_module', bytes), bytes), (e: unknown) => e instanceof GateError && e.code === 'action_not_registered');
      assert.equal(sb.has('bad_module'), false);
    });
  }

  test('garbage bytes are refused', () => {
    assert.throws(() => instrumentModule(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 2, 3]), { fuel: 1000n, maxPages: 4 }), ModuleRejectedError);
  });
});

describe('memory cap', () => {
  const cases = [
    { name: 'no declared maximum -> cap', text: `(module (memory 1) ${STEP})`, cap: 64, want: { initial: 1, maximum: 64 } },
    { name: 'maximum above the cap -> cap', text: `(module (memory 2 1000) ${STEP})`, cap: 64, want: { initial: 2, maximum: 64 } },
    { name: 'maximum below the cap is kept', text: `(module (memory 1 8) ${STEP})`, cap: 64, want: { initial: 1, maximum: 8 } },
    { name: 'large LEB values re-encode', text: `(module (memory 300) ${STEP})`, cap: 4096, want: { initial: 300, maximum: 4096 } },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const out = instrumentModule(wat(c.text), { fuel: 1000n, maxPages: c.cap });
      assert.deepEqual(out.memory, c.want);
      // The capped memory is imported (MEMORY_IMPORT) with exactly these limits: a memory of that
      // shape links, one that could grow further does not, and the module defines none of its own.
      assert.equal(readMemoryLimits(out.bytes), undefined);
      const instantiate = (maximum: number) => new WebAssembly.Instance(out.module, {
        [MEMORY_IMPORT.module]: { [MEMORY_IMPORT.name]: new WebAssembly.Memory({ initial: c.want.initial, maximum }) },
        [EXTISM_NAMESPACE]: {},
      });
      assert.ok(instantiate(c.want.maximum));
      assert.throws(() => instantiate(c.want.maximum + 1), WebAssembly.LinkError);
    });
  }

  test('a module importing one kernel function twice is still accepted (imports compared as lists)', () => {
    const bytes = wat(`(module
      (import "extism:host/env" "alloc" (func $a (param i64) (result i64)))
      (import "extism:host/env" "alloc" (func $b (param i64) (result i64)))
      (memory 1) ${STEP})`);
    const out = instrumentModule(bytes, { fuel: 1000n, maxPages: 4 });
    assert.deepEqual(out.imports, ['alloc', 'alloc']);
  });

  test('capMemory refuses an initial size above the cap', () => {
    assert.throws(() => capMemory(wat(`(module (memory 10) ${STEP})`), 4), WasmFormatError);
  });

  test('LEB128 encoding', () => {
    for (const [v, enc] of [
      [0, [0]],
      [127, [127]],
      [128, [0x80, 1]],
      [65536, [0x80, 0x80, 4]],
      [0xffffffff, [0xff, 0xff, 0xff, 0xff, 0x0f]],
    ] as const) {
      assert.deepEqual(encodeU32(v), enc);
    }
  });
});

describe('fuel instrumentation', () => {
  test('instrumentation changes nothing but the fuel/oom globals, the memory maximum and the memory becoming an import', () => {
    const a = instrumentModule(MISBEHAVE, { fuel: 1000n, maxPages: 64 });
    const original = compileModule(MISBEHAVE);
    const after = compileModule(a.bytes);
    assert.deepEqual(moduleImports(after), [...moduleImports(original), { module: MEMORY_IMPORT.module, name: MEMORY_IMPORT.name, kind: 'memory' }]);
    assert.equal(readMemoryLimits(MISBEHAVE)?.initial, a.memory.initial);
    const names = (m: WasmModule) => moduleExports(m).map((e) => `${e.kind}:${e.name}`).sort();
    assert.deepEqual(names(after), [...names(original), 'global:__fuel', 'global:__oom'].sort());
    assert.equal(a.memory.maximum, 64);
  });

  const loops: { name: string; text: string }[] = [
    { name: 'attack: bare loop without calls', text: '(module (memory 1) (func (export "step") (result i32) (loop $l (br $l)) (i32.const 0)))' },
    {
      name: 'attack: unbounded recursion without loops',
      text: '(module (memory 1) (func $r (param i32) (result i32) (call $r (local.get 0))) (func (export "step") (result i32) (call $r (i32.const 0))))',
    },
  ];
  for (const c of loops) {
    test(`${c.name} is stopped by fuel or the stack, never hangs`, async () => {
      const bytes = wat(c.text);
      const sb = new Sandbox({ prewarm: false });
      await sb.register(manifestFor('loop', bytes, { fuel: 100_000 }), bytes);
      const err = await sb.run('loop', {}, { io: noIo }).then(
        () => assert.fail('should not succeed'),
        (e: unknown) => e,
      );
      const f = executionFailure(err);
      assert.ok(f);
      if (c.name.includes('recursion')) assert.ok(f.failure_class === 'fuel_exhausted' || f.failure_class === 'provider_error');
      else assert.equal(f.failure_class, 'fuel_exhausted');
    });
  }

  test('attack: a start function that loops forever cannot hang registration or the call', async () => {
    const bytes = wat('(module (memory 1) (func $s (loop $l (br $l))) (start $s) (func (export "step") (result i32) (i32.const 0)))');
    const sb = new Sandbox({ prewarm: false });
    await sb.register(manifestFor('start_loop', bytes, { fuel: 50_000 }), bytes);
    const err = await sb.run('start_loop', {}, { io: noIo }).then(
      () => assert.fail('should not succeed'),
      (e: unknown) => e,
    );
    assert.equal(executionFailure(err)?.failure_class, 'provider_error');
    assert.equal(executionFailure(err)?.reason, 'instantiation_failed');
  });

  test('fuel spent by the start function counts towards the call', async () => {
    const text = (n: number) =>
      `(module (memory 1) (global $i (mut i32) (i32.const 0))
        (func $s (loop $l (global.set $i (i32.add (global.get $i) (i32.const 1))) (br_if $l (i32.lt_u (global.get $i) (i32.const ${n})))))
        (start $s) (func (export "step") (result i32) (i32.const 0)))`;
    const sb = new Sandbox({ prewarm: false });
    const spent: number[] = [];
    for (const n of [10, 10010]) {
      const bytes = wat(text(n));
      const id = `start_${n}`;
      await sb.register(manifestFor(id, bytes, { fuel: 1_000_000 }), bytes);
      const err = await sb.run(id, {}, { io: noIo }).then(
        () => assert.fail('no output is a protocol error'),
        (e: unknown) => e,
      );
      const f = executionFailure(err);
      assert.equal(f?.reason, 'answer_not_json');
      spent.push(f?.runtime.fuel_consumed ?? -1);
    }
    assert.ok((spent[1] as number) - (spent[0] as number) >= 10000, `spent ${spent.join(', ')}`);
  });
});
