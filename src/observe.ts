// Observability without coupling: parts publish named events on node:diagnostics_channel;
// logs, metrics and tests subscribe. Payloads never carry secrets.
import diagnostics_channel from 'node:diagnostics_channel';

export type ObserveEvent =
  | 'error' | 'auth_rejected' | 'lease_issued' | 'execute' | 'policy_decision' | 'provider_run'
  | 'budget_exhausted' | 'audit_write_error' | 'warning';

const channels = new Map<string, diagnostics_channel.Channel>();

function channel(name: ObserveEvent): diagnostics_channel.Channel {
  let ch = channels.get(name);
  if (!ch) {
    ch = diagnostics_channel.channel(`portcullis:${name}`);
    channels.set(name, ch);
  }
  return ch;
}

export function publish(name: ObserveEvent, payload: Record<string, unknown>): void {
  const ch = channel(name);
  if (ch.hasSubscribers) ch.publish(payload);
}

export function subscribe(name: ObserveEvent, fn: (payload: Record<string, unknown>) => void): () => void {
  const ch = channel(name);
  const handler = (m: unknown) => fn(m as Record<string, unknown>);
  ch.subscribe(handler);
  return () => ch.unsubscribe(handler);
}
