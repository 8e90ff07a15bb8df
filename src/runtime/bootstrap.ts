// Composes the gate's services from a validated config: embedded (SQLite under the state dir)
// or production (Redis + PostgreSQL). Everything that can fail does so here, before listening.
import { join } from 'node:path';
import { mkdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { GateConfig } from '../config/load.ts';
import { publish } from '../observe.ts';
import { systemClock, type AuditSink, type Clock } from '../contracts.ts';
import { openKeystore, type Keystore } from '../keys/index.ts';
import { createIdentityProvider } from '../identity/index.ts';
import { DpopVerifier, NonceIssuer } from '../auth/dpop.ts';
import { LeaseVerifier } from '../auth/lease.ts';
import type { OperatorRecord } from '../auth/middleware.ts';
import { openStateDb, SqliteReplayStore, SqliteRevocationStore, type SqliteDb } from '../stores/sqlite.ts';
import { WalCheckpointer } from '../stores/wal-checkpointer.ts';
import { createRedis, RedisReplayStore, RedisRevocationStore, waitReady } from '../stores/redis.ts';
import type { ReplayStore, RevocationStore } from '../stores/types.ts';
import { buildAdminApp, buildClientApp, type GateServices, type HealthReport, type RouteModule } from '../gate.ts';
import { QuietQueue } from './quiet.ts';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface Runtime {
  config: GateConfig;
  services: GateServices;
  keystore: Keystore;
  clientApp: ReturnType<typeof buildClientApp>;
  adminApp: ReturnType<typeof buildAdminApp>;
  /** Things to show at start-up (warnings, unresolved intents). */
  notices: string[];
  close(): Promise<void>;
}

export interface RuntimeOptions {
  clock?: Clock;
  /** Extra route modules and health contributors (filled in by the pipeline wiring). */
  extend?: (core: CoreParts) => Promise<Extension>;
}

/** The core parts handed to extensions (registry, policy, pipeline, ledger, …). */
export interface CoreParts {
  config: GateConfig;
  clock: Clock;
  keystore: Keystore;
  redis?: Redis;
  stateDb?: SqliteDb;
  /** Embedded: the state database's WAL checkpointer (its health is in status and metrics). */
  stateWal?: WalCheckpointer;
  replay: ReplayStore;
  revocation: RevocationStore;
  state: GateServices['state'];
  /**
   * Whether the client request being handled is the only one in flight: a lone request skips what
   * only pays off under concurrency (turn batches, thread hops). Derived from `state.requests`.
   */
  alone: () => boolean;
  /** Background work held until no client request is in flight (the sandbox's prewarms). */
  quiet: QuietQueue;
}

export interface Extension {
  audit: AuditSink;
  modules: RouteModule[];
  health(): Promise<Omit<HealthReport, 'redis'>>;
  status?(): Promise<Record<string, unknown>>;
  hooks?: GateServices['hooks'];
  notices?: string[];
  close(): Promise<void>;
}

export async function createRuntime(config: GateConfig, opts: RuntimeOptions = {}): Promise<Runtime> {
  const clock = opts.clock ?? systemClock;
  mkdirSync(config.state_dir, { recursive: true, mode: 0o700 });
  const keystore = await openKeystore({ dir: config.keys.dir, clock });
  const closers: Array<() => Promise<void> | void> = [];
  const startedAt = clock.now();
  const state = { draining: false, inFlight: 0, requests: 0, startedAt };
  const alone = (): boolean => state.requests <= 1;
  let replay: ReplayStore;
  let revocation: RevocationStore;
  let redis: Redis | undefined;
  let stateDb: SqliteDb | undefined;
  let stateWal: WalCheckpointer | undefined;
  const startupNotices: string[] = [];
  if (config.mode === 'production') {
    redis = createRedis(config.redis_url!);
    closers.push(() => { redis!.disconnect(); });
    if (!(await waitReady(redis))) startupNotices.push('WARNING: Redis is not reachable yet; the gate is not ready and refuses calls until it is');
    replay = new RedisReplayStore(redis);
    revocation = new RedisRevocationStore(redis);
  } else {
    const statePath = join(config.state_dir, 'state.db');
    stateDb = openStateDb(statePath, { checkpointThread: true });
    closers.push(() => { stateDb!.close(); });
    // The state database is written on the event loop: its WAL checkpoints run on their own thread.
    const checkpointer = new WalCheckpointer({
      paths: [statePath],
      onError: (message) => publish('error', { code: 'state_checkpoint_failed', path: 'state.db', message }),
    });
    stateWal = checkpointer;
    closers.push(() => checkpointer.close());
    // A lone request's jti mark commits at once: nothing else would join its batch.
    replay = new SqliteReplayStore(stateDb, () => clock.now(), alone);
    revocation = new SqliteRevocationStore(stateDb, () => clock.now());
  }
  const nonce = config.dpop.require_nonce ? new NonceIssuer(randomBytes(32), clock) : undefined;
  const dpopOptions = {
    // A lone request checks its proof inline (a thread-pool round trip costs more than the ~120 µs
    // check); with others waiting, the check leaves the event loop to them. Client-socket requests
    // are counted; the admin socket's verifier follows the same count (a performance choice only).
    offloadSignature: () => !alone(),
    publicBaseUrl: config.public_base_url,
    maxAgeSeconds: config.dpop.max_age_seconds,
    maxFutureSeconds: config.dpop.max_future_seconds,
    replay,
    clock,
  };
  const dpop = new DpopVerifier({ ...dpopOptions, nonce });
  // The admin socket never asks for a server nonce (the operator CLI does not carry one).
  const adminDpop = nonce ? new DpopVerifier(dpopOptions) : dpop;
  const leaseKeys = new Map<string, KeyObject>([[keystore.lease.kid, keystore.lease.publicKey]]);
  const leaseVerifier = new LeaseVerifier(() => leaseKeys, config.public_base_url, clock);
  const identity = createIdentityProvider(config.identity);
  const operators: OperatorRecord[] = config.operators.map((o) => ({ name: o.name, apiKeyHash: Buffer.from(o.api_key_sha256, 'hex'), jkt: o.dpop_jkt }));
  const quiet = new QuietQueue(() => state.requests > 0);
  const core: CoreParts = { config, clock, keystore, redis, stateDb, stateWal, replay, revocation, state, alone, quiet };
  let ext: Extension;
  try {
    if (!opts.extend) throw new Error('createRuntime needs the pipeline extension');
    ext = await opts.extend(core);
  } catch (e) {
    for (const c of closers.reverse()) await c();
    throw e;
  }
  const services: GateServices = {
    config,
    version: VERSION,
    clock,
    state,
    quiet,
    keys: {
      leaseSigningKey: () => keystore.lease,
      leasePublicKeys: () => leaseKeys,
      leaseJwks: () => keystore.leaseJwks() as unknown as ReturnType<GateServices['keys']['leaseJwks']>,
    },
    leaseVerifier,
    dpop,
    adminDpop,
    replay,
    revocation,
    identity,
    operators: () => operators,
    audit: ext.audit,
    health: async () => ({ redis: await revocation.ping(), ...(await ext.health()) }),
    status: ext.status,
    hooks: ext.hooks ?? {},
    modules: ext.modules,
  };
  const notices = [...startupNotices, ...(ext.notices ?? [])];
  return {
    config,
    services,
    keystore,
    clientApp: buildClientApp(services),
    adminApp: buildAdminApp(services),
    notices,
    async close() {
      await ext.close();
      for (const c of closers.reverse()) await c();
    },
  };
}
