// Prometheus / OpenMetrics exposition for GET /metrics (admin socket, operator auth). Metrics
// subscribe to the gate's diagnostics events, so no stage knows about them. No label carries a
// secret or an unbounded value chosen by a caller (action ids come from the registry only).
import { Counter, Gauge, Histogram, Registry, type OpenMetricsContentType } from 'prom-client';
import { Hono } from 'hono';
import type { GateEnv } from './http/env.ts';
import { subscribe } from './observe.ts';
import type { WalHealth } from './stores/wal-checkpointer.ts';

export interface MetricsSources {
  unresolvedIntents(): Promise<number>;
  oldestPendingApprovalAgeSeconds(): Promise<number>;
  pendingApprovals(): Promise<number>;
  isKnownAction(id: string): boolean;
  /** Embedded: each SQLite file's WAL by name (`ledger`, `state`); null entries are skipped. */
  walHealth?(): Record<string, WalHealth | null>;
}

export class GateMetrics {
  readonly registry: Registry<OpenMetricsContentType> = new (Registry as unknown as new (t: OpenMetricsContentType) => Registry<OpenMetricsContentType>)(Registry.OPENMETRICS_CONTENT_TYPE);
  private readonly unsubscribers: Array<() => void> = [];

  constructor(sources: MetricsSources) {
    const r = [this.registry];
    const calls = new Counter({ name: 'portcullis_action_calls', help: 'Execute calls by action and outcome', labelNames: ['action_id', 'outcome'], registers: r });
    const dpop = new Counter({ name: 'portcullis_auth_rejections', help: 'Rejected authentications (DPoP, lease, operator) by code and socket', labelNames: ['code', 'socket'], registers: r });
    const policy = new Counter({ name: 'portcullis_policy_decisions', help: 'Policy decisions by verdict', labelNames: ['verdict', 'mode'], registers: r });
    const provider = new Histogram({
      name: 'portcullis_provider_duration_seconds', help: 'Provider execution time (sandbox + host I/O)', labelNames: ['action_id', 'result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: r,
    });
    const budget = new Counter({ name: 'portcullis_budget_exhausted', help: 'Calls refused because a budget was exhausted', labelNames: ['action_id'], registers: r });
    const auditErrors = new Counter({ name: 'portcullis_audit_write_errors', help: 'Failed writes to the evidence ledger', registers: r });
    const schemaViolations = new Counter({ name: 'portcullis_response_schema_violations', help: 'Provider outputs that failed the response schema', labelNames: ['action_id'], registers: r });
    const errors = new Counter({ name: 'portcullis_internal_errors', help: 'Unexpected failures answered 5xx, by code', labelNames: ['code'], registers: r });
    new Gauge({
      name: 'portcullis_unresolved_intents', help: 'Execution intents without a receipt', registers: r,
      async collect() { this.set(await sources.unresolvedIntents().catch(() => -1)); },
    });
    new Gauge({
      name: 'portcullis_oldest_pending_approval_age_seconds', help: 'Age of the oldest pending approval', registers: r,
      async collect() { this.set(await sources.oldestPendingApprovalAgeSeconds().catch(() => -1)); },
    });
    new Gauge({
      name: 'portcullis_pending_approvals', help: 'Approvals waiting for an operator', registers: r,
      async collect() { this.set(await sources.pendingApprovals().catch(() => -1)); },
    });
    if (sources.walHealth) {
      // Each gauge takes its own reading (a stat of each WAL file): no state shared between collects.
      const walHealth = sources.walHealth;
      const walGauge = (name: string, help: string, value: (h: WalHealth) => number | null) => new Gauge({
        name, help, labelNames: ['db'], registers: r,
        collect() {
          this.reset();
          for (const [db, h] of Object.entries(walHealth())) {
            if (!h) continue;
            const v = value(h);
            if (v !== null) this.set({ db }, v);
          }
        },
      });
      walGauge('portcullis_sqlite_wal_bytes', 'Size of the SQLite write-ahead log file, by database', (h) => h.wal_bytes);
      walGauge('portcullis_sqlite_wal_checkpointer_up', 'Whether the WAL checkpointer thread runs (1) or not (0), by database', (h) => (h.checkpointer_running ? 1 : 0));
      walGauge('portcullis_sqlite_wal_checkpoint_age_seconds', 'Seconds since a WAL checkpoint last kept up with the writers, by database', (h) => h.last_checkpoint_age_seconds);
      walGauge('portcullis_sqlite_wal_frames_pending', 'WAL frames the last checkpoint could not copy yet, by database', (h) => h.frames_pending);
    }
    const action = (v: unknown) => (typeof v === 'string' && sources.isKnownAction(v) ? v : 'unknown');
    this.unsubscribers.push(
      subscribe('execute', (e) => calls.inc({ action_id: action(e.action_id), outcome: String(e.outcome) })),
      subscribe('auth_rejected', (e) => dpop.inc({ code: String(e.code), socket: String(e.socket) })),
      subscribe('policy_decision', (e) => policy.inc({ verdict: String(e.verdict), mode: String(e.mode ?? 'enforce') })),
      subscribe('provider_run', (e) => {
        provider.observe({ action_id: action(e.action_id), result: e.ok ? 'ok' : String(e.failure_class ?? 'error') }, Number(e.duration_ms) / 1000);
        if (e.failure_class === 'response_schema') schemaViolations.inc({ action_id: action(e.action_id) });
      }),
      subscribe('budget_exhausted', (e) => budget.inc({ action_id: action(e.action_id) })),
      subscribe('audit_write_error', () => auditErrors.inc()),
      subscribe('error', (e) => errors.inc({ code: String(e.code) })),
    );
  }

  routes(): Hono<GateEnv> {
    const app = new Hono<GateEnv>();
    app.get('/metrics', async (c) => {
      const text = await this.registry.metrics();
      return c.body(text, 200, { 'content-type': this.registry.contentType });
    });
    return app;
  }

  close(): void {
    for (const u of this.unsubscribers) u();
    this.registry.clear();
  }
}
