// TurnBatch (src/stores/turn-batch.ts): the items of one event-loop turn run together, in arrival
// order; an item's failure is its own, a failure of the whole batch is every caller's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { TurnBatch, type Settled } from '../../src/stores/turn-batch.ts';

const ok = <O>(value: O): Settled<O> => ({ ok: true, value });

test('items added in one turn run as one batch, in arrival order; the next turn starts another', async () => {
  const runs: number[][] = [];
  const b = new TurnBatch<number, number>((items) => {
    runs.push([...items]);
    return items.map((i) => ok(i * 10));
  }, (e) => e);
  const first = await Promise.all([b.add(1), b.add(2), b.add(3)]);
  assert.deepEqual(first, [10, 20, 30]);
  await nextTurn();
  assert.deepEqual(await b.add(4), 40);
  assert.deepEqual(runs, [[1, 2, 3], [4]]);
});

test('one item\'s failure is its own: the other callers of the batch get their results', async () => {
  const b = new TurnBatch<number, number>((items) => items.map((i) => (i === 2 ? { ok: false, error: new Error('bad item') } : ok(i))), (e) => e);
  const r = await Promise.allSettled([b.add(1), b.add(2), b.add(3)]);
  assert.deepEqual(r.map((x) => (x.status === 'fulfilled' ? x.value : (x.reason as Error).message)), [1, 'bad item', 3]);
});

test('fail closed: a batch that throws rejects every caller with the refusal, and the next batch runs normally', async () => {
  let fail = true;
  const b = new TurnBatch<string, string>((items) => {
    if (fail) throw new Error('disk gone');
    return items.map((i) => ok(i.toUpperCase()));
  }, (e) => new Error(`refused: ${(e as Error).message}`));
  const r = await Promise.allSettled([b.add('a'), b.add('b')]);
  assert.deepEqual(r.map((x) => x.status === 'rejected' && (x.reason as Error).message), ['refused: disk gone', 'refused: disk gone']);
  fail = false;
  assert.equal(await b.add('c'), 'C');
});

test('no caller is left hanging: a short answer refuses the items it left out, a throwing refusal still settles everyone', async () => {
  const short = new TurnBatch<number, number>((items) => items.slice(1).map(ok), (e) => e);
  const r = await Promise.allSettled([short.add(1), short.add(2)]);
  assert.equal(r[0]!.status, 'fulfilled');
  assert.equal(r[1]!.status, 'rejected');
  const broken = new TurnBatch<number, number>(() => {
    throw new Error('boom');
  }, () => {
    throw new Error('refusal broke');
  });
  const s = await Promise.allSettled([broken.add(1), broken.add(2)]);
  assert.ok(s.every((x) => x.status === 'rejected'));
});

test('alone: an item with nothing pending runs at once (before add returns); otherwise batching is unchanged', async () => {
  const runs: number[][] = [];
  let alone = true;
  const b = new TurnBatch<number, number>((items) => {
    runs.push([...items]);
    return items.map((i) => ok(i * 10));
  }, (e) => e, () => alone);
  const p1 = b.add(1);
  assert.deepEqual(runs, [[1]], 'a lone item waited for the end of the turn');
  assert.equal(await p1, 10);
  alone = false;
  const more = Promise.all([b.add(2), b.add(3)]);
  assert.deepEqual(runs, [[1]]);
  assert.deepEqual(await more, [20, 30]);
  assert.deepEqual(runs, [[1], [2, 3]]);
  // Pending items are never overtaken: with a batch scheduled, a later item joins it even when alone.
  const p4 = b.add(4);
  alone = true;
  const p5 = b.add(5);
  assert.deepEqual(await Promise.all([p4, p5]), [40, 50]);
  assert.deepEqual(runs, [[1], [2, 3], [4, 5]]);
});
