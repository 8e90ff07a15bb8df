// Drift check: the address table in docs/egress.md agrees with the classifier, block by block
// (the first and last address of each block carry the documented category).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { classifyAddress, formatIPv4, formatIPv6, parseCidr } from '../../src/egress/address.ts';

const doc = readFileSync(new URL('../../docs/egress.md', import.meta.url), 'utf8');
const rows = [...doc.matchAll(/^\| ([0-9a-f:.]+\/\d+) \| ([a-z_0-9]+) \|$/gm)].map((m) => [m[1] as string, m[2] as string] as const);

test('docs/egress.md lists the address table', () => {
  assert.ok(rows.length >= 35, `found ${rows.length} rows`);
});

const parsed = rows.map(([b, c]) => ({ cidr: parseCidr(b), category: c }));

function narrowerRowCovers(family: 4 | 6, prefix: number, value: bigint): boolean {
  const bits = family === 4 ? 32 : 128;
  return parsed.some(
    (r) => r.cidr.family === family && r.cidr.prefix > prefix && (value >> BigInt(bits - r.cidr.prefix)) === r.cidr.base >> BigInt(bits - r.cidr.prefix),
  );
}

for (const { cidr, category } of parsed) {
  test(`docs address table: ${cidr.text} is ${category}`, () => {
    const bits = cidr.family === 4 ? 32 : 128;
    const last = cidr.base | ((1n << BigInt(bits - cidr.prefix)) - 1n);
    const fmt = cidr.family === 4 ? formatIPv4 : formatIPv6;
    // The first and last address of the block, unless a narrower documented row owns them.
    let checked = 0;
    for (const v of [cidr.base, last]) {
      if (narrowerRowCovers(cidr.family, cidr.prefix, v)) continue;
      assert.equal(classifyAddress(fmt(v)).category, category, fmt(v));
      checked++;
    }
    assert.ok(checked > 0, 'block fully shadowed by narrower rows');
  });
}
