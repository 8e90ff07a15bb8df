// The compiled policy.wasm is what the Rego says: a rebuild with the pinned OPA is byte-identical,
// `--check` notices a difference, and the Rego's own tests (`opa test policy/`) pass.
// Skipped with the reason when neither ~/go/bin/opa nor Go is available, except under CI=true.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { REPO_ROOT, opaSkipReason, runBuildScript, tempDir } from './fixtures.ts';

const skip = opaSkipReason();
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('policy.wasm: a rebuild from policy/*.rego is byte-for-byte the committed file', { skip }, () => {
  const committed = readFileSync(join(REPO_ROOT, 'policy/policy.wasm'));
  const r = runBuildScript(['--check']);
  assert.equal(r.status, 0, `build-policy.sh --check failed:\n${r.stderr}`);
  assert.match(r.stdout, new RegExp(`reproducible \\(sha256:${sha(committed)}\\)`));
});

test('policy.wasm: --check fails when the committed wasm differs from the Rego (tampered binary)', { skip }, (t) => {
  const root = tempDir(t, 'portcullis-policy-build-');
  mkdirSync(join(root, 'scripts'));
  cpSync(join(REPO_ROOT, 'scripts/build-policy.sh'), join(root, 'scripts/build-policy.sh'));
  cpSync(join(REPO_ROOT, 'policy'), join(root, 'policy'), { recursive: true });
  const wasm = readFileSync(join(root, 'policy/policy.wasm'));
  wasm[wasm.length - 1] = wasm[wasm.length - 1]! ^ 0x01;
  writeFileSync(join(root, 'policy/policy.wasm'), wasm);
  const r = runBuildScript(['--check'], root);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /differs from a rebuild/);
});

test('policy.wasm: test files are excluded from the build (a *_test.rego never changes the wasm)', { skip }, (t) => {
  const root = tempDir(t, 'portcullis-policy-build-');
  mkdirSync(join(root, 'scripts'));
  cpSync(join(REPO_ROOT, 'scripts/build-policy.sh'), join(root, 'scripts/build-policy.sh'));
  cpSync(join(REPO_ROOT, 'policy'), join(root, 'policy'), { recursive: true });
  writeFileSync(join(root, 'policy/extra_test.rego'), 'package portcullis.authz\n\ndefault decision := {"allow": true}\n');
  const r = runBuildScript(['--check'], root);
  assert.equal(r.status, 0, r.stderr);
});

test('rego: opa test policy/ passes with at least 40 cases', { skip }, () => {
  const r = runBuildScript(['--test']);
  assert.equal(r.status, 0, `opa test failed:\n${r.stdout}\n${r.stderr}`);
  const m = /^PASS: (\d+)\/(\d+)$/m.exec(r.stdout);
  assert.ok(m, `no PASS line in:\n${r.stdout.slice(-500)}`);
  assert.equal(m[1], m[2]);
  assert.ok(Number(m[2]) >= 40, `only ${m[2]} Rego tests`);
});
