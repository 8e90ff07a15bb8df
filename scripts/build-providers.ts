// Builds every provider named by a manifest (and every test-only fixture provider) from its
// AssemblyScript source with one fixed set of asc flags, so the same source always yields the same
// bytes. Default: write the .wasm files and pin their sha256 digests in the manifests.
// `--check`: rebuild into a temporary directory and fail if any byte differs from what is committed.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file lives in `scripts/`). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** asc flags shared by every provider. Changing any of them changes every digest. */
export const ASC_FLAGS: readonly string[] = [
  '-O3',
  '--runtime',
  'incremental',
  '--use',
  'abort=providers/_lib/protocol/providerAbort',
];

export interface BuildTarget {
  /** Action id (providers) or fixture name (test fixtures). */
  name: string;
  /** Entry file, relative to the repository root. */
  entry: string;
  /** Where the committed module lives, relative to the repository root. */
  module: string;
  /** Manifest that pins this module's digest, relative to the root (absent for fixtures). */
  manifest?: string;
}

export interface BuildResult {
  target: BuildTarget;
  digest: string;
  bytes: number;
}

export interface CheckMismatch {
  target: BuildTarget;
  reason: string;
}

/** Path of the asc CLI, or undefined when AssemblyScript is not installed. */
export function findAsc(): string | undefined {
  try {
    const p = fileURLToPath(import.meta.resolve('assemblyscript/bin/asc.js'));
    return existsSync(p) ? p : undefined;
  } catch {
    return undefined;
  }
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

const SAFE_REL = /^[A-Za-z0-9_][A-Za-z0-9_./-]*$/;

function checkRelative(root: string, rel: string, what: string): string {
  if (!SAFE_REL.test(rel) || rel.split('/').includes('..')) throw new Error(`${what}: unsafe path ${JSON.stringify(rel)}`);
  const abs = resolve(root, rel);
  if (!abs.startsWith(root + sep)) throw new Error(`${what}: path escapes the repository: ${rel}`);
  return abs;
}

/** Every provider referenced by `manifests/*.json`, plus every fixture under `test/fixtures/providers/`. */
export function discoverTargets(root: string = REPO_ROOT): BuildTarget[] {
  const targets: BuildTarget[] = [];
  const manifestDir = join(root, 'manifests');
  for (const file of readdirSync(manifestDir).filter((f) => f.endsWith('.json')).sort()) {
    const rel = `manifests/${file}`;
    const doc = JSON.parse(readFileSync(join(root, rel), 'utf8')) as {
      action_id?: unknown;
      provider?: { source?: unknown; module?: unknown };
    };
    const source = doc.provider?.source;
    const module = doc.provider?.module;
    if (typeof doc.action_id !== 'string' || typeof source !== 'string' || typeof module !== 'string') {
      throw new Error(`${rel}: action_id, provider.source and provider.module are required to build`);
    }
    checkRelative(root, source, rel);
    checkRelative(root, module, rel);
    targets.push({ name: doc.action_id, entry: `${source}/assembly/index.ts`, module, manifest: rel });
  }
  const fixtureDir = join(root, 'test', 'fixtures', 'providers');
  if (existsSync(fixtureDir)) {
    for (const name of readdirSync(fixtureDir).sort()) {
      const entry = `test/fixtures/providers/${name}/assembly/index.ts`;
      if (!existsSync(join(root, entry))) continue;
      targets.push({ name, entry, module: `test/fixtures/providers/${name}/${name}.wasm` });
    }
  }
  return targets;
}

/** Compiles one target into `outFile` with the fixed flags (cwd = repository root, so paths are stable). */
export function compileTarget(root: string, target: BuildTarget, outFile: string, asc: string): Promise<void> {
  checkRelative(root, target.entry, target.name);
  return new Promise((resolvePromise, reject) => {
    const args = [asc, target.entry, '--outFile', outFile, ...ASC_FLAGS];
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0 && existsSync(outFile)) resolvePromise();
      else reject(new Error(`asc failed for ${target.name} (exit ${code}):\n${output}`));
    });
  });
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  });
  await Promise.all(workers);
  return results;
}

/** Builds every target into a fresh temporary directory and returns the outputs' digests. */
export async function buildInto(root: string, outDir: string, targets: readonly BuildTarget[]): Promise<Map<string, Uint8Array>> {
  const asc = findAsc();
  if (!asc) throw new Error('AssemblyScript (asc) is not installed: run npm ci');
  const built = new Map<string, Uint8Array>();
  await mapLimit(targets, Math.max(1, availableParallelism()), async (t) => {
    const out = join(outDir, `${t.name}-${targets.indexOf(t)}.wasm`);
    await compileTarget(root, t, out, asc);
    built.set(t.module, new Uint8Array(readFileSync(out)));
  });
  return built;
}

/** Rebuilds, writes every module, and pins each provider's digest in its manifest. */
export async function buildProviders(root: string = REPO_ROOT): Promise<BuildResult[]> {
  const targets = discoverTargets(root);
  const tmp = mkdtempSync(join(tmpdir(), 'portcullis-build-'));
  try {
    const built = await buildInto(root, tmp, targets);
    const results: BuildResult[] = [];
    for (const t of targets) {
      const bytes = built.get(t.module);
      if (!bytes) throw new Error(`no output for ${t.name}`);
      const abs = checkRelative(root, t.module, t.name);
      mkdirSync(dirname(abs), { recursive: true });
      writeFileSync(abs, bytes);
      const digest = sha256Digest(bytes);
      if (t.manifest) {
        const mpath = join(root, t.manifest);
        const text = readFileSync(mpath, 'utf8');
        const doc = JSON.parse(text) as Record<string, unknown>;
        if (doc.provider_module_digest !== digest) {
          doc.provider_module_digest = digest;
          writeFileSync(mpath, `${JSON.stringify(doc, null, 2)}\n`);
        }
      }
      results.push({ target: t, digest, bytes: bytes.length });
    }
    return results;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Rebuilds into a temporary directory; returns every target whose committed bytes or pin differ. */
export async function checkProviders(root: string = REPO_ROOT): Promise<{ results: BuildResult[]; mismatches: CheckMismatch[] }> {
  const targets = discoverTargets(root);
  const tmp = mkdtempSync(join(tmpdir(), 'portcullis-check-'));
  try {
    const built = await buildInto(root, tmp, targets);
    const results: BuildResult[] = [];
    const mismatches: CheckMismatch[] = [];
    for (const t of targets) {
      const bytes = built.get(t.module);
      if (!bytes) throw new Error(`no output for ${t.name}`);
      const digest = sha256Digest(bytes);
      results.push({ target: t, digest, bytes: bytes.length });
      const abs = checkRelative(root, t.module, t.name);
      if (!existsSync(abs)) {
        mismatches.push({ target: t, reason: `committed module ${t.module} is missing` });
        continue;
      }
      const committed = sha256Digest(readFileSync(abs));
      if (committed !== digest) mismatches.push({ target: t, reason: `${t.module}: rebuilt ${digest}, committed ${committed}` });
      if (t.manifest) {
        const pinned = (JSON.parse(readFileSync(join(root, t.manifest), 'utf8')) as { provider_module_digest?: unknown })
          .provider_module_digest;
        if (pinned !== digest) mismatches.push({ target: t, reason: `${t.manifest}: pins ${String(pinned)}, rebuilt ${digest}` });
      }
    }
    return { results, mismatches };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<number> {
  const check = argv.includes('--check');
  const unknown = argv.filter((a) => a !== '--check');
  if (unknown.length > 0) {
    console.error(`usage: build-providers [--check]   (unknown: ${unknown.join(' ')})`);
    return 2;
  }
  if (check) {
    const { results, mismatches } = await checkProviders();
    for (const r of results) console.log(`${r.digest}  ${r.target.module}`);
    if (mismatches.length > 0) {
      for (const m of mismatches) console.error(`MISMATCH ${m.target.name}: ${m.reason}`);
      return 1;
    }
    console.log(`ok: ${results.length} modules reproduce their committed bytes and pinned digests`);
    return 0;
  }
  const results = await buildProviders();
  for (const r of results) console.log(`${r.digest}  ${relative(REPO_ROOT, join(REPO_ROOT, r.target.module))}  (${r.bytes} bytes)`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
