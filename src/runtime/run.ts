// Runs a gate until a signal: listens on both sockets (and the dev TCP listener when enabled),
// tells systemd when ready, drains and removes the sockets on SIGTERM/SIGINT.
import { Hono } from 'hono';
import type { GateEnv } from '../http/env.ts';
import { listenLoopbackTcp, listenUnix, type Listener } from '../server.ts';
import type { Runtime } from './bootstrap.ts';
import { subscribe } from '../observe.ts';

export interface RunningGate {
  runtime: Runtime;
  listeners: Listener[];
  stop(): Promise<void>;
}

export interface RunOptions {
  log?: (line: string) => void;
  /** Install SIGTERM/SIGINT handlers (the CLI does; tests don't). */
  signals?: boolean;
  /** Milliseconds to wait for in-flight executions on shutdown. */
  drainTimeoutMs?: number;
}

/** Paths served by the admin socket (the rest, including receipts and approval polls, are the client's). */
export function isAdminPath(path: string): boolean {
  return /^\/v1\/admin(\/|$)/.test(path) || /^\/v1\/audit(\/|$)/.test(path) || path === '/metrics' || path === '/v1/receipt-keys'
    || (/^\/v1\/approvals(\/|$)/.test(path) && !/^\/v1\/approvals\/[^/]+\/poll$/.test(path));
}

export async function runGate(runtime: Runtime, opts: RunOptions = {}): Promise<RunningGate> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const cfg = runtime.config;
  const listeners: Listener[] = [];
  const unsubscribe = subscribe('error', (e) => {
    log(`error trace_id=${String(e.trace_id)} code=${String(e.code)} path=${String(e.path)} ${e.cause instanceof Error ? e.cause.stack ?? e.cause.message : String(e.message ?? '')}`);
  });
  const unsubscribeWarn = subscribe('warning', (e) => log(`warning: ${String(e.message)}`));
  try {
    listeners.push(await listenUnix(runtime.clientApp, cfg.client_socket, 0o660, cfg.client_socket_group));
    listeners.push(await listenUnix(runtime.adminApp, cfg.admin_socket, 0o600));
    if (cfg.unsafe_expose_http && cfg.http_listen) {
      // Dev only: both endpoint sets merged on one loopback listener, dispatched by path (each
      // app keeps its own authentication: lease + DPoP, or operator key + DPoP).
      const merged = new Hono<GateEnv>();
      merged.all('*', (c) => (isAdminPath(new URL(c.req.url).pathname) ? runtime.adminApp : runtime.clientApp).fetch(c.req.raw, c.env));
      listeners.push(await listenLoopbackTcp(merged, cfg.http_listen));
      log(`WARNING: unsafe_expose_http is on: the gate also listens on http://${cfg.http_listen} (loopback, dev only)`);
    }
  } catch (e) {
    for (const l of listeners) await l.close();
    unsubscribe();
    unsubscribeWarn();
    throw e;
  }
  for (const n of runtime.notices) log(n);
  log(`portcullis ${runtime.services.version} (${cfg.mode}) listening: client ${cfg.client_socket} (0660), admin ${cfg.admin_socket} (0600)`);
  await notifySystemd('READY=1\nSTATUS=serving', log);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await notifySystemd('STOPPING=1', log);
      runtime.services.state.draining = true;
      const deadline = Date.now() + (opts.drainTimeoutMs ?? 10_000);
      while (runtime.services.state.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const l of listeners) await l.close();
      await runtime.close();
      unsubscribe();
      unsubscribeWarn();
    })();
    return stopping;
  };
  if (opts.signals) {
    const onSignal = (sig: string) => {
      log(`${sig}: shutting down`);
      stop().then(() => process.exit(0), (e) => { log(`shutdown failed: ${String(e)}`); process.exit(1); });
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  }
  return { runtime, listeners, stop };
}

async function notifySystemd(state: string, log: (l: string) => void): Promise<void> {
  if (!process.env.NOTIFY_SOCKET) return;
  try {
    const { sdNotify } = await import('../identity/index.ts');
    sdNotify(state);
  } catch (e) {
    // Under Type=notify a silent failure would only show as a start timeout: say why.
    log(`sd_notify failed (${(e as Error).message}); build the addon with \`npm run build:native\` (docs/operations.md)`);
  }
}
