// TurnBatch (src/stores/turn-batch.ts): the items of one event-loop turn run together, in arrival
// order, and every caller shares the batch's outcome.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { TurnBatch } from '../../src/stores/turn-batch.ts';

test('items added in one turn run as one batch, in arrival order; the next turn starts another', async () => {
  const runs: number[][] = [];
  const b = new TurnBatch<number, number>((items) => {
    runs.push([...items]);
    return items.map((i) => i * 10);
  }, (e) => e);
  const first = await Promise.all([b.add(1), b.add(2), b.add(3)]);
  assert.deepEqual(first, [10, 20, 30]);
  await nextTurn();
  assert.deepEqual(await b.add(4), 40);
  assert.deepEqual(runs, [[1, 2, 3], [4]]);
});

test('fail closed: a batch that throws rejects every caller with the refusal, and the next batch runs normally', async () => {
  let fail = true;
  const b = new TurnBatch<string, string>((items) => {
    if (fail) throw new Error('disk gone');
    return items.map((i) => i.toUpperCase());
  }, (e) => new Error(`refused: ${(e as Error).message}`));
  const r = await Promise.allSettled([b.add('a'), b.add('b')]);
  assert.deepEqual(r.map((x) => x.status === 'rejected' && (x.reason as Error).message), ['refused: disk gone', 'refused: disk gone']);
  fail = false;
  assert.equal(await b.add('c'), 'C');
});

test('a batch that answers for fewer items than it got refuses them all (no caller is left hanging or given another\'s answer)', async () => {
  const b = new TurnBatch<number, number>((items) => items.slice(1), (e) => e);
  const r = await Promise.allSettled([b.add(1), b.add(2)]);
  assert.ok(r.every((x) => x.status === 'rejected'));
});
