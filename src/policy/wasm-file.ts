// Where the committed, compiled policy lives, and reading it.
import { readFile } from 'node:fs/promises';

/** policy/policy.wasm in this package (built by scripts/build-policy.sh). */
export const DEFAULT_POLICY_WASM_URL = new URL('../../policy/policy.wasm', import.meta.url);

/** Reads the compiled policy (default: the committed policy/policy.wasm). */
export async function readPolicyWasm(path: string | URL = DEFAULT_POLICY_WASM_URL): Promise<Uint8Array> {
  return new Uint8Array(await readFile(path));
}
