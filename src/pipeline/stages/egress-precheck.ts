// Egress pre-check: every URL the request names (top-level properties whose request schema says
// `format: uri`) is vetted without DNS: scheme, port, method and syntax problems deny now;
// a domain outside the manifest ∪ learned allowlist becomes an "unresolved domain" (approval).
import type { Stage } from '../context.ts';
import { precheck } from '../../egress/index.ts';

/** Request fields that name egress targets: top-level `format: uri` properties of the schema. */
export function targetFields(schema: Record<string, unknown>): string[] {
  const props = (schema.properties ?? {}) as Record<string, { format?: unknown; type?: unknown }>;
  return Object.entries(props).filter(([, p]) => p && p.format === 'uri').map(([k]) => k).sort();
}


export const egressPrecheck: Stage = async (ctx, deps) => {
  const m = ctx.action!.manifest;
  const body = (ctx.body ?? {}) as Record<string, unknown>;
  // Learned domains of this action, plus the approved plan's hosts: reachable (never sent credentials).
  const learned = deps.policyData.listDomains().filter((d) => d.action_id === ctx.actionId).map((d) => d.domain);
  const extra = [...learned, ...(ctx.approved?.approvedHosts ?? [])];
  ctx.extraDomains = extra;
  const method = m.egress.allowed_methods[0] ?? 'GET';
  const targets = [];
  for (const field of targetFields(m.request_schema)) {
    const v = body[field];
    if (typeof v !== 'string') continue;
    targets.push(precheck(v, method, m.egress, extra, { unsafeAllow: deps.unsafeAllow }));
  }
  ctx.targets = targets;
  ctx.unresolvedDomains = [...new Set(targets.filter((t) => !t.resolved).map((t) => t.host))].sort();
};
