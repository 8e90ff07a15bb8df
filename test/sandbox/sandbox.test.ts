import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GateError } from '../../src/errors.ts';
import { executionFailure, InstrumentCache, Sandbox, type ExecutionFailure } from '../../src/sandbox/index.ts';
import { manifestFor, MISBEHAVE, MISBEHAVE_PATH, noIo, recordingIo } from './helpers.ts';

const okResponse = { status: 200, headers: { 'content-type': 'text/plain' }, body: 'fine', truncated: false };

async function rejectsWith(p: Promise<unknown>, code: string): Promise<GateError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof GateError, `expected GateError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}

async function failure(p: Promise<unknown>): Promise<ExecutionFailure> {
  const err = await rejectsWith(p, 'action_execution_failed');
  assert.equal(err.status, 502);
  const f = executionFailure(err);
  assert.ok(f, 'failure_class present on the error');
  return f;
}

for (const prewarm of [true, false]) {
  describe(`sandbox limits (prewarm=${prewarm})`, () => {
    const sb = new Sandbox({ prewarm });
    const FUEL = 2_000_000;
    const TIMEOUT = 5000;
    before(async () => {
      await sb.register(manifestFor('misbehave', MISBEHAVE, { fuel: FUEL, memory_mb: 4, timeout_ms: TIMEOUT }), MISBEHAVE);
    });
    after(() => sb.close());

    test('a well-behaved call succeeds and reports runtime', async () => {
      const r = await sb.run('misbehave', { mode: 'ok' }, { io: noIo });
      assert.deepEqual(r.output, { ok: true });
      assert.equal(r.runtime.exit_code, 0);
      assert.equal(r.runtime.io_calls, 0);
      assert.ok(r.runtime.fuel_consumed > 0 && r.runtime.fuel_consumed < FUEL);
      assert.ok(r.runtime.duration_ms >= 0);
    });

    test('attack: infinite loop is stopped by fuel, long before the timeout', async () => {
      const t0 = performance.now();
      const f = await failure(sb.run('misbehave', { mode: 'spin' }, { io: noIo }));
      const took = performance.now() - t0;
      assert.equal(f.failure_class, 'fuel_exhausted');
      assert.equal(f.runtime.exit_code, 2);
      assert.equal(f.runtime.fuel_consumed, FUEL);
      assert.ok(took < TIMEOUT / 10, `took ${took} ms`);
    });

    test('fuel consumed grows with work and a budget that suffices succeeds', async () => {
      const small = await sb.run('misbehave', { mode: 'burn', loops: 1000 }, { io: noIo });
      const large = await sb.run('misbehave', { mode: 'burn', loops: 100000 }, { io: noIo });
      assert.ok(large.runtime.fuel_consumed - small.runtime.fuel_consumed >= 99000);
      const f = await failure(sb.run('misbehave', { mode: 'burn', loops: FUEL }, { io: noIo }));
      assert.equal(f.failure_class, 'fuel_exhausted');
    });

    test('attack: growing linear memory past memory_mb fails cleanly as memory', async () => {
      const f = await failure(sb.run('misbehave', { mode: 'grow' }, { io: noIo }));
      assert.equal(f.failure_class, 'memory');
      assert.equal(f.runtime.exit_code, 3);
    });

    test('attack: allocating host-side Extism memory past memory_mb fails as memory', async () => {
      const f = await failure(sb.run('misbehave', { mode: 'host_alloc' }, { io: noIo }));
      assert.equal(f.failure_class, 'memory');
      assert.equal(f.reason, 'host_allocation_cap');
    });

    test('the next call of the same action after traps succeeds (fresh instance)', async () => {
      for (const mode of ['spin', 'grow', 'host_alloc', 'trap']) {
        await failure(sb.run('misbehave', { mode }, { io: noIo }));
        const r = await sb.run('misbehave', { mode: 'ok' }, { io: noIo });
        assert.deepEqual(r.output, { ok: true }, `after ${mode}`);
      }
    });

    const providerErrors: { name: string; mode: string; reason: string }[] = [
      { name: 'attack: trap (unreachable)', mode: 'trap', reason: 'trap' },
      { name: 'attack: answer is not JSON', mode: 'not_json', reason: 'answer_not_json' },
      { name: 'attack: answer has two kinds at once', mode: 'bad_shape', reason: 'answer_shape' },
      { name: 'declared provider error', mode: 'no_such_mode', reason: 'provider_declared_error' },
    ];
    for (const c of providerErrors) {
      test(c.name, async () => {
        const f = await failure(sb.run('misbehave', { mode: c.mode }, { io: noIo }));
        assert.equal(f.failure_class, 'provider_error');
        assert.equal(f.reason, c.reason);
        assert.equal(f.runtime.exit_code, 1);
        if (c.reason === 'provider_declared_error') assert.deepEqual(f.provider_error, { code: 'unknown_mode', message: 'no_such_mode' });
      });
    }
  });
}

describe('step protocol and I/O', () => {
  const sb = new Sandbox();
  before(async () => {
    await sb.register(
      manifestFor('misbehave', MISBEHAVE, { max_io_calls: 2, max_host_response_bytes: 8, timeout_ms: 300 }, { max_response_bytes: 4096 }),
      MISBEHAVE,
    );
  });
  after(() => sb.close());

  test('each http answer is performed by the io callback and appended to the next step', async () => {
    const { io, requests } = recordingIo((_req, n) => ({ status: 200 + n, headers: {}, body: `b${n}`, truncated: false }));
    const r = await sb.run('misbehave', { mode: 'io', rounds: 2 }, { io });
    assert.deepEqual(r.output, { statuses: [200, 201], bodies: ['b0', 'b1'] });
    assert.equal(r.runtime.io_calls, 2);
    assert.deepEqual(
      requests.map((q) => [q.method, q.url, q.headers?.['X-Round'], q.body]),
      [
        ['POST', 'https://api.example.com/r/0', '0', '{"round":0}'],
        ['POST', 'https://api.example.com/r/1', '1', '{"round":1}'],
      ],
    );
  });

  test('attack: concurrent calls with interleaved I/O never see each other\'s data', async () => {
    const ioFor = (i: number) => {
      let n = 0;
      return async () => {
        await new Promise((r) => setTimeout(r, (i * 7 + n) % 5));
        return { status: 200, headers: {}, body: `c${i}r${n++}`, truncated: false };
      };
    };
    const runs = Array.from({ length: 12 }, (_, i) => sb.run('misbehave', { mode: 'io', rounds: 1 + (i % 2) }, { io: ioFor(i) }).then((r) => ({ i, r })));
    for (const { i, r } of await Promise.all(runs)) {
      const want = i % 2 === 0 ? [`c${i}r0`] : [`c${i}r0`, `c${i}r1`];
      assert.deepEqual((r.output as { bodies: string[] }).bodies, want, `call ${i}`);
      assert.equal(r.runtime.io_calls, want.length);
    }
  });

  test('attack: asking for more requests than max_io_calls fails after exactly max_io_calls', async () => {
    const { io, requests } = recordingIo(() => okResponse);
    const f = await failure(sb.run('misbehave', { mode: 'io', rounds: 3 }, { io }));
    assert.equal(f.failure_class, 'provider_error');
    assert.equal(f.reason, 'max_io_calls_exceeded');
    assert.equal(requests.length, 2);
    assert.equal(f.runtime.io_calls, 2);
  });

  test('response bodies are cut at max_host_response_bytes (UTF-8 boundary) and flagged', async () => {
    const { io } = recordingIo(() => ({ status: 200, headers: {}, body: 'abcdefgé€xyz', truncated: false }));
    const r = await sb.run('misbehave', { mode: 'io', rounds: 1 }, { io });
    assert.deepEqual(r.output, { statuses: [200], bodies: ['abcdefg'] });
  });

  test('attack: io never answers -> timeout at timeout_ms, flagged io_in_flight', async () => {
    let seen: AbortSignal | undefined;
    const io = (_req: unknown, ctx: { signal: AbortSignal }) => {
      seen = ctx.signal;
      return new Promise<never>(() => {});
    };
    const t0 = performance.now();
    const f = await failure(sb.run('misbehave', { mode: 'io', rounds: 1 }, { io }));
    const took = performance.now() - t0;
    assert.equal(f.failure_class, 'timeout');
    assert.equal(f.io_in_flight, true);
    assert.equal(f.runtime.exit_code, 4);
    assert.ok(took >= 290 && took < 2000, `took ${took} ms`);
    assert.equal(seen?.aborted, true, 'the io callback was told to abort');
  });

  test('caller abort stops the call as timeout (reason aborted)', async () => {
    const ac = new AbortController();
    const io = () => {
      ac.abort();
      return new Promise<never>(() => {});
    };
    const f = await failure(sb.run('misbehave', { mode: 'io', rounds: 1 }, { io, signal: ac.signal }));
    assert.equal(f.failure_class, 'timeout');
    assert.equal(f.reason, 'aborted');
  });

  test('a gate error from the egress guard passes through unchanged', async () => {
    const io = async () => {
      throw new GateError('egress_domain_denied');
    };
    await rejectsWith(sb.run('misbehave', { mode: 'io', rounds: 1 }, { io }), 'egress_domain_denied');
  });

  test('any other io failure is a provider_error (io_failed)', async () => {
    const io = async () => {
      throw new Error('ECONNRESET');
    };
    const f = await failure(sb.run('misbehave', { mode: 'io', rounds: 1 }, { io }));
    assert.equal(f.reason, 'io_failed');
  });

  test('a malformed response from the io callback is an internal error', async () => {
    const io = async () => ({ status: 'ok' }) as never;
    await rejectsWith(sb.run('misbehave', { mode: 'io', rounds: 1 }, { io }), 'internal_error');
  });

  test('attack: output larger than max_response_bytes is refused', async () => {
    const f = await failure(sb.run('misbehave', { mode: 'big_output', size: 8192 }, { io: noIo }));
    assert.equal(f.reason, 'response_too_large');
  });

  test('attack: input larger than max_request_bytes is refused before running', async () => {
    const small = new Sandbox({ prewarm: false });
    await small.register(manifestFor('misbehave', MISBEHAVE, {}, { max_request_bytes: 64 }), MISBEHAVE);
    await rejectsWith(small.run('misbehave', { mode: 'ok', pad: 'x'.repeat(100) }, { io: noIo }), 'payload_too_large');
    await small.close();
  });
});

describe('trust: digests', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-sandbox-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('attack: a flipped byte in the module is refused at registration', async () => {
    const path = join(dir, 'flipped.wasm');
    const bytes = new Uint8Array(MISBEHAVE);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] as number) ^ 0x01;
    writeFileSync(path, bytes);
    const sb = new Sandbox({ prewarm: false });
    await rejectsWith(sb.register(manifestFor('misbehave', MISBEHAVE), { path }), 'action_digest_mismatch');
    await rejectsWith(sb.register(manifestFor('misbehave', MISBEHAVE), bytes), 'action_digest_mismatch');
    assert.equal(sb.has('misbehave'), false);
  });

  test('attack: a missing module file is refused at registration', async () => {
    const sb = new Sandbox({ prewarm: false });
    await rejectsWith(sb.register(manifestFor('misbehave', MISBEHAVE), { path: join(dir, 'absent.wasm') }), 'action_digest_mismatch');
  });

  for (const how of ['in place', 'replaced by rename']) {
    test(`attack: module file changed under a running sandbox (${how}) -> action_digest_mismatch until restored`, async () => {
      const path = join(dir, `live-${how.replace(/ /g, '-')}.wasm`);
      copyFileSync(MISBEHAVE_PATH, path);
      const sb = new Sandbox();
      await sb.register(manifestFor('misbehave', MISBEHAVE), { path });
      assert.deepEqual((await sb.run('misbehave', { mode: 'ok' }, { io: noIo })).output, { ok: true });
      const tampered = new Uint8Array(readFileSync(path));
      tampered[100] = (tampered[100] as number) ^ 0xff;
      if (how === 'in place') writeFileSync(path, tampered);
      else {
        writeFileSync(`${path}.new`, tampered);
        renameSync(`${path}.new`, path);
      }
      await rejectsWith(sb.run('misbehave', { mode: 'ok' }, { io: noIo }), 'action_digest_mismatch');
      await rejectsWith(sb.run('misbehave', { mode: 'ok' }, { io: noIo }), 'action_digest_mismatch');
      assert.throws(() => sb.verify('misbehave'), (e: unknown) => e instanceof GateError && e.code === 'action_digest_mismatch');
      rmSync(path);
      await rejectsWith(sb.run('misbehave', { mode: 'ok' }, { io: noIo }), 'action_digest_mismatch');
      copyFileSync(MISBEHAVE_PATH, path);
      sb.verify('misbehave');
      assert.deepEqual((await sb.run('misbehave', { mode: 'ok' }, { io: noIo })).output, { ok: true });
      await sb.close();
    });
  }

  test('unknown action -> action_not_registered', async () => {
    const sb = new Sandbox({ prewarm: false });
    await rejectsWith(sb.run('nope', {}, { io: noIo }), 'action_not_registered');
    assert.throws(() => sb.verify('nope'), (e: unknown) => e instanceof GateError && e.code === 'action_not_registered');
  });

  test('a run pinned to another digest (stale plan) -> action_not_registered', async () => {
    const sb = new Sandbox({ prewarm: false });
    await sb.register(manifestFor('misbehave', MISBEHAVE), MISBEHAVE);
    await rejectsWith(sb.run('misbehave', { mode: 'ok' }, { io: noIo, digest: `sha256:${'0'.repeat(64)}` }), 'action_not_registered');
    const ok = await sb.run('misbehave', { mode: 'ok' }, { io: noIo, digest: sb.digestOf('misbehave') as string });
    assert.deepEqual(ok.output, { ok: true });
  });

  test('instrumentation is cached per digest and shared across sandboxes (reload)', async () => {
    const cache = new InstrumentCache();
    const a = new Sandbox({ cache, prewarm: false });
    const b = new Sandbox({ cache, prewarm: false });
    await a.register(manifestFor('misbehave', MISBEHAVE), MISBEHAVE);
    await b.register(manifestFor('misbehave', MISBEHAVE), MISBEHAVE);
    assert.equal(cache.size, 1);
    await b.register(manifestFor('other', MISBEHAVE, { fuel: 123456 }), MISBEHAVE);
    assert.equal(cache.size, 2);
  });
});
