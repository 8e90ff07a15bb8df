// Module hooks registered after tsx (hooks run last-registered first).
// 1. The project's own TypeScript is transformed here, by the same esbuild tsx uses, but without
//    tsx's `keepNames`: that option wraps every named function expression in a call that redefines
//    its `name` property (Object.defineProperty) each time the expression runs, about 25 times per
//    execute on the hot path (docs/benchmarks.md, seventh session). Names are kept anyway: nothing
//    is renamed, and JavaScript names `const f = () => …` itself. Inline source maps keep stack
//    traces on the TypeScript lines (tsx turns source-map support on).
// 2. Large, already-ESM JavaScript dependencies are loaded as they are, skipping tsx's transform.
//    binaryen's 14.8 MB index.js takes ~14 s through the transform and under 1 s without it.
import { readFile } from 'node:fs/promises';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';
import { transform } from 'esbuild';

const VERBATIM = ['/node_modules/binaryen/'];
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const OPTIONS = {
  loader: 'ts',
  format: 'esm',
  target: `node${process.versions.node}`,
  sourcemap: 'inline',
  keepNames: false,
  // The tsconfig.json settings that change emitted code (tsx reads the same file).
  tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true, useDefineForClassFields: true } },
};

export async function load(url, context, nextLoad) {
  if (!url.startsWith('file://')) return nextLoad(url, context);
  const path = fileURLToPath(url);
  if (path.endsWith('.ts') && path.startsWith(ROOT) && !path.includes('/node_modules/')) {
    const source = await readFile(path, 'utf8');
    const out = await transform(source, { ...OPTIONS, sourcefile: path });
    return { format: 'module', source: out.code, shortCircuit: true };
  }
  if (VERBATIM.some((p) => url.includes(p)) && url.endsWith('.js')) {
    return { format: 'module', source: await readFile(path), shortCircuit: true };
  }
  return nextLoad(url, context);
}
