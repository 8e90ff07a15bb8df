// Pooled linear memories (src/sandbox/sandbox.ts, MemoryPool): each fresh instance still starts
// from an all-zero memory of the module's initial size that no other instance holds. These tests
// attack that: a provider that reads what an earlier call wrote, a memory that grew, a trap.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executionFailure, Sandbox } from '../../src/sandbox/index.ts';
import { manifestFor, MISBEHAVE, noIo, wat } from './helpers.ts';

const OUT = '{"output":{"seen":0}}';
const DIGIT = OUT.indexOf('0');

/**
 * A provider that reports whether its memory held anything at two addresses no data segment
 * covers (one mid-page, one in the page's last word), then writes a marker there: a memory handed
 * on without being cleared shows `seen: 1` to the next call. `extra` runs before the output.
 */
function snoop(extra = ''): Uint8Array {
  return wat(`(module
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
    (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
    (memory 1)
    (export "memory" (memory 0))
    (data (i32.const 0) ${JSON.stringify(OUT)})
    (func (export "step") (result i32)
      (local $p i64) (local $i i32)
      (if (i32.or (i32.load (i32.const 40000)) (i32.load (i32.const 65532)))
        (then (i32.store8 (i32.const ${DIGIT}) (i32.const 49))))
      (i32.store (i32.const 40000) (i32.const 0x5a5a5a5a))
      (i32.store (i32.const 65532) (i32.const 0x5a5a5a5a))
      ${extra}
      (local.set $p (call $alloc (i64.const ${OUT.length})))
      (block $done (loop $copy
        (br_if $done (i32.ge_u (local.get $i) (i32.const ${OUT.length})))
        (call $store_u8 (i64.add (local.get $p) (i64.extend_i32_u (local.get $i))) (i32.load8_u (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $copy)))
      (call $output_set (local.get $p) (i64.const ${OUT.length}))
      (i32.const 0)))`);
}

async function seen(sb: Sandbox, id: string): Promise<number> {
  const r = await sb.run(id, {}, { io: noIo });
  return (r.output as { seen: number }).seen;
}

for (const prewarm of [false, true]) {
  describe(`memory pool (prewarm=${prewarm})`, () => {
    test('attack: no call reads what an earlier call left in memory, sequential or concurrent', async () => {
      const bytes = snoop();
      const sb = new Sandbox({ prewarm });
      await sb.register(manifestFor('snoop', bytes), bytes);
      for (let i = 0; i < 20; i++) assert.equal(await seen(sb, 'snoop'), 0, `sequential call ${i}`);
      for (let round = 0; round < 3; round++) {
        const all = await Promise.all(Array.from({ length: 16 }, () => seen(sb, 'snoop')));
        assert.deepEqual(all, new Array(16).fill(0), `concurrent round ${round}`);
      }
      // Not vacuous: memories really were handed on (68 calls, far fewer memories created).
      const s = sb.memoryPool('snoop')!.stats;
      assert.ok(s.reused >= 40, `reused ${s.reused}`);
      assert.ok(s.created <= 20, `created ${s.created}`);
      await sb.close();
    });

    test('a memory that grew is never handed on', async () => {
      const bytes = snoop('(drop (memory.grow (i32.const 1)))');
      const sb = new Sandbox({ prewarm });
      await sb.register(manifestFor('grower', bytes), bytes);
      for (let i = 0; i < 5; i++) assert.equal(await seen(sb, 'grower'), 0);
      const s = sb.memoryPool('grower')!.stats;
      assert.equal(s.reused, 0);
      assert.equal(s.spare, 0);
      await sb.close();
    });

    test('the pool keeps at most 16 spare memories', async () => {
      const bytes = snoop();
      const sb = new Sandbox({ prewarm });
      await sb.register(manifestFor('snoop', bytes), bytes);
      await Promise.all(Array.from({ length: 40 }, () => seen(sb, 'snoop')));
      assert.ok(sb.memoryPool('snoop')!.stats.spare <= 16);
      await sb.close();
    });
  });
}

test('attack: the memory of a trapped instance is not handed on (zeroed or not)', async () => {
  // Without prewarm the counts are exact: one spare after a normal call; the trapped call takes it
  // and gives nothing back.
  const sb = new Sandbox({ prewarm: false });
  await sb.register(manifestFor('misbehave', MISBEHAVE), MISBEHAVE);
  const pool = sb.memoryPool('misbehave')!;
  await sb.run('misbehave', { mode: 'ok' }, { io: noIo });
  assert.deepEqual(pool.stats, { created: 1, reused: 0, spare: 1 });
  const err = await sb.run('misbehave', { mode: 'trap' }, { io: noIo }).then(() => assert.fail('trap must fail'), (e: unknown) => e);
  assert.equal(executionFailure(err)?.failure_class, 'provider_error');
  assert.deepEqual(pool.stats, { created: 1, reused: 1, spare: 0 });
  await sb.run('misbehave', { mode: 'ok' }, { io: noIo });
  assert.deepEqual(pool.stats, { created: 2, reused: 1, spare: 1 });
  await sb.close();
});

test('a memory that cannot be allocated fails the call as instantiation_failed, like any instantiation failure', async () => {
  const sb = new Sandbox({ prewarm: false });
  await sb.register(manifestFor('misbehave', MISBEHAVE), MISBEHAVE);
  const wasm = (globalThis as unknown as { WebAssembly: { Memory: unknown } }).WebAssembly;
  const real = wasm.Memory;
  wasm.Memory = function NoMemory() {
    throw new RangeError('WebAssembly.Memory(): could not allocate memory');
  };
  try {
    const err = await sb.run('misbehave', { mode: 'ok' }, { io: noIo }).then(() => assert.fail('must fail'), (e: unknown) => e);
    const f = executionFailure(err);
    assert.equal(f?.failure_class, 'provider_error');
    assert.equal(f?.reason, 'instantiation_failed');
  } finally {
    wasm.Memory = real;
  }
  await sb.close();
});
