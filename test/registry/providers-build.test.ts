// The committed provider modules are exactly what their source builds to, and the manifests pin
// those bytes. Skipped only when AssemblyScript is missing outside CI.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkProviders, findAsc } from '../../scripts/build-providers.ts';

const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const asc = findAsc();
if (!asc && IN_CI) throw new Error('CI requires AssemblyScript (asc): run npm ci');

test('rebuilding every provider reproduces every committed module and pinned digest', { skip: asc ? false : 'asc not installed', timeout: 600_000 }, async () => {
  const { results, mismatches } = await checkProviders();
  assert.ok(results.some((r) => r.target.manifest), 'at least one manifest-pinned provider was built');
  assert.deepEqual(mismatches.map((m) => `${m.target.name}: ${m.reason}`), []);
});
