// The policy data store: validation at load, atomic persistence, every mutation reaching the
// engine, and failures (validation, audit, persistence, engine) leaving everything unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GateError, type GateErrorCode } from '../../src/errors.ts';
import { emptyPolicyData, loadPolicyEngine, type PolicyEngine } from '../../src/policy/engine.ts';
import {
  PolicyDataError, openPolicyDataStore, type ActionInfo, type PolicyChange, type PolicyDataStore, type PolicyDataStoreOptions,
} from '../../src/policy/data-store.ts';
import type { PolicyData } from '../../src/policy/types.ts';
import { REGISTRY, WASM, lookupAction, makeData, makeInput, tempDir } from './fixtures.ts';

const FILE = 'policy-data.json';
const fixedClock = { now: () => Date.parse('2026-03-01T12:00:00.000Z') };

async function open(dir: string, opts: Partial<PolicyDataStoreOptions> = {}): Promise<{ store: PolicyDataStore; engine: PolicyEngine }> {
  const engine = opts.engine ?? (await loadPolicyEngine(WASM));
  const store = await openPolicyDataStore({ stateDir: dir, engine, lookupAction, clock: fixedClock, versionPrefix: 'test', ...opts });
  return { store, engine };
}

const readDoc = (dir: string): PolicyData => JSON.parse(readFileSync(join(dir, FILE), 'utf8')) as PolicyData;
const isCode = (code: GateErrorCode) => (e: unknown) => e instanceof GateError && e.code === code;

test('first open writes an empty (deny-all) document 0600 and loads it into the engine', async (t) => {
  const dir = join(tempDir(t), 'state');
  const { store, engine } = await open(dir);
  assert.equal(statSync(join(dir, FILE)).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.deepEqual(readDoc(dir), emptyPolicyData('test'));
  assert.equal(store.policyVersion, 'test-0');
  assert.equal(engine.info().policy_version, 'test-0');
  assert.equal(engine.evaluate(makeInput()).verdict, 'deny');
});

test('grant persists, bumps the version and takes effect on the next call', async (t) => {
  const dir = tempDir(t);
  const { store, engine } = await open(dir);
  const r = await store.grant('agent-1', ['http_fetch', 'slack_post']);
  assert.deepEqual(r, { principal: 'agent-1', actions: ['http_fetch', 'slack_post'], sinks: ['http_read', 'http_write'] });
  assert.equal(store.policyVersion, 'test-1');
  assert.equal(readDoc(dir).revision, 1);
  assert.deepEqual(readDoc(dir).acl, { 'agent-1': { actions: ['http_fetch', 'slack_post'], sinks: ['http_read', 'http_write'] } });
  const ev = engine.evaluate(makeInput());
  assert.equal(ev.verdict, 'allow');
  assert.equal(ev.decision.policy_version, 'test-1');
});

test('a reopened store (restart) has the same data and the engine the same decisions', async (t) => {
  const dir = tempDir(t);
  const first = await open(dir);
  await first.store.grant('agent-1', ['http_fetch']);
  await first.store.addDomain('http_fetch', 'api.new.example', 'approval');
  const second = await open(dir);
  assert.deepEqual(second.store.snapshot(), first.store.snapshot());
  const ev = second.engine.evaluate(makeInput({ egress: { unresolved_domains: ['api.new.example'] } }));
  assert.equal(ev.verdict, 'allow');
});

const badFiles: Array<{ name: string; doc: unknown; key: RegExp }> = [
  { name: 'not JSON', doc: '{"acl": ', key: /^\/$/ },
  { name: 'unknown top-level key', doc: { ...makeData(), extra: 1 }, key: /^\/$/ },
  { name: 'acl entry with an extra key (hand-set sinks flag)', doc: makeData({ acl: { a: { actions: ['x'], sinks: [], admin: true } as never } }), key: /^\/acl\/a$/ },
  { name: 'allowlist value false', doc: makeData({ allowlist: { x: { a: false as never } } }), key: /^\/allowlist\/x\/a$/ },
  { name: 'empty allowlist map', doc: makeData({ allowlist: { x: {} } }), key: /^\/allowlist\/x$/ },
  { name: 'unknown mode', doc: makeData({ modes: { principals: { a: 'off' as never }, actions: {} } }), key: /^\/modes\/principals\/a$/ },
  { name: 'unknown risk override', doc: makeData({ risk_overrides: { a: 'none' as never } }), key: /^\/risk_overrides\/a$/ },
  { name: '__proto__ principal (prototype pollution)', doc: JSON.parse(JSON.stringify(makeData()).replace('"agent-2"', '"__proto__"')), key: /^\/acl/ },
  { name: 'invalid learned domain (punycode)', doc: makeData({ learned_domains: [{ domain: 'xn--zz.example.com', action_id: 'a', source: 'cli', added_at: '2026-01-01T00:00:00Z' }] }), key: /^\/learned_domains\/0\/domain$/ },
  { name: 'duplicate learned domain', doc: makeData({ learned_domains: [1, 2].map(() => ({ domain: 'a.example.com', action_id: 'a', source: 'cli' as const, added_at: '2026-01-01T00:00:00Z' })) }), key: /^\/learned_domains\/1$/ },
  { name: 'learned path with ..', doc: makeData({ learned_paths: [{ path: '/data/../etc', action_id: 'a', source: 'cli', added_at: '2026-01-01T00:00:00Z' }] }), key: /^\/learned_paths\/0\/path$/ },
  { name: 'bad added_at', doc: makeData({ learned_paths: [{ path: '/data', action_id: 'a', source: 'cli', added_at: 'yesterday' }] }), key: /^\/learned_paths\/0\/added_at$/ },
  { name: 'negative revision', doc: makeData({ revision: -1 }), key: /^\/revision$/ },
];

for (const c of badFiles) {
  test(`load refuses an invalid file: ${c.name} (names the key)`, async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, FILE), typeof c.doc === 'string' ? c.doc : JSON.stringify(c.doc));
    const engine = await loadPolicyEngine(WASM, makeData({ policy_version: 'before' }));
    await assert.rejects(open(dir, { engine }), (e: unknown) => e instanceof PolicyDataError && c.key.test(e.key));
    assert.equal(engine.info().policy_version, 'before', 'the engine was not touched');
  });
}

test('open removes temp files a crash left behind and ignores their content', async (t) => {
  const dir = tempDir(t);
  const first = await open(dir);
  await first.store.grant('agent-1', ['http_fetch']);
  const stale = join(dir, `.${FILE}.999.deadbeef.tmp`);
  writeFileSync(stale, '{"half-written":');
  const { store } = await open(dir);
  assert.equal(existsSync(stale), false);
  assert.equal(store.policyVersion, 'test-1');
});

test('a write replaces the file by rename (new inode) and leaves no temp file', async (t) => {
  const dir = tempDir(t);
  const { store } = await open(dir);
  const ino = statSync(join(dir, FILE)).ino;
  await store.grant('agent-1', ['http_fetch']);
  assert.notEqual(statSync(join(dir, FILE)).ino, ino);
  assert.deepEqual(readdirSync(dir), [FILE]);
});

test('persistence failure (file path became a directory) -> internal_error, nothing changes', async (t) => {
  const dir = tempDir(t);
  const { store, engine } = await open(dir);
  rmSync(join(dir, FILE));
  mkdirSync(join(dir, FILE));
  writeFileSync(join(dir, FILE, 'keep'), 'x');
  await assert.rejects(store.grant('agent-1', ['http_fetch']), isCode('internal_error'));
  assert.equal(store.policyVersion, 'test-0');
  assert.equal(engine.evaluate(makeInput()).verdict, 'deny');
  assert.deepEqual(readdirSync(dir), [FILE], 'no temp file left');
});

test('injected write failure -> internal_error; data, file and engine unchanged', async (t) => {
  const dir = tempDir(t);
  let fail = false;
  const { store, engine } = await open(dir, {
    writeFile: async (f, c) => {
      if (fail) throw new Error('EIO');
      writeFileSync(f, c);
    },
  });
  await store.grant('agent-2', ['github_read']);
  const before = readFileSync(join(dir, FILE), 'utf8');
  fail = true;
  await assert.rejects(store.grant('agent-1', ['http_fetch']), isCode('internal_error'));
  assert.equal(readFileSync(join(dir, FILE), 'utf8'), before);
  assert.equal(store.snapshot().acl['agent-1'], undefined);
  assert.equal(engine.evaluate(makeInput()).verdict, 'deny');
});

test('audit failure in beforeCommit aborts the change (no unaudited policy change)', async (t) => {
  const dir = tempDir(t);
  const { store, engine } = await open(dir);
  await assert.rejects(store.grant('agent-1', ['http_fetch'], { beforeCommit: async () => { throw new Error('ledger down'); } }), /ledger down/);
  assert.equal(store.policyVersion, 'test-0');
  assert.deepEqual(readDoc(dir), emptyPolicyData('test'));
  assert.equal(engine.evaluate(makeInput()).verdict, 'deny');
});

test('beforeCommit sees the change before it is visible to the engine', async (t) => {
  const dir = tempDir(t);
  const { store, engine } = await open(dir);
  const seen: PolicyChange[] = [];
  await store.grant('agent-1', ['http_fetch'], {
    beforeCommit: async (ch) => {
      seen.push(ch);
      assert.equal(engine.evaluate(makeInput()).verdict, 'deny', 'not active yet');
    },
  });
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.type, 'admin_policy_grant');
  assert.equal(seen[0]!.changed, true);
  assert.equal(seen[0]!.policy_version, 'test-1');
});

test('engine refusal (policy cannot load the data) -> nothing persisted', async (t) => {
  const dir = tempDir(t);
  const { store, engine } = await open(dir);
  const original = engine.stageData.bind(engine);
  engine.stageData = () => { throw new GateError('policy_engine_unavailable'); };
  t.after(() => { engine.stageData = original; });
  await assert.rejects(store.grant('agent-1', ['http_fetch']), isCode('policy_engine_unavailable'));
  assert.equal(readDoc(dir).revision, 0);
  assert.equal(store.policyVersion, 'test-0');
});

test('grant of unknown actions -> unknown_action listing them; nothing changes', async (t) => {
  const dir = tempDir(t);
  const { store } = await open(dir);
  await assert.rejects(store.grant('agent-1', ['http_fetch', 'nope', 'nada', 'nope']), (e: unknown) =>
    e instanceof GateError && e.code === 'unknown_action' && JSON.stringify(e.extra) === JSON.stringify({ unknown_actions: ['nope', 'nada'] }));
  assert.equal(store.policyVersion, 'test-0');
});

const badGrants: Array<{ name: string; principal: string; actions: string[]; code: GateErrorCode }> = [
  { name: 'empty principal', principal: '', actions: ['http_fetch'], code: 'invalid_input' },
  { name: 'principal with a slash', principal: 'a/b', actions: ['http_fetch'], code: 'invalid_input' },
  { name: '__proto__ principal (prototype pollution)', principal: '__proto__', actions: ['http_fetch'], code: 'invalid_input' },
  { name: 'no actions', principal: 'agent-1', actions: [], code: 'invalid_input' },
  { name: 'action id with a space', principal: 'agent-1', actions: ['http fetch'], code: 'invalid_input' },
];
for (const c of badGrants) {
  test(`grant rejects ${c.name} -> ${c.code}`, async (t) => {
    const { store } = await open(tempDir(t));
    await assert.rejects(store.grant(c.principal, c.actions), isCode(c.code));
    assert.equal(store.policyVersion, 'test-0');
    assert.equal(Object.getPrototypeOf(store.snapshot().acl), Object.prototype);
  });
}

test('grant merges, dedupes and keeps order; regranting changes nothing (no version bump)', async (t) => {
  const { store } = await open(tempDir(t));
  await store.grant('agent-1', ['http_fetch', 'http_fetch']);
  const r = await store.grant('agent-1', ['slack_post', 'http_fetch']);
  assert.deepEqual(r.actions, ['http_fetch', 'slack_post']);
  assert.equal(store.policyVersion, 'test-2');
  const changes: PolicyChange[] = [];
  await store.grant('agent-1', ['slack_post'], { beforeCommit: async (c) => { changes.push(c); } });
  assert.equal(store.policyVersion, 'test-2');
  assert.equal(changes[0]?.changed, false, 'a no-op is still reported to the audit hook');
});

test('revoke recomputes sinks; revoking everything removes the principal', async (t) => {
  const { store, engine } = await open(tempDir(t));
  await store.grant('agent-1', ['http_fetch', 'slack_post']);
  assert.deepEqual(await store.revoke('agent-1', ['slack_post']), { principal: 'agent-1', actions: ['http_fetch'], sinks: ['http_read'] });
  assert.deepEqual(await store.revoke('agent-1', ['http_fetch']), { principal: 'agent-1', actions: [], sinks: [] });
  assert.equal(Object.hasOwn(store.snapshot().acl, 'agent-1'), false);
  assert.equal(engine.evaluate(makeInput()).decision.deny_reason_code, 'not_in_acl');
  await assert.rejects(store.revoke('agent-1', ['http_fetch']), isCode('principal_not_found'));
});

test('describePrincipal: risk breakdown with overrides; unknown actions listed apart', async (t) => {
  const registry: Record<string, ActionInfo> = { ...REGISTRY };
  const { store } = await open(tempDir(t), { lookupAction: (id) => registry[id] });
  await store.grant('agent-1', ['http_fetch', 'slack_post', 'http_delete', 'db_drop', 'fs_read']);
  await store.setRiskOverride('fs_read', 'high');
  delete registry.slack_post;
  assert.deepEqual(store.describePrincipal('agent-1').risk_breakdown, {
    low: ['http_fetch'], medium: [], high: ['http_delete', 'fs_read'], critical: ['db_drop'], unknown: ['slack_post'],
  });
  assert.throws(() => store.describePrincipal('agent-9'), isCode('principal_not_found'));
});

test('resyncSinks follows changed manifests (a widened manifest does not widen the grant silently)', async (t) => {
  const registry: Record<string, ActionInfo> = { http_fetch: { declared_side_effects: ['http_read'], risk_level: 'low' } };
  const { store, engine } = await open(tempDir(t), { lookupAction: (id) => registry[id] });
  await store.grant('agent-1', ['http_fetch']);
  registry.http_fetch = { declared_side_effects: ['http_read', 'email_send'], risk_level: 'low' };
  const call = makeInput({ action: { declared_side_effects: ['http_read', 'email_send'] } });
  assert.equal(engine.evaluate(call).decision.deny_reason_code, 'sink_not_allowed');
  assert.deepEqual(await store.resyncSinks(), { updated: ['agent-1'] });
  assert.equal(engine.evaluate(call).verdict, 'allow');
});

test('allowlist add/remove; the action map is cleaned up; errors change nothing', async (t) => {
  const { store, engine } = await open(tempDir(t));
  await store.grant('agent-1', ['db_drop']);
  const critical = makeInput({ action: { id: 'db_drop', risk_level: 'critical', declared_side_effects: ['db_write'] } });
  assert.equal(engine.evaluate(critical).verdict, 'require_approval');
  assert.deepEqual(await store.allowlistAdd('db_drop', 'agent-1'), { added: true });
  assert.equal(engine.evaluate(critical).verdict, 'allow');
  assert.deepEqual(await store.allowlistAdd('db_drop', 'agent-1'), { added: false });
  await store.allowlistRemove('db_drop', 'agent-1');
  assert.deepEqual(store.snapshot().allowlist, {});
  assert.equal(engine.evaluate(critical).verdict, 'require_approval');
  await assert.rejects(store.allowlistRemove('db_drop', 'agent-1'), isCode('allowlist_entry_not_found'));
  await assert.rejects(store.allowlistAdd('nope', 'agent-1'), isCode('action_not_found'));
  await assert.rejects(store.allowlistAdd('db_drop', ''), isCode('invalid_input'));
  await assert.rejects(store.allowlistAdd('db_drop', 'x'.repeat(129)), isCode('invalid_input'));
  await assert.rejects(store.allowlistAdd('db_drop', 'a;b'), isCode('invalid_input'));
  await assert.rejects(store.allowlistAdd('db_drop', '*'), isCode('invalid_input'));
});

test('learned domains: add, duplicate, remove, clear', async (t) => {
  const { store } = await open(tempDir(t));
  assert.deepEqual(await store.addDomain('http_fetch', 'api.new.example', 'cli'), {
    domain: 'api.new.example', action_id: 'http_fetch', source: 'cli', added_at: '2026-03-01T12:00:00.000Z',
  });
  await store.addDomain('github_read', 'api.new.example', 'approval');
  await assert.rejects(store.addDomain('http_fetch', 'api.new.example', 'cli'), isCode('domain_already_exists'));
  await assert.rejects(store.addDomain('http_fetch', 'https://x.example', 'cli'), isCode('invalid_domain'));
  await assert.rejects(store.addDomain('nope', 'x.example.com', 'cli'), isCode('action_not_found'));
  await assert.rejects(store.removeDomain('http_fetch', 'other.example'), isCode('domain_not_found'));
  await store.removeDomain('http_fetch', 'api.new.example');
  assert.deepEqual(store.listDomains().map((d) => d.action_id), ['github_read']);
  assert.deepEqual(await store.clearDomains(), { removed: 1 });
  assert.deepEqual(store.listDomains(), []);
});

test('learned paths: add, duplicate, remove, clear', async (t) => {
  const { store, engine } = await open(tempDir(t));
  await store.grant('agent-1', ['http_fetch']);
  const call = makeInput({ egress: { unresolved_paths: ['/data/reports/a.csv'] } });
  assert.equal(engine.evaluate(call).verdict, 'require_approval');
  await store.addPath('http_fetch', '/data/reports', 'cli');
  assert.equal(engine.evaluate(call).verdict, 'allow');
  await assert.rejects(store.addPath('http_fetch', '/data/reports', 'cli'), isCode('path_already_exists'));
  await assert.rejects(store.addPath('http_fetch', '/data/../etc', 'cli'), isCode('invalid_path'));
  await assert.rejects(store.removePath('http_fetch', '/data/other'), isCode('path_not_found'));
  await store.removePath('http_fetch', '/data/reports');
  assert.equal(engine.evaluate(call).verdict, 'require_approval');
  await store.addPath('fs_read', '/srv', 'approval');
  assert.deepEqual(await store.clearPaths(), { removed: 1 });
});

test('modes and risk overrides reach the engine', async (t) => {
  const { store, engine } = await open(tempDir(t));
  const call = makeInput({ principal: 'agent-9' });
  assert.equal(engine.evaluate(call).verdict, 'deny');
  await store.setMode('principal', 'agent-9', 'warn');
  const ev = engine.evaluate(call);
  assert.equal(ev.verdict, 'allow');
  assert.ok(ev.warning);
  await store.setMode('action', 'http_fetch', 'enforce');
  assert.equal(engine.evaluate(call).verdict, 'deny');
  await store.setMode('action', 'http_fetch', null);
  await store.setMode('principal', 'agent-9', null);
  assert.deepEqual(store.snapshot().modes, { principals: {}, actions: {} });
  await store.grant('agent-1', ['http_fetch']);
  await store.setRiskOverride('http_fetch', 'critical');
  assert.deepEqual(engine.evaluate(makeInput()).decision.approval_reasons, ['risk_critical']);
  await assert.rejects(store.setMode('principal', 'agent-9', 'off' as never), isCode('invalid_input'));
});

test('concurrent mutations are serialized: every one lands exactly once', async (t) => {
  const dir = tempDir(t);
  const { store } = await open(dir);
  const principals = Array.from({ length: 20 }, (_, i) => `agent-${i}`);
  await Promise.all(principals.map((p) => store.grant(p, ['http_fetch'])));
  assert.equal(store.snapshot().revision, 20);
  assert.deepEqual(Object.keys(readDoc(dir).acl).sort(), [...principals].sort());
});

test('a rejected mutation does not block the queue', async (t) => {
  const { store } = await open(tempDir(t));
  const results = await Promise.allSettled([store.grant('agent-1', ['nope']), store.grant('agent-1', ['http_fetch'])]);
  assert.equal(results[0].status, 'rejected');
  assert.equal(results[1].status, 'fulfilled');
});

test('reload picks up an edited file; an invalid file -> reload_failed and the old data stays', async (t) => {
  const dir = tempDir(t);
  const { store, engine } = await open(dir);
  writeFileSync(join(dir, FILE), JSON.stringify(makeData({ policy_version: 'edited-5', revision: 5 })));
  assert.deepEqual(await store.reload(), { policy_version: 'edited-5', policy_hash: engine.info().policy_hash });
  assert.equal(engine.evaluate(makeInput()).verdict, 'allow');
  writeFileSync(join(dir, FILE), JSON.stringify({ ...makeData(), acl: 'everyone' }));
  await assert.rejects(store.reload(), isCode('reload_failed'));
  assert.equal(store.policyVersion, 'edited-5');
  assert.equal(engine.info().policy_version, 'edited-5');
  await store.grant('agent-3', ['fs_read']);
  assert.equal(store.policyVersion, 'test-6', 'revisions continue from the reloaded document');
});

test('reload with a corrupt wasm -> reload_failed, previous wasm and data stay', async (t) => {
  const { store, engine } = await open(tempDir(t));
  const before = engine.info();
  await assert.rejects(store.reload(new Uint8Array([1, 2, 3])), isCode('reload_failed'));
  assert.deepEqual(engine.info(), before);
});

test('reload with a new wasm swaps wasm and data together', async (t) => {
  const { store, engine } = await open(tempDir(t));
  await store.reload(WASM);
  assert.equal(engine.info().wasm_generation, 2);
});

test('a prepared reload cannot commit over a mutation made meanwhile', async (t) => {
  const { store } = await open(tempDir(t));
  const prepared = await store.prepareReload();
  await store.grant('agent-1', ['http_fetch']);
  assert.throws(() => prepared.commit(), isCode('reload_failed'));
  assert.equal(store.policyVersion, 'test-1');
});
