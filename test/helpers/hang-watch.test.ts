// The test harness's hang report (test/helpers/hang-watch.mjs, loaded by scripts/test.sh): a test
// file whose process outlives the report delay says on stderr what keeps it alive; a file that
// finishes says nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './temp.ts';

const WATCH = fileURLToPath(new URL('./hang-watch.mjs', import.meta.url));

function runTests(dir: string, body: string, timeoutMs: number) {
  const file = join(dir, 'fixture.test.mjs');
  writeFileSync(file, `import { test } from 'node:test';\n${body}\n`);
  // A fresh runner: this process's NODE_TEST_CONTEXT would make the nested one act as a child.
  const env: NodeJS.ProcessEnv = { ...process.env, PORTCULLIS_TEST_HANG_REPORT_MS: '500' };
  delete env.NODE_TEST_CONTEXT;
  return spawnSync(process.execPath, ['--import', WATCH, '--test', `--test-timeout=${timeoutMs}`, file], { env, encoding: 'utf8', timeout: 60_000 });
}

test('hang-watch: a test file still running after the delay reports what keeps it alive, before the runner kills it', (t) => {
  const r = runTests(tempDir(t), "test('hangs', async () => { setInterval(() => {}, 1000); await new Promise(() => {}); });", 2500);
  assert.match(r.stdout, /^# hang-watch: .*fixture\.test\.mjs still running \d+ s after start; pending: .*Timeout x1/m, r.stdout);
  assert.match(r.stdout, /test timed out after 2500ms/);
});

test('hang-watch: a test file that finishes in time reports nothing and is not held open', (t) => {
  const started = Date.now();
  const r = runTests(tempDir(t), "test('quick', () => {});", 20_000);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /hang-watch/);
  assert.ok(Date.now() - started < 15_000);
});

test('hang-watch: npm test loads it into every test process (scripts/test.sh)', () => {
  const script = readFileSync(fileURLToPath(new URL('../../scripts/test.sh', import.meta.url)), 'utf8');
  assert.match(script, /^exec node .*--import \.\/test\/helpers\/hang-watch\.mjs .*--test /m);
});
