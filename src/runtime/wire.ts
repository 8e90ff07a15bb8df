// The composition root of the protected-action pipeline: ledger, registry + sandbox, policy,
// budgets, approvals, secrets, egress, idempotency, metrics, and the route modules of both
// sockets. Embedded mode keeps everything under the state directory; production uses the
// config's PostgreSQL (ledger, approvals) and Redis (budgets, idempotency, replay, epoch).
import { join, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import type { CoreParts, Extension } from './bootstrap.ts';
import type { RouteModule } from '../gate.ts';
import type { AuditSink } from '../contracts.ts';
import { openDatabase } from '../ledger/db.ts';
import { openLedger } from '../ledger/ledger.ts';
import { startCheckpointer } from '../ledger/checkpointer.ts';
import { ledgerRoutes, receiptRoute } from '../ledger/routes.ts';
import { loadRegistry, registryRoutes, type Registry } from '../registry/index.ts';
import { Sandbox, InstrumentCache } from '../sandbox/sandbox.ts';
import { loadPolicyEngine } from '../policy/engine.ts';
import { openPolicyDataStore } from '../policy/data-store.ts';
import { policyAdminRoutes } from '../policy/routes.ts';
import { emptyPolicyData } from '../policy/engine.ts';
import { RedisBudgetStore, SqliteBudgetStore, migrateSqliteBudgets, type BudgetStore } from '../budgets/index.ts';
import { KyselyApprovalStore, approvalsSchema, approvalAdminRoutes, approvalPollRoutes, startApprovalReaper } from '../approvals/index.ts';
import { SqliteSecretsStore } from '../secrets/store.ts';
import { SecretCipher } from '../secrets/cipher.ts';
import { loadOrCreateKeyFile, loadSecretKey } from '../secrets/key.ts';
import { secretsAdminRoutes } from '../secrets/routes.ts';
import { EgressGuard } from '../egress/index.ts';
import { createIdempotencyStore } from '../idempotency/index.ts';
import { GateMetrics } from '../metrics.ts';
import { approvedExecutor, pipelineRoutes } from '../pipeline/routes.ts';
import type { ActiveConfig, PipelineDeps } from '../pipeline/context.ts';
import { adminOpsRoutes } from '../app/admin-ops.ts';
import { publish } from '../observe.ts';
import { GateError } from '../errors.ts';
import { reconcileEpoch, raiseEpochFloor, registerEpochFloorMigration } from './epoch-floor.ts';
import { walProblem, type WalHealth } from '../stores/wal-checkpointer.ts';

const PROJECT_ROOT = resolve(import.meta.dirname, '..', '..');

/**
 * Loads the manifests and registers (digest-checks, instruments) every module in a new sandbox.
 * A module that fails verification does not stop the gate: its action is refused (403) and named.
 */
export async function loadActiveConfig(manifestsDir: string, cache: InstrumentCache, schedule?: (task: () => void) => void): Promise<ActiveConfig> {
  const registry: Registry = loadRegistry(manifestsDir, { root: manifestsDir === join(PROJECT_ROOT, 'manifests') ? PROJECT_ROOT : resolve(manifestsDir, '..') });
  const sandbox = new Sandbox({ cache, ...(schedule ? { schedule } : {}) });
  const refused = new Map<string, { code: 'action_digest_mismatch' | 'action_not_registered'; reason: string }>();
  try {
    for (const action of registry.actions()) {
      try {
        await sandbox.register(action.manifest, { path: action.moduleFile });
      } catch (e) {
        if (!(e instanceof GateError) || (e.code !== 'action_digest_mismatch' && e.code !== 'action_not_registered')) throw e;
        refused.set(action.manifest.action_id, { code: e.code, reason: e.message });
        publish('warning', { message: `action ${action.manifest.action_id} refused: ${e.message}` });
      }
    }
  } catch (e) {
    await sandbox.close();
    throw e;
  }
  return { registry, sandbox, loadedAt: new Date().toISOString(), refused };
}

export async function buildExtension(core: CoreParts): Promise<Extension> {
  const { config, clock, keystore } = core;
  const closers: Array<() => Promise<void> | void> = [];
  const onFail = async (e: unknown) => {
    for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => {});
    throw e;
  };
  try {
    // Evidence ledger (+ approvals, which live beside it for atomic, cross-instance claims).
    const database = await openDatabase(config.mode === 'production'
      ? { kind: 'postgres', connectionString: config.database_url! }
      : { kind: 'sqlite', path: join(config.state_dir, 'ledger.db'), writerThread: true, receiptFsync: config.ledger.receipt_fsync });
    closers.push(() => database.close());
    database.registerMigration('approvals/0001_init', { up: (db) => approvalsSchema(db) });
    registerEpochFloorMigration(database);
    await database.migrate();
    // Never let the revocation epoch move backwards (a Redis that lost its data).
    const epochRaised = await reconcileEpoch(database, core.revocation).catch(() => false);
    if (config.mode === 'production') {
      const t = setInterval(() => {
        reconcileEpoch(database, core.revocation).then((raised) => {
          if (raised) publish('warning', { message: 'revocation epoch was behind its durable floor (Redis data loss?); raised it back' });
        }, () => {});
      }, 5000);
      t.unref();
      closers.push(() => clearInterval(t));
    }
    // A lone request's ledger writes run on this thread (no thread hop to wait for); see docs/ledger.md.
    const alone = config.ledger.inline_when_alone ? core.alone : undefined;
    const ledger = await openLedger({ database, keys: keystore, clock, ...(alone ? { inlineWhen: alone } : {}) });
    closers.push(() => ledger.close());
    ledger.startWalCheckpointer();
    const checkpointer = startCheckpointer(ledger, {
      everyEvents: config.ledger.checkpoint_every_events,
      intervalMs: config.ledger.checkpoint_every_seconds * 1000,
      onError: (e) => publish('warning', { message: `checkpoint failed: ${(e as Error).message}` }),
    });
    closers.push(async () => { await checkpointer.stop(); });

    // Registry + sandbox, swapped together by reload.
    const cache = new InstrumentCache();
    const whenQuiet = (task: () => void) => core.quiet.run(task);
    let active = await loadActiveConfig(config.manifests_dir, cache, whenQuiet);
    closers.push(() => active.sandbox.close());

    // Policy: compiled Rego in-process; data persisted in the state dir, validated at load.
    const engine = await loadPolicyEngine(readFileSync(config.policy_wasm));
    const initial = emptyPolicyData();
    if (config.mode === 'embedded') {
      // Embedded first run: the local principal may call the no-I/O `echo`; everything else needs a grant.
      const principal = config.identity.provider === 'none' ? config.identity.principal ?? 'agent' : undefined;
      if (principal && active.registry.get('echo')) initial.acl[principal] = { actions: ['echo'], sinks: [] };
    }
    const policyData = await openPolicyDataStore({
      stateDir: config.state_dir,
      engine,
      clock,
      initialData: initial,
      lookupAction: (id) => {
        const m = active.registry.get(id)?.manifest;
        return m ? { declared_side_effects: m.declared_side_effects, risk_level: m.risk_level } : undefined;
      },
    });

    // Budgets and idempotency: Redis in production, the embedded state database otherwise.
    let budgets: BudgetStore;
    if (config.mode === 'production') {
      budgets = new RedisBudgetStore(core.redis!, { clock });
    } else {
      migrateSqliteBudgets(core.stateDb!);
      budgets = new SqliteBudgetStore(core.stateDb!, { clock, alone: core.alone });
    }
    const idempotency = createIdempotencyStore(config.mode === 'production' ? { kind: 'redis', redis: core.redis! } : { kind: 'sqlite', db: core.stateDb! }, { clock });

    const approvals = new KyselyApprovalStore(database.db, { clock });

    // Secrets: AES-256-GCM at rest; key from a systemd credential, a key file or the environment.
    const s = config.secrets;
    const secretKey = s.key_credential || s.key_file || s.key_env
      ? loadSecretKey({ systemdCredential: s.key_credential, keyFile: s.key_file, envVar: s.key_env })
      : loadOrCreateKeyFile(join(config.state_dir, 'secrets.key'));
    const secrets = new SqliteSecretsStore({ database: join(config.state_dir, 'secrets.db'), cipher: new SecretCipher(secretKey.key), clock });
    closers.push(() => (secrets as unknown as { close?: () => void }).close?.());

    const egress = new EgressGuard({ unsafeAllow: config.unsafe_egress_allow });
    const audit: AuditSink = { append: async (e) => { await ledger.append(e); } };

    const deps: PipelineDeps = {
      clock, audit, ledger, keystore,
      active: () => active,
      egress, unsafeAllow: config.unsafe_egress_allow,
      policy: engine, policyData, budgets, approvals,
      approvalTtlSeconds: config.approvals.ttl_seconds,
      secrets, revocation: core.revocation, state: core.state,
      grantTtlSeconds: 60,
    };

    const reaper = startApprovalReaper(approvals, {
      onReaped: async (reaped) => {
        for (const r of reaped) {
          await ledger.append({ type: 'approval_expired', decision: 'info', trace_id: r.trace_id, action_id: r.action_id, principal: r.principal, session_id: r.session_id, reason_code: r.reason, detail: { approval_id: r.approval_id, state: r.state } });
        }
      },
      onError: (e) => publish('warning', { message: `approval reaper: ${(e as Error).message}` }),
    });
    closers.push(() => reaper.stop());

    // Embedded: the two SQLite files' WALs and their checkpointer threads (status and metrics).
    const walHealth = (): Record<string, WalHealth | null> => ({ ledger: ledger.walHealth(), state: core.stateWal?.health()[0] ?? null });
    const metrics = new GateMetrics({
      unresolvedIntents: () => ledger.countUnresolvedIntents(),
      oldestPendingApprovalAgeSeconds: () => approvals.oldestPendingAgeSeconds(),
      pendingApprovals: () => approvals.pendingCount(),
      isKnownAction: (id) => active.registry.get(id) !== undefined,
      ...(config.mode === 'embedded' ? { walHealth } : {}),
    });
    closers.push(() => metrics.close());

    const reload = async () => {
      const next = await loadActiveConfig(config.manifests_dir, cache, whenQuiet);
      let prepared;
      try {
        prepared = await policyData.prepareReload(readFileSync(config.policy_wasm));
        prepared.commit();
      } catch (e) {
        await next.sandbox.close();
        throw e;
      }
      const previous = active;
      active = next;
      // Calls in flight keep the configuration they started with; close the old sandbox later.
      setTimeout(() => { void previous.sandbox.close(); }, 120_000).unref();
      return { manifests_loaded: next.registry.ids().length, policy_reloaded: true, reloaded_at: next.loadedAt, policy_version: prepared.policyVersion, policy_hash: prepared.policyHash };
    };

    const modules: RouteModule[] = [
      { socket: 'client', auth: 'none', app: registryRoutes(() => active.registry) },
      { socket: 'client', auth: 'lease', app: pipelineRoutes({ ...deps, idempotency }) },
      { socket: 'client', auth: 'lease', app: approvalPollRoutes({ store: approvals }) },
      { socket: 'client', auth: 'lease', app: receiptRoute({ ledger, keys: keystore }) },
      { socket: 'admin', auth: 'operator', app: approvalAdminRoutes({ store: approvals, audit, executeApproved: approvedExecutor(deps) }) },
      { socket: 'admin', auth: 'operator', app: policyAdminRoutes({ store: policyData, audit }) },
      { socket: 'admin', auth: 'operator', app: secretsAdminRoutes({ store: secrets, audit }) },
      { socket: 'admin', auth: 'operator', app: ledgerRoutes({ ledger, keys: keystore }) },
      { socket: 'admin', auth: 'operator', app: receiptRoute({ ledger, keys: keystore }) },
      { socket: 'admin', auth: 'operator', app: metrics.routes() },
      { socket: 'admin', auth: 'operator', app: adminOpsRoutes({ ledger, keystore, budgets, audit, reload, approvals }) },
    ];

    const notices: string[] = [];
    const unresolved = await ledger.countUnresolvedIntents();
    if (unresolved > 0) {
      notices.push(`WARNING: ${unresolved} execution intent(s) have no receipt (the gate stopped between dispatch and evidence). Review them with \`portcullis intents\`.`);
    }
    for (const [id, r] of active.refused) notices.push(`WARNING: action ${id} is refused until fixed and reloaded: ${r.reason}`);
    if (epochRaised) notices.push('WARNING: the revocation epoch store was behind its durable floor; raised it back.');
    if (config.unsafe_egress_allow.length > 0) notices.push(`WARNING: unsafe egress ranges enabled: ${config.unsafe_egress_allow.join(', ')}: egress may reach these private ranges over plain http. Local testing only; every use is audited.`);

    return {
      audit,
      modules,
      hooks: {
        onEpochAdvanced: async (_previous, current, operator) => {
          await raiseEpochFloor(database, current);
          // Held approvals came from leases of the old epoch: none may execute any more.
          for (let round = 0; round < 1000; round++) {
            const pending = await approvals.list({ status: 'pending', limit: 200 });
            if (pending.length === 0) break;
            for (const r of pending) {
            const out = await approvals.deny(r.approval_id, operator, 'revoked: revocation epoch advanced');
            if (out.denied) {
              await ledger.append({ type: 'approval_deny', decision: 'admin', operator, trace_id: r.plan.trace_id, action_id: r.plan.action_id, principal: r.plan.principal, session_id: r.plan.session_id, reason_code: 'epoch_revoked', detail: { approval_id: r.approval_id } });
            }
            }
          }
        },
        onSessionBudgets: async (sessionId, _principal, b, ttl) => {
          if (b.max_calls !== undefined) await budgets.initSession(sessionId, { max_calls: b.max_calls }, ttl);
        },
        // A renewed lease keeps its session's counter alive as long as the new lease.
        onSessionRenewed: async (sessionId, ttl) => { await budgets.extendSession(sessionId, ttl); },
      },
      notices,
      health: async () => {
        const dbOk = await database.ping().catch(() => false);
        return { opa: engine.isHealthy(), ledger: dbOk && ledger.writerFailed === undefined, approval_store: dbOk, egress_proxy: null, actions_registered: active.registry.ids().length };
      },
      status: async () => ({
        pending_approvals: await approvals.pendingCount().catch(() => null),
        unresolved_intents: await ledger.countUnresolvedIntents().catch(() => null),
        policy_version: engine.info().policy_version,
        ...(config.mode === 'embedded' ? { wal: walStatus(walHealth()) } : {}),
      }),
      close: async () => {
        for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => {});
      },
    };
  } catch (e) {
    return onFail(e);
  }
}

/**
 * GET /v1/admin/status's `wal`: each SQLite file's WAL with `problem` (null when healthy), so a
 * dead checkpointer or a WAL that keeps growing is visible before the disk fills. A file whose
 * checkpointer was never started (null) is left out; the gate starts both at start-up.
 */
export function walStatus(health: Record<string, WalHealth | null>): Record<string, WalHealth & { problem: string | null }> {
  const out: Record<string, WalHealth & { problem: string | null }> = {};
  for (const [db, h] of Object.entries(health)) if (h) out[db] = { ...h, problem: walProblem(h) };
  return out;
}
