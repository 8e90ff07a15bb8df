// The gate's UUID v7 minting (src/ids.ts): RFC 9562 layout, strictly increasing within a process
// (also many ids in one millisecond), unique, and time-ordered with the clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { uuidv7 } from '../src/ids.ts';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('layout: version 7, RFC 9562 variant, the current millisecond in the first 48 bits', () => {
  const before = Date.now();
  const id = uuidv7();
  const after = Date.now();
  assert.match(id, V7);
  const ms = parseInt(id.replace(/-/g, '').slice(0, 12), 16);
  assert.ok(ms >= before && ms <= after + 1, `${ms} not in [${before}, ${after}]`);
});

test('100k ids in a tight loop: all unique, strictly increasing (sortable as strings)', () => {
  const ids = Array.from({ length: 100_000 }, () => uuidv7());
  assert.equal(new Set(ids).size, ids.length);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} !< ${ids[i]}`);
  for (const id of ids.slice(0, 1000)) assert.match(id, V7);
});

test('the random part varies (not a constant or a short cycle)', () => {
  const tails = new Set(Array.from({ length: 2000 }, () => uuidv7().slice(-12)));
  assert.equal(tails.size, 2000);
});
