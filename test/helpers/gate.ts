// Starts a real gate in this process on Unix sockets in a temp dir (embedded or production
// stores), with an injectable extension, plus signing helpers for hand-made DPoP proofs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync, sign as cryptoSign, createHash, randomUUID, type KeyObject } from 'node:crypto';
import { resolveConfig, type GateConfig } from '../../src/config/load.ts';
import { createRuntime, type Extension, type CoreParts } from '../../src/runtime/bootstrap.ts';
import { runGate, type RunningGate } from '../../src/runtime/run.ts';
import { newOperatorCredential, operatorConfigEntry, type OperatorCredential } from '../../src/runtime/state-dir.ts';
import { unixTransport, type Transport } from '../../src/client/transport.ts';
import type { Clock } from '../../src/contracts.ts';

export interface TestGate {
  dir: string;
  config: GateConfig;
  gate: RunningGate;
  operator: OperatorCredential;
  client: Transport;
  admin: Transport;
  stop(opts?: { keepDir?: boolean }): Promise<void>;
}

export interface TestGateOptions {
  dir?: string;
  mode?: 'embedded' | 'production';
  redisUrl?: string;
  databaseUrl?: string;
  overrides?: Record<string, unknown>;
  extend?: (core: CoreParts) => Promise<Extension>;
  operator?: OperatorCredential;
  clock?: Clock;
}

export async function startTestGate(opts: TestGateOptions): Promise<TestGate> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'portcullis-gate-'));
  const operator = opts.operator ?? newOperatorCredential('alice');
  const doc: Record<string, unknown> = {
    mode: opts.mode ?? 'embedded',
    state_dir: dir,
    operators: [operatorConfigEntry(operator)],
    identity: { provider: 'none', principal: 'agent' },
    ...(opts.redisUrl ? { redis_url: opts.redisUrl } : {}),
    ...(opts.databaseUrl ? { database_url: opts.databaseUrl } : {}),
    ...(opts.mode === 'production' ? { unsafe_dev: true } : {}),
    ...opts.overrides,
  };
  const config = resolveConfig(doc, { configDir: dir });
  const extend = opts.extend ?? (await import('../../src/runtime/wire.ts')).buildExtension;
  const runtime = await createRuntime(config, { extend, clock: opts.clock });
  const gate = await runGate(runtime, { log: () => {} });
  const client = unixTransport(config.client_socket);
  const admin = unixTransport(config.admin_socket);
  return {
    dir, config, gate, operator, client, admin,
    async stop(o = {}) {
      client.close();
      admin.close();
      await gate.stop();
      if (!o.keepDir && !opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A P-256 key pair with the pieces tests need to build proofs by hand. */
export interface TestKey {
  privateKey: KeyObject;
  jwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  privateJwk: Record<string, string>;
}

export function newP256(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const j = publicKey.export({ format: 'jwk' }) as { x: string; y: string };
  return { privateKey, jwk: { kty: 'EC', crv: 'P-256', x: j.x, y: j.y }, privateJwk: privateKey.export({ format: 'jwk' }) as Record<string, string> };
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

export interface ProofSpec {
  key: TestKey;
  htm: string;
  htu: string;
  token: string;
  iat?: number;
  jti?: string;
  header?: Record<string, unknown>;
  payload?: Record<string, unknown>;
  omit?: string[];
  /** Sign with this key instead of `key` (embedded jwk stays `key`'s). */
  signWith?: KeyObject;
  /** Replace the signature part entirely. */
  signature?: string;
}

export function proof(s: ProofSpec): string {
  const header: Record<string, unknown> = { typ: 'dpop+jwt', alg: 'ES256', jwk: s.key.jwk, ...s.header };
  const payload: Record<string, unknown> = {
    htm: s.htm, htu: s.htu, iat: s.iat ?? Math.floor(Date.now() / 1000), jti: s.jti ?? randomUUID(),
    ath: createHash('sha256').update(s.token).digest('base64url'), ...s.payload,
  };
  for (const k of s.omit ?? []) { delete header[k]; delete payload[k]; }
  const input = `${b64(header)}.${b64(payload)}`;
  const sig = s.signature ?? cryptoSign('sha256', Buffer.from(input), { key: s.signWith ?? s.key.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return `${input}.${sig}`;
}

/** Requests a lease for `key` over the client socket. */
export async function getLease(t: Transport, key: TestKey, body: Record<string, unknown> = {}): Promise<{ lease_jwt: string; session_id: string; lease_jti: string; expires_at: string }> {
  const res = await t.send('POST', '/v1/leases', {}, JSON.stringify({ scopes: ['tools:call'], dpop_jwk: key.jwk, ...body }));
  if (res.status !== 200) throw new Error(`lease failed: ${res.status} ${res.text}`);
  return res.body as { lease_jwt: string; session_id: string; lease_jti: string; expires_at: string };
}

/** Operator headers for an admin call. */
export function operatorHeaders(op: OperatorCredential, method: string, path: string, base = 'http://localhost'): Record<string, string> {
  const key: TestKey = { privateKey: createPrivateKeyFromJwk(op.dpop_jwk), jwk: { kty: 'EC', crv: 'P-256', x: op.dpop_jwk.x, y: op.dpop_jwk.y }, privateJwk: op.dpop_jwk };
  return { authorization: `DPoP ${op.api_key}`, dpop: proof({ key, htm: method, htu: base + path, token: op.api_key }) };
}

import { createPrivateKey } from 'node:crypto';
function createPrivateKeyFromJwk(jwk: Record<string, string>): KeyObject {
  return createPrivateKey({ key: jwk, format: 'jwk' });
}
