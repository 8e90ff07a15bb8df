// Shared test helpers: manifests built in memory, the misbehaving fixture, and tiny modules written
// in WebAssembly text (assembled with binaryen) for the module-rule tests.
import binaryen from 'binaryen';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ProviderHttpRequest, ProviderHttpResponse } from '../../src/contracts.ts';
import type { ActionManifest } from '../../src/registry/manifest.ts';
import { FEATURES } from '../../src/sandbox/instrument.ts';
import { sha256Digest } from '../../src/sandbox/pinned-module.ts';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const MISBEHAVE_PATH = fileURLToPath(new URL('../fixtures/providers/misbehave/misbehave.wasm', import.meta.url));
export const MISBEHAVE = new Uint8Array(readFileSync(MISBEHAVE_PATH));

/** A low-risk manifest for `bytes`, with overridable limits. */
export function manifestFor(
  actionId: string,
  bytes: Uint8Array,
  limits: Partial<ActionManifest['resource_limits']> = {},
  extra: Partial<ActionManifest> = {},
): ActionManifest {
  return {
    action_id: actionId,
    version: '1.0.0',
    description: 'test action',
    tags: [],
    provider_module_digest: sha256Digest(bytes),
    provider: { source: `providers/${actionId}`, module: `providers/${actionId}/${actionId}.wasm` },
    request_schema: { type: 'object' },
    max_request_bytes: 65536,
    max_response_bytes: 1048576,
    resource_limits: { fuel: 5_000_000, memory_mb: 4, timeout_ms: 5000, max_io_calls: 2, max_host_response_bytes: 4096, ...limits },
    egress: { allowed_domains: ['api.example.com'], allowed_methods: ['POST'] },
    secrets: [],
    risk_level: 'low',
    verifier: { kind: 'none' },
    declared_side_effects: ['http_write'],
    required_scopes: [],
    ...extra,
  };
}

/** Assembles WebAssembly text into a binary module. */
export function wat(text: string): Uint8Array {
  const m = (binaryen.parseText as (t: string, f?: number) => binaryen.Module)(text, FEATURES | binaryen.Features.Atomics);
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

/** A fake io callback that records every request and answers from `respond`. */
export function recordingIo(respond: (req: ProviderHttpRequest, n: number) => ProviderHttpResponse | Promise<ProviderHttpResponse>) {
  const requests: ProviderHttpRequest[] = [];
  const io = async (req: ProviderHttpRequest): Promise<ProviderHttpResponse> => {
    requests.push(req);
    return respond(req, requests.length - 1);
  };
  return { io, requests };
}

export const noIo = async (): Promise<ProviderHttpResponse> => {
  throw new Error('no I/O expected');
};
