// QuietQueue: background work (the sandbox's prewarm) never runs while a client request is in flight.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { QuietQueue } from '../../src/runtime/quiet.ts';
import { Sandbox } from '../../src/sandbox/sandbox.ts';
import { loadRegistry } from '../../src/registry/index.ts';

describe('QuietQueue', () => {
  it('runs a task in the next check phase when nothing is in flight, not synchronously', async () => {
    const q = new QuietQueue(() => false);
    const ran: string[] = [];
    q.run(() => ran.push('a'));
    assert.deepEqual(ran, []);
    await tick();
    assert.deepEqual(ran, ['a']);
  });

  it('holds tasks while a request is in flight and runs them once it has answered', async () => {
    let requests = 1;
    const q = new QuietQueue(() => requests > 0);
    const ran: string[] = [];
    q.run(() => ran.push('a'));
    q.run(() => ran.push('b'));
    await tick();
    await tick();
    assert.deepEqual(ran, [], 'nothing runs while busy');
    requests = 0;
    q.settled();
    await tick();
    assert.deepEqual(ran, ['a', 'b']);
  });

  it('a request that arrives before the scheduled run holds the tasks again', async () => {
    let requests = 0;
    const q = new QuietQueue(() => requests > 0);
    const ran: string[] = [];
    q.run(() => ran.push('a'));
    requests = 1; // arrives in the same turn, before the check phase
    await tick();
    assert.deepEqual(ran, []);
    requests = 0;
    q.settled();
    await tick();
    assert.deepEqual(ran, ['a']);
  });

  it('a throwing task does not stop the others', async () => {
    const q = new QuietQueue(() => false);
    const ran: string[] = [];
    q.run(() => { throw new Error('boom'); });
    q.run(() => ran.push('b'));
    await tick();
    assert.deepEqual(ran, ['b']);
  });
});

const noIo = async (): Promise<never> => { throw new Error('no I/O in this test'); };

describe('Sandbox prewarm goes through its schedule option', () => {
  it('instantiates ahead only when the scheduled task runs', async () => {
    const held: Array<() => void> = [];
    const sb = new Sandbox({ schedule: (t) => held.push(t) });
    try {
      const echo = loadRegistry('manifests').get('echo')!;
      await sb.register(echo.manifest, { path: echo.moduleFile });
      assert.equal(held.length, 1, 'registration asks for one prewarm');
      // Nothing ran it: the first call instantiates on its own and asks for no second prewarm.
      const r1 = await sb.run('echo', { message: 'a' }, { io: noIo });
      assert.deepEqual(r1.output, { message: 'a', length: 1 });
      assert.equal(held.length, 1, 'a prewarm is already pending: no second one');
      held.shift()!();
      // Let the instantiation settle, then the next call takes the prewarmed instance and asks again.
      for (let i = 0; i < 20 && (held.length as number) === 0; i++) await tick();
      const r2 = await sb.run('echo', { message: 'bb' }, { io: noIo });
      assert.deepEqual(r2.output, { message: 'bb', length: 2 });
      assert.equal(held.length, 1, 'taking the prewarmed instance schedules the next prewarm');
    } finally {
      await sb.close();
    }
  });
});
