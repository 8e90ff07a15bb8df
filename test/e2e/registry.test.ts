// Trust and limits over the real socket: a provider that loops forever is stopped by fuel, one
// that grows memory fails cleanly, the next call succeeds; a flipped byte in a module makes its
// action refuse (403) while running and after a restart; a broken reload keeps the old registry.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PortcullisClient, PortcullisError } from '../../src/client/index.ts';
import { startTestGate, operatorHeaders, type TestGate } from '../helpers/gate.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
let base: string;
let manifests: string;
let g: TestGate;
let agent: PortcullisClient;
const stateDir = () => join(base, 'state');

async function start() {
  g = await startTestGate({ dir: stateDir(), overrides: { manifests_dir: manifests } });
  agent = new PortcullisClient({ socketPath: g.config.client_socket });
}
async function stop() {
  agent.close();
  await g.stop({ keepDir: true });
}
const admin = (method: string, path: string, body?: unknown) =>
  g.admin.send(method, path, operatorHeaders(g.operator, method, path.split('?')[0]!), body === undefined ? undefined : JSON.stringify(body));

/** The receipt of the newest execute of `action` (a 5xx answer carries no details: the ledger does). */
async function lastReceipt(action: string): Promise<string> {
  const ev = await admin('GET', `/v1/audit/events?action_id=${action}&limit=1`);
  const id = (ev.body as any).events[0]?.detail?.receipt_id;
  assert.match(String(id), /^rcpt_/);
  return id;
}

before(async () => {
  base = mkdtempSync(join(tmpdir(), 'portcullis-trust-'));
  mkdirSync(stateDir(), { mode: 0o700 });
  cpSync(join(ROOT, 'providers'), join(base, 'providers'), { recursive: true });
  cpSync(join(ROOT, 'manifests'), join(base, 'manifests'), { recursive: true });
  manifests = join(base, 'manifests');
  const fixture = join(ROOT, 'test', 'fixtures', 'providers', 'misbehave', 'misbehave.wasm');
  mkdirSync(join(base, 'providers', 'misbehave'));
  cpSync(fixture, join(base, 'providers', 'misbehave', 'misbehave.wasm'));
  const echo = JSON.parse(readFileSync(join(manifests, 'echo.json'), 'utf8'));
  writeFileSync(join(manifests, 'misbehave.json'), JSON.stringify({
    ...echo,
    action_id: 'misbehave',
    description: 'test provider that misbehaves on request',
    provider: { source: 'providers/misbehave', module: 'providers/misbehave/misbehave.wasm' },
    provider_module_digest: `sha256:${createHash('sha256').update(readFileSync(fixture)).digest('hex')}`,
    request_schema: { type: 'object', additionalProperties: false, required: ['mode'], properties: { mode: { type: 'string', maxLength: 32 } } },
    response_schema: undefined,
    resource_limits: { ...echo.resource_limits, fuel: 5_000_000, memory_mb: 16, timeout_ms: 20_000 },
  }, null, 2));
  await start();
  assert.equal((await admin('POST', '/v1/admin/policy/grant', { principal: 'agent', actions: ['misbehave', 'echo'] })).status, 200);
});

after(async () => {
  await stop().catch(() => {});
  rmSync(base, { recursive: true, force: true });
});

test('a provider that loops forever is stopped by fuel (not the wall clock); the next call succeeds', async () => {
  const t0 = Date.now();
  const e = await agent.execute('misbehave', { mode: 'spin' }).catch((x) => x);
  const ms = Date.now() - t0;
  assert.ok(e instanceof PortcullisError);
  assert.equal(e.status, 502);
  assert.equal(e.code, 'action_execution_failed');
  assert.deepEqual(e.body, { error: 'action_execution_failed' }, '5xx bodies carry the code only');
  const receiptId = await lastReceipt('misbehave');
  const receipt = await agent.receipt(receiptId) as any;
  assert.equal(receipt.normalized_result.kind, 'provider_failure');
  assert.match(receipt.normalized_result.reason, /^fuel_exhausted/);
  assert.ok(ms < 20_000, `stopped after ${ms} ms, well before timeout_ms`);
  const ok = await agent.execute<any>('misbehave', { mode: 'ok' });
  assert.deepEqual(ok.output, { ok: true });
});

test('a provider that grows memory past its cap fails cleanly; the next call succeeds', async () => {
  const e = await agent.execute('misbehave', { mode: 'grow' }).catch((x: unknown) => x) as PortcullisError;
  assert.equal(e.status, 502);
  const receipt = await agent.receipt(await lastReceipt('misbehave')) as any;
  assert.match(receipt.normalized_result.reason, /^memory/);
  assert.deepEqual((await agent.execute<any>('misbehave', { mode: 'ok' })).output, { ok: true });
});

test('a flipped byte in a module under the running gate -> 403 action_digest_mismatch; restoring it heals', async () => {
  const file = join(base, 'providers', 'echo', 'echo.wasm');
  const original = readFileSync(file);
  assert.equal((await agent.execute<any>('echo', { message: 'x' })).action_id, 'echo');
  const flipped = Buffer.from(original);
  flipped[flipped.length - 10]! ^= 0x01;
  writeFileSync(file, flipped);
  await assert.rejects(agent.execute('echo', { message: 'x' }), (x: any) => x.status === 403 && x.code === 'action_digest_mismatch');
  writeFileSync(file, original);
  assert.equal((await agent.execute<any>('echo', { message: 'back' })).action_id, 'echo');
});

test('a flipped byte at start-up: the gate starts, that action is refused (403), others run', async () => {
  const file = join(base, 'providers', 'echo', 'echo.wasm');
  const original = readFileSync(file);
  const flipped = Buffer.from(original);
  flipped[100]! ^= 0x80;
  writeFileSync(file, flipped);
  await stop();
  await start();
  try {
    await assert.rejects(agent.execute('echo', { message: 'x' }), (x: any) => x.status === 403 && x.code === 'action_digest_mismatch');
    assert.deepEqual((await agent.execute<any>('misbehave', { mode: 'ok' })).output, { ok: true });
  } finally {
    writeFileSync(file, original);
  }
  // Fixed on disk + reload -> served again.
  const r = await admin('POST', '/v1/admin/reload');
  assert.equal(r.status, 200, r.text);
  assert.equal((await agent.execute<any>('echo', { message: 'x' })).action_id, 'echo');
});

test('reload with a broken manifest -> 500 reload_failed with the reason; the old registry keeps serving', async () => {
  const file = join(manifests, 'echo.json');
  const good = readFileSync(file, 'utf8');
  const before = (await g.client.send('GET', '/v1/actions', {})).body as any[];
  writeFileSync(file, good.replace('"risk_level": "low"', '"risk_level": "catastrophic"'));
  try {
    const r = await admin('POST', '/v1/admin/reload');
    assert.equal(r.status, 500);
    assert.equal((r.body as any).error, 'reload_failed');
    assert.match((r.body as any).reason, /echo\.json/);
    assert.deepEqual((await g.client.send('GET', '/v1/actions', {})).body, before);
    assert.equal((await agent.execute<any>('echo', { message: 'still' })).action_id, 'echo');
  } finally {
    writeFileSync(file, good);
  }
  const ev = await admin('GET', '/v1/audit/events?limit=20');
  assert.ok((ev.body as any).events.some((e: any) => e.type === 'admin_reload' && e.reason_code === 'reload_failed' && e.operator === 'alice'));
});
