// Makes sure the identity addon is built before a test loads it. Builds offline against the local
// Node headers (never downloads): in a private directory under the gitignored build/, then renames
// the result into place, so test files running in parallel never see a half-written binary.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { IDENTITY_ADDON_BUILD_COMMAND, IDENTITY_ADDON_PATH } from '../../../src/identity/native.ts';

const NATIVE_DIR = dirname(dirname(dirname(IDENTITY_ADDON_PATH)));
const SOURCES = ['binding.gyp', 'identity.c'];

function isFresh(): boolean {
  if (!existsSync(IDENTITY_ADDON_PATH)) return false;
  const built = statSync(IDENTITY_ADDON_PATH).mtimeMs;
  return SOURCES.every((file) => statSync(join(NATIVE_DIR, file)).mtimeMs <= built);
}

/** Builds src/identity/native if its .node is missing or older than its sources; throws with the build output on failure. */
export function ensureIdentityAddon(): void {
  if (isFresh()) return;
  const nodedir = process.env.npm_config_nodedir || '/usr';
  if (!existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
    throw new Error(
      `identity addon not built and no Node headers at ${nodedir}/include/node (set npm_config_nodedir); ` +
        `refusing to let node-gyp download them. Build it with: ${IDENTITY_ADDON_BUILD_COMMAND}`,
    );
  }
  const nodeGyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
  const buildRoot = join(NATIVE_DIR, 'build');
  mkdirSync(buildRoot, { recursive: true });
  const work = mkdtempSync(join(buildRoot, '.test-build-'));
  try {
    for (const file of SOURCES) copyFileSync(join(NATIVE_DIR, file), join(work, file));
    const result = spawnSync(process.execPath, [nodeGyp, 'rebuild', '--directory', work, `--nodedir=${nodedir}`], {
      env: { ...process.env, npm_config_nodedir: nodedir },
      encoding: 'utf8',
      timeout: 120_000,
    });
    if (result.status !== 0) {
      throw new Error(
        `could not build the identity addon (node-gyp exit ${String(result.status)}):\n${result.stdout}\n${result.stderr}\n` +
          `Build it with: ${IDENTITY_ADDON_BUILD_COMMAND}`,
      );
    }
    mkdirSync(dirname(IDENTITY_ADDON_PATH), { recursive: true });
    renameSync(join(work, 'build', 'Release', 'portcullis_identity.node'), IDENTITY_ADDON_PATH);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
