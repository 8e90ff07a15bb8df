// Resilience end to end, with the gate as real processes on real sockets: budgets stay exact under
// a concurrent race across two gate processes sharing Redis + PostgreSQL (and on one embedded
// gate); two operators approving at once on two gates execute once; a SIGKILL between the
// execution intent and the receipt is surfaced (after restart: log, status, intents, metrics, CLI;
// in production also by the surviving instance) with the chain intact; Redis and PostgreSQL
// outages fail closed with 503, execute nothing and recover live.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { newOperatorCredential, type OperatorCredential } from '../../src/runtime/state-dir.ts';
import type { RawResponse } from '../../src/client/transport.ts';
import pg from 'pg';
import { openDatabase } from '../../src/ledger/db.ts';
import { LEDGER_MIGRATIONS } from '../../src/ledger/schema.ts';
import { approvalsSchema } from '../../src/approvals/index.ts';
import { registerEpochFloorMigration } from '../../src/runtime/epoch-floor.ts';
import { startRedis, startPostgres, serviceSkipReason, type RedisServer, type PostgresServer } from '../helpers/services.ts';
import { startUpstream, type Upstream } from './fixtures.ts';
import {
  Agent, eventually, makeSlimManifestsDir, prepareEmbeddedStateDir, runCli, socketsOf, spawnGate, startHangingUpstream,
  writeCredentialFile, writeServeConfig, START_TIMEOUT_MS, type GateProcess, type HangingUpstream,
} from './process-helpers.ts';

const HOOK = { timeout: START_TIMEOUT_MS * 2 };
const T = { timeout: 240_000 };

const code = (r: RawResponse) => (r.body as { error?: string } | undefined)?.error;
const tally = (rs: RawResponse[]) => {
  const out: Record<string, number> = {};
  for (const r of rs) {
    const k = `${r.status}${code(r) ? ` ${code(r)}` : ''}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
};

/** 50 concurrent executes of `echo` on one lease with max_calls 10, round-robin over `gates`. */
async function budgetRace(agent: Agent, gates: GateProcess[]): Promise<RawResponse[]> {
  return Promise.all(Array.from({ length: 50 }, (_, i) => agent.execute(gates[i % gates.length]!.client, 'echo', { message: `race-${i}` })));
}

async function sessionEvents(g: GateProcess, op: OperatorCredential, sessionId: string): Promise<Array<{ type: string; decision: string; reason_code: string | null }>> {
  const res = await g.adminCall(op, 'GET', `/v1/audit/events?session_id=${encodeURIComponent(sessionId)}&limit=1000`);
  assert.equal(res.status, 200, res.text);
  return (res.body as { events: Array<{ type: string; decision: string; reason_code: string | null }> }).events;
}

/** The unresolved intent left by a SIGKILL is reported by the start-up log, status, the intents route and the metric; the chain stays intact. */
async function assertUnresolvedIntentReported(g: GateProcess, op: OperatorCredential, sessionId: string, o = { startupLog: true }): Promise<string> {
  if (o.startupLog) assert.match(g.log(), /WARNING: \d+ execution intent\(s\) have no receipt/, `start-up log:\n${g.log()}`);
  const st = await g.adminCall(op, 'GET', '/v1/admin/status');
  assert.equal(st.status, 200, st.text);
  assert.ok((st.body as { unresolved_intents: number }).unresolved_intents >= 1, st.text);
  const list = await g.adminCall(op, 'GET', '/v1/admin/intents');
  assert.equal(list.status, 200, list.text);
  const body = list.body as { count: number; intents: Array<{ intent_id: string; action_id: string; session_id: string; principal: string }> };
  assert.ok(body.count >= 1);
  const mine = body.intents.filter((i) => i.session_id === sessionId);
  assert.equal(mine.length, 1, list.text);
  assert.equal(mine[0]!.action_id, 'webhook_notify');
  assert.equal(mine[0]!.principal, 'agent');
  assert.match(mine[0]!.intent_id, /^int_/);
  const m = await g.adminCall(op, 'GET', '/metrics');
  assert.equal(m.status, 200);
  const gauge = /^portcullis_unresolved_intents (\d+)/m.exec(m.text);
  assert.ok(gauge && Number(gauge[1]) >= 1, `metric missing or zero:\n${m.text.split('\n').filter((l) => l.includes('unresolved')).join('\n')}`);
  const v = await g.adminCall(op, 'GET', '/v1/audit/verify');
  assert.equal(v.status, 200, v.text);
  assert.equal((v.body as { intact: boolean }).intact, true, v.text);
  return mine[0]!.intent_id;
}

/** Starts a call that reaches the hanging upstream, SIGKILLs the gate while the egress call is in flight. */
async function killMidFlight(g: GateProcess, op: OperatorCredential, hang: HangingUpstream, tag: string): Promise<Agent> {
  const agent = new Agent();
  await agent.obtainLease(g.client);
  const before = hang.requests.length;
  const pending = agent.execute(g.client, 'webhook_notify', { url: `${hang.url}/${tag}`, event: tag }).then((r) => r, (e: unknown) => e);
  await hang.received(before + 1);
  // The provider's egress call is in flight: the intent is durable, the receipt cannot exist yet.
  const list = await g.adminCall(op, 'GET', '/v1/admin/intents');
  assert.ok((list.body as { intents: Array<{ session_id: string }> }).intents.some((i) => i.session_id === agent.lease!.session_id), list.text);
  await g.kill('SIGKILL');
  assert.equal((await g.exited).signal, 'SIGKILL');
  const answer = await pending;
  assert.ok(answer instanceof Error, `the killed gate must not have answered: ${JSON.stringify((answer as RawResponse)?.body)}`);
  return agent;
}

// Inner suites run their tests in order (concurrency would otherwise be inherited from the parent).
const SUITE = { timeout: 1_200_000, concurrency: 1 };

function productionSuite() {
  describe('production: two gate processes sharing one Redis and one PostgreSQL', { ...SUITE, skip: serviceSkipReason('redis') ?? serviceSkipReason('postgres') }, () => {
    let redis: RedisServer;
    let pgServer: PostgresServer;
    let up: Upstream;
    let hang: HangingUpstream;
    let manifests: string;
    let base: string;
    let A: GateProcess;
    let B: GateProcess;
    const alice = newOperatorCredential('alice');
    const bob = newOperatorCredential('bob');

    before(async () => {
      [redis, pgServer] = await Promise.all([startRedis(), startPostgres()]);
      up = await startUpstream();
      hang = await startHangingUpstream();
      manifests = makeSlimManifestsDir();
      base = mkdtempSync(join(tmpdir(), 'portcullis-resilience-'));
      chmodSync(base, 0o700);
      const common = { redisUrl: redis.url, databaseUrl: pgServer.url, keysDir: join(base, 'keys'), manifestsDir: manifests, operators: [alice, bob] };
      const cfgA = writeServeConfig({ dir: join(base, 'a'), ...common });
      const cfgB = writeServeConfig({ dir: join(base, 'b'), ...common });
      // Both start at once on an empty keys dir and an empty database: keys and migrations must not race.
      A = spawnGate('gate-a', ['serve', '--config', cfgA], socketsOf(join(base, 'a')));
      B = spawnGate('gate-b', ['serve', '--config', cfgB], socketsOf(join(base, 'b')));
      await Promise.all([A.waitReady(), B.waitReady()]);
      for (const g of [A, B]) {
        const r = await g.adminCall(alice, 'POST', '/v1/admin/policy/grant', { principal: 'agent', actions: ['echo', 'webhook_notify', 'webhook_high'] });
        assert.equal(r.status, 200, r.text);
      }
    }, HOOK);

    after(async () => {
      await Promise.all([A?.kill(), B?.kill()]);
      await up?.close();
      await hang?.close();
      await redis?.stop();
      await pgServer?.stop();
      if (manifests) rmSync(dirname(manifests), { recursive: true, force: true });
      if (base) rmSync(base, { recursive: true, force: true });
    }, HOOK);

    test('budget race: 50 concurrent calls on one max_calls=10 lease, split over two gate processes -> exactly 10 run, 40 budget_exhausted', T, async () => {
      const agent = new Agent();
      await agent.obtainLease(A.client, { budgets: { max_calls: 10 } });
      const results = await budgetRace(agent, [A, B]);
      assert.deepEqual(tally(results), { 200: 10, '403 budget_exhausted': 40 });
      const events = await sessionEvents(B, alice, agent.lease!.session_id);
      assert.equal(events.filter((e) => e.type === 'execute' && e.decision === 'allow').length, 10);
      assert.equal(events.filter((e) => e.type === 'execute' && e.reason_code === 'budget_exhausted').length, 40);
      // The lease stays exhausted on both gates afterwards.
      for (const g of [A, B]) assert.equal(code(await agent.execute(g.client, 'echo', { message: 'after' })), 'budget_exhausted');
    });

    test('approval race: alice and bob approve the same approval at once on two gate processes -> executed exactly once', T, async (t) => {
      const agent = new Agent();
      const seen: string[] = [];
      await agent.obtainLease(A.client);
      for (let round = 0; round < 4; round++) {
        const path = `/approval-race-${round}`;
        const held = await agent.execute(round % 2 ? B.client : A.client, 'webhook_high', { url: `${up.url}${path}`, event: 'approval.race' });
        assert.equal(held.status, 202, held.text);
        const id = (held.body as { approval_id: string }).approval_id;
        const [ra, rb] = await Promise.all([
          A.adminCall(alice, 'POST', `/v1/approvals/${id}/approve`),
          B.adminCall(bob, 'POST', `/v1/approvals/${id}/approve`),
        ]);
        seen.push(`${ra.status}/${rb.status}`);
        const wins = [ra, rb].filter((r) => r.status === 200);
        assert.ok(wins.length >= 1, `${ra.status} ${ra.text} | ${rb.status} ${rb.text}`);
        for (const r of [ra, rb]) {
          // The loser gets the stored result of the one execution, or a conflict while it runs.
          assert.ok(r.status === 200 || (r.status === 409 && code(r) === 'approval_conflict'), `${r.status} ${r.text}`);
        }
        const receipt = (wins[0]!.body as { receipt_id: string }).receipt_id;
        for (const w of wins) assert.equal((w.body as { receipt_id: string }).receipt_id, receipt);
        assert.equal(up.requests.filter((r) => r.path === path).length, 1, 'the upstream saw exactly one execution');
        const again = await B.adminCall(alice, 'POST', `/v1/approvals/${id}/approve`);
        assert.equal(again.status, 200, again.text);
        assert.equal((again.body as { receipt_id: string }).receipt_id, receipt);
        assert.equal(up.requests.filter((r) => r.path === path).length, 1);
        const trace = (held.body as { trace_id: string }).trace_id;
        const ev = await A.adminCall(alice, 'GET', `/v1/audit/events?trace_id=${trace}&limit=100`);
        const events = (ev.body as { events: Array<{ type: string; decision: string }> }).events;
        assert.equal(events.filter((e) => e.type === 'execute' && e.decision === 'allow').length, 1, ev.text);
        assert.equal(events.filter((e) => e.type === 'approval_approve').length, 1, ev.text);
      }
      t.diagnostic(`alice/bob answers per round: ${seen.join(' ')}`);
    });

    test('Redis stopped -> execute 503 (replay/budget store unavailable), nothing executed, /readyz not_ready; Redis back -> recovers without a restart', T, async (t) => {
      const agent = new Agent();
      await agent.obtainLease(A.client);
      const n = up.requests.length;
      await redis.pause();
      try {
        for (const g of [A, B]) {
          await eventually(async () => (await g.client.send('GET', '/readyz', {})).status === 503, `${g.name} /readyz 503`);
          const ready = await g.client.send('GET', '/readyz', {});
          assert.equal((ready.body as { status: string }).status, 'not_ready');
          assert.equal((ready.body as { redis: boolean }).redis, false);
          const r = await agent.execute(g.client, 'webhook_notify', { url: `${up.url}/redis-outage`, event: 'outage' });
          assert.equal(r.status, 503, r.text);
          assert.ok(['replay_cache_unavailable', 'budget_store_unavailable'].includes(code(r)!), r.text);
        t.diagnostic(`${g.name} during the Redis outage: ${r.status} ${code(r)}`);
          assert.deepEqual(Object.keys(r.body as object), ['error'], '5xx bodies carry the code alone');
        }
        assert.equal(up.requests.length, n, 'nothing reached the upstream during the outage');
      } finally {
        await redis.start();
      }
      for (const g of [A, B]) {
        await eventually(async () => (await g.client.send('GET', '/readyz', {})).status === 200, `${g.name} ready again`);
        const r = await agent.execute(g.client, 'webhook_notify', { url: `${up.url}/redis-recovered`, event: 'recovered' });
        assert.equal(r.status, 200, r.text);
      }
      assert.equal(up.requests.filter((r) => r.path === '/redis-recovered').length, 2);
      assert.equal(up.requests.filter((r) => r.path === '/redis-outage').length, 0);
    });

    test('PostgreSQL stopped -> execute 503 ledger_unavailable, nothing executed, budget not consumed, /readyz not_ready; PostgreSQL back -> recovers without a gate restart', T, async () => {
      const agent = new Agent();
      // Two calls allowed: the two refused during the outage must give their debit back.
      await agent.obtainLease(A.client, { budgets: { max_calls: 2 } });
      const n = up.requests.length;
      await pgServer.pause();
      try {
        for (const g of [A, B]) {
          await eventually(async () => (await g.client.send('GET', '/readyz', {})).status === 503, `${g.name} /readyz 503`);
          const ready = await g.client.send('GET', '/readyz', {});
          assert.equal((ready.body as { status: string }).status, 'not_ready');
          assert.equal((ready.body as { ledger: boolean }).ledger, false);
          const r = await agent.execute(g.client, 'webhook_notify', { url: `${up.url}/pg-outage`, event: 'outage' });
          assert.equal(r.status, 503, r.text);
          assert.equal(code(r), 'ledger_unavailable', r.text);
        }
        assert.equal(up.requests.length, n, 'nothing reached the upstream during the outage');
      } finally {
        await pgServer.start();
      }
      for (const g of [A, B]) {
        await eventually(async () => (await g.client.send('GET', '/readyz', {})).status === 200, `${g.name} ready again`);
        const r = await agent.execute(g.client, 'webhook_notify', { url: `${up.url}/pg-recovered`, event: 'recovered' });
        assert.equal(r.status, 200, r.text);
      }
      assert.equal(up.requests.filter((r) => r.path === '/pg-recovered').length, 2);
      assert.equal(code(await agent.execute(B.client, 'echo', { message: 'third' })), 'budget_exhausted');
      assert.equal(up.requests.filter((r) => r.path === '/pg-outage').length, 0);
      const v = await A.adminCall(alice, 'GET', '/v1/audit/verify');
      assert.equal((v.body as { intact: boolean }).intact, true, v.text);
    });

    test('SIGKILL of one production gate between execution intent and receipt -> the other instance reports the unresolved intent (status, intents, metrics, `portcullis intents`); chain intact', T, async () => {
      const agent = await killMidFlight(A, alice, hang, 'crash-production');
      // Gate A stays dead (the restart path is the embedded case's): B shares the database.
      const intentId = await assertUnresolvedIntentReported(B, bob, agent.lease!.session_id, { startupLog: false });
      const cli = await runCli(['intents', '--admin-socket', B.adminSocket, '--credential', writeCredentialFile(join(base, 'bob.json'), bob)]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.ok(cli.stdout.includes(intentId), cli.stdout);
    });

    // The same start-up as src/runtime/wire.ts (approvals + epoch floor, then the ledger), three
    // instances at once on a fresh database, a few rounds: the cross-instance migration lock must hold.
    test('three gate instances start at once on an empty PostgreSQL -> every instance migrates and starts (no duplicate-migration failure)', T, async () => {
      const admin = new pg.Client({ connectionString: pgServer.url });
      await admin.connect();
      const failures: string[] = [];
      try {
        for (let round = 0; round < 5; round++) {
          const name = `startup_race_${round}`;
          await admin.query(`create database ${name}`);
          const url = pgServer.url.replace('/postgres?', `/${name}?`);
          const start = async () => {
            const database = await openDatabase({ kind: 'postgres', connectionString: url });
            try {
              database.registerMigration('approvals/0001_init', { up: (db) => approvalsSchema(db) });
              registerEpochFloorMigration(database);
              await database.migrate();
              for (const [n, m] of Object.entries(LEDGER_MIGRATIONS)) database.registerMigration(n, m);
              await database.migrate();
            } catch (e) {
              failures.push(`round ${round}: ${(e as Error).message} ${String(((e as Error).cause as Error | undefined)?.message ?? '')}`);
            } finally {
              await database.close();
            }
          };
          await Promise.all([start(), start(), start()]);
        }
      } finally {
        await admin.end();
      }
      assert.deepEqual(failures, []);
    });
  });
}

function embeddedSuite() {
  describe('embedded: one `portcullis up` process', SUITE, () => {
    let dir: string;
    let manifests: string;
    let hang: HangingUpstream;
    let E: GateProcess;
    const op = newOperatorCredential('operator');

    before(async () => {
      manifests = makeSlimManifestsDir();
      hang = await startHangingUpstream();
      dir = join(mkdtempSync(join(tmpdir(), 'portcullis-embedded-')), 'state');
      prepareEmbeddedStateDir(dir, manifests, op);
      E = spawnGate('embedded', ['up', '--state-dir', dir], socketsOf(dir));
      await E.waitReady();
      const r = await E.adminCall(op, 'POST', '/v1/admin/policy/grant', { principal: 'agent', actions: ['webhook_notify'] });
      assert.equal(r.status, 200, r.text);
    }, HOOK);

    after(async () => {
      await E?.kill();
      await hang?.close();
      if (manifests) rmSync(dirname(manifests), { recursive: true, force: true });
      if (dir) rmSync(dirname(dir), { recursive: true, force: true });
    }, HOOK);

    test('budget race: 50 concurrent calls on one max_calls=10 lease against one embedded gate -> exactly 10 run, 40 budget_exhausted', T, async () => {
      const agent = new Agent();
      await agent.obtainLease(E.client, { budgets: { max_calls: 10 } });
      const results = await budgetRace(agent, [E]);
      assert.deepEqual(tally(results), { 200: 10, '403 budget_exhausted': 40 });
      const events = await sessionEvents(E, op, agent.lease!.session_id);
      assert.equal(events.filter((e) => e.type === 'execute' && e.decision === 'allow').length, 10);
    });

    test('SIGKILL of the embedded gate between execution intent and receipt -> after restart: start-up log, status, intents, metrics, `portcullis intents`; chain intact', T, async () => {
      const agent = await killMidFlight(E, op, hang, 'crash-embedded');
      // The killed process left its sockets behind: the restart must replace the stale ones.
      E = spawnGate('embedded', ['up', '--state-dir', dir], socketsOf(dir));
      await E.waitReady();
      const intentId = await assertUnresolvedIntentReported(E, op, agent.lease!.session_id);
      const cli = await runCli(['intents', '--state-dir', dir]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /^1 unresolved/m);
      assert.ok(cli.stdout.includes(intentId), cli.stdout);
    });

    test('receipts answered before their fsync (receipt_fsync = after_reply, the default) survive a SIGKILL right after the answers: all stored and verified, none of the intents unresolved, chain intact', T, async () => {
      const agent = new Agent();
      await agent.obtainLease(E.client);
      // Concurrent calls (finalizations batched together) and then sequential ones (one per batch).
      const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => agent.execute(E.client, 'echo', { message: `durable-${i}` })));
      for (let i = 0; i < 4; i++) answers.push(await agent.execute(E.client, 'echo', { message: `durable-seq-${i}` }));
      assert.deepEqual(tally(answers), { 200: 20 });
      await E.kill('SIGKILL');
      assert.equal((await E.exited).signal, 'SIGKILL');
      E = spawnGate('embedded', ['up', '--state-dir', dir], socketsOf(dir));
      await E.waitReady();
      for (const a of answers) {
        const id = (a.body as { receipt_id: string }).receipt_id;
        const r = await E.adminCall(op, 'GET', `/v1/receipts/${id}`);
        assert.equal(r.status, 200, `receipt ${id} lost: ${r.text}`);
        assert.equal((r.body as { signature_status: string }).signature_status, 'verified', r.text);
      }
      const list = await E.adminCall(op, 'GET', '/v1/admin/intents');
      assert.equal(list.status, 200, list.text);
      const mine = (list.body as { intents: Array<{ session_id: string }> }).intents.filter((i) => i.session_id === agent.lease!.session_id);
      assert.deepEqual(mine, [], list.text);
      const v = await E.adminCall(op, 'GET', '/v1/audit/verify');
      assert.equal((v.body as { intact: boolean }).intact, true, v.text);
    });
  });
}

// The two suites share nothing: run them side by side (process start-up dominates their time).
describe('resilience with the gate as real processes', { timeout: SUITE.timeout, concurrency: true }, () => {
  productionSuite();
  embeddedSuite();
});
