// Placeholder until the pipeline parts are wired (replaced in the next commit).
import type { CoreParts, Extension } from './bootstrap.ts';
export async function buildExtension(_core: CoreParts): Promise<Extension> {
  throw new Error('pipeline not wired yet');
}
