// Operator commands over the admin socket: policy, approvals, audit, receipts, keys, secrets,
// learned domains/paths, intents, reload, metrics, budgets. Each is a thin, validated call.
import { readFileSync, writeFileSync } from 'node:fs';
import { ADMIN_OPTIONS, adminCall, adminClientFrom, parse, table, type Command } from '../command.ts';
import { CliError } from '../admin-client.ts';

const A = '[--state-dir DIR | --admin-socket PATH --credential FILE] [--json]';
const q = (params: Record<string, string | undefined>) => {
  const s = new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined)).toString();
  return s ? `?${s}` : '';
};
const need = (v: string | undefined, what: string): string => {
  if (!v) throw new CliError(`missing ${what}`, 2);
  return v;
};
const list = (v: string | undefined, what: string): string[] => need(v, what).split(',').map((s) => s.trim()).filter(Boolean);
const pretty = (b: unknown) => JSON.stringify(b, null, 2);

/** `portcullis <group> <sub> …` commands dispatch on their first positional. */
function group(name: string, summary: string, subs: Record<string, { usage: string; run(rest: string[]): Promise<number> }>): Command {
  return {
    name,
    summary,
    usage: Object.values(subs).map((s) => `portcullis ${name} ${s.usage} ${A}`).join('\n       '),
    async run(argv) {
      const [sub, ...rest] = argv;
      const s = sub ? subs[sub] : undefined;
      if (!s) throw new CliError(`${name}: expected one of ${Object.keys(subs).join(', ')}`, 2);
      return s.run(rest);
    },
  };
}

export const adminCommands: Command[] = [
  group('policy', 'Show and change the policy ACL and the approval allowlist.', {
    show: {
      usage: 'show [PRINCIPAL]',
      async run(rest) {
        const { values, positionals } = parse(rest, ADMIN_OPTIONS);
        const p = positionals[0];
        return adminCall(values, 'GET', p ? `/v1/admin/policy/${encodeURIComponent(p)}` : '/v1/admin/policy', undefined, (b) =>
          p ? pretty(b) : `policy ${b.policy_version}\n${table(Object.entries(b.principals as Record<string, { actions: string[]; sinks: string[] }>)
            .map(([k, v]) => ({ principal: k, actions: v.actions.join(','), sinks: v.sinks.join(',') })), ['principal', 'actions', 'sinks'])}`);
      },
    },
    grant: {
      usage: 'grant --principal P --actions a,b',
      async run(rest) {
        const { values } = parse(rest, { ...ADMIN_OPTIONS, principal: { type: 'string' }, actions: { type: 'string' } }, false);
        return adminCall(values, 'POST', '/v1/admin/policy/grant', { principal: need(values.principal, '--principal'), actions: list(values.actions, '--actions') },
          (b) => `${b.principal}: actions ${b.actions.join(', ')}; sinks ${b.sinks.join(', ')}`);
      },
    },
    revoke: {
      usage: 'revoke --principal P --actions a,b',
      async run(rest) {
        const { values } = parse(rest, { ...ADMIN_OPTIONS, principal: { type: 'string' }, actions: { type: 'string' } }, false);
        return adminCall(values, 'POST', '/v1/admin/policy/revoke', { principal: need(values.principal, '--principal'), actions: list(values.actions, '--actions') },
          (b) => `${b.principal}: actions ${b.actions.join(', ') || '(none)'}; sinks ${b.sinks.join(', ') || '(none)'}`);
      },
    },
    allowlist: {
      usage: 'allowlist (add|remove) --action ID --principal P',
      async run(rest) {
        const [op, ...more] = rest;
        if (op !== 'add' && op !== 'remove') throw new CliError('policy allowlist: expected add or remove', 2);
        const { values } = parse(more, { ...ADMIN_OPTIONS, action: { type: 'string' }, principal: { type: 'string' } }, false);
        return adminCall(values, op === 'add' ? 'POST' : 'DELETE', '/v1/admin/policy/allowlist',
          { action_id: need(values.action, '--action'), agent_id: need(values.principal, '--principal') },
          (b) => `${op === 'add' ? 'allowlisted' : 'removed'} ${b.action_id} for ${b.agent_id}`);
      },
    },
  }),
  group('approvals', 'Review held actions: list, show, approve (executes once), deny.', {
    list: {
      usage: 'list [--status pending|claimed|approved|denied|failed|expired] [--limit N]',
      async run(rest) {
        const { values } = parse(rest, { ...ADMIN_OPTIONS, status: { type: 'string' }, limit: { type: 'string' } }, false);
        return adminCall(values, 'GET', `/v1/approvals${q({ status: values.status, limit: values.limit })}`, undefined,
          (b) => table(b.approvals, ['approval_id', 'action_id', 'state', 'principal', 'risk_level', 'created_at', 'expires_at']));
      },
    },
    show: {
      usage: 'show ID',
      async run(rest) {
        const { values, positionals } = parse(rest, ADMIN_OPTIONS);
        return adminCall(values, 'GET', `/v1/approvals/${encodeURIComponent(need(positionals[0], 'approval id'))}`, undefined, pretty);
      },
    },
    approve: {
      usage: 'approve ID [--learn-domain DOMAIN]',
      async run(rest) {
        const { values, positionals } = parse(rest, { ...ADMIN_OPTIONS, 'learn-domain': { type: 'string' } });
        const id = need(positionals[0], 'approval id');
        return adminCall(values, 'POST', `/v1/approvals/${encodeURIComponent(id)}/approve${q({ learn_domain: values['learn-domain'] })}`, undefined,
          (b) => `approved and executed: receipt ${b.receipt_id} (${b.verification_outcome})`);
      },
    },
    deny: {
      usage: 'deny ID [--reason TEXT]',
      async run(rest) {
        const { values, positionals } = parse(rest, { ...ADMIN_OPTIONS, reason: { type: 'string' } });
        const id = need(positionals[0], 'approval id');
        return adminCall(values, 'POST', `/v1/approvals/${encodeURIComponent(id)}/deny`, values.reason ? { reason: values.reason } : undefined,
          (b) => `denied ${b.approval_id} (${b.action_id}) by ${b.denied_by}`);
      },
    },
  }),
  group('audit', 'Query the evidence ledger, verify its chain, export and verify signed bundles offline.', {
    events: {
      usage: 'events [--trace-id T] [--action A] [--principal P] [--session S] [--decision D] [--after ISO] [--before ISO] [--limit N]',
      async run(rest) {
        const { values } = parse(rest, {
          ...ADMIN_OPTIONS, 'trace-id': { type: 'string' }, action: { type: 'string' }, principal: { type: 'string' }, session: { type: 'string' },
          decision: { type: 'string' }, after: { type: 'string' }, before: { type: 'string' }, limit: { type: 'string' },
        }, false);
        const query = q({ trace_id: values['trace-id'], action_id: values.action, principal: values.principal, session_id: values.session, decision: values.decision, after: values.after, before: values.before, limit: values.limit });
        return adminCall(values, 'GET', `/v1/audit/events${query}`, undefined,
          (b) => table(b.events, ['seq', 'ts', 'type', 'decision', 'action_id', 'principal', 'operator', 'reason_code', 'trace_id']));
      },
    },
    verify: {
      usage: 'verify [--bundle FILE [--trusted-keys JWKS_FILE]]',
      async run(rest) {
        const { values } = parse(rest, { ...ADMIN_OPTIONS, bundle: { type: 'string' }, 'trusted-keys': { type: 'string' } }, false);
        if (values.bundle) {
          // Offline: only the bundle and (optionally) the operator's trusted public keys.
          const { verifyBundle } = await import('../../ledger/bundle.ts');
          let bundle: unknown;
          try { bundle = JSON.parse(readFileSync(values.bundle, 'utf8')); } catch (e) { throw new CliError(`cannot read bundle ${values.bundle}: ${(e as Error).message}`, 2); }
          const trusted = values['trusted-keys'] ? JSON.parse(readFileSync(values['trusted-keys'], 'utf8')) : undefined;
          const r = verifyBundle(bundle, trusted ? { trustedKeys: trusted } : {});
          process.stdout.write(values.json ? `${pretty(r)}\n` : r.intact
            ? `bundle intact: ${r.events_checked} events, ${r.checkpoints_checked} checkpoints, ${r.receipts.checked} receipts, manifest signature ${r.signature}${r.keys_trusted ? '' : ' (keys from the bundle itself: integrity only; pass --trusted-keys for authenticity)'}\n`
            : `BUNDLE BROKEN at index ${r.broken_at?.index ?? '-'} (seq ${r.broken_at?.seq ?? '-'}): ${r.reason}\n`);
          return r.intact ? 0 : 1;
        }
        const client = adminClientFrom(values);
        try {
          const res = await client.request('GET', '/v1/audit/verify');
          const b = res.body as { intact: boolean; events_checked: number; broken_at: { index: number; seq: number } | null; reason?: string };
          if (res.status !== 200) throw new CliError(`verify failed: ${res.status} ${res.text}`);
          process.stdout.write(values.json ? `${pretty(b)}\n` : b.intact ? `ledger intact: ${b.events_checked} events\n` : `LEDGER BROKEN at index ${b.broken_at?.index} (seq ${b.broken_at?.seq}): ${b.reason ?? ''}\n`);
          return b.intact ? 0 : 1;
        } finally { client.close(); }
      },
    },
    export: {
      usage: 'export --out FILE',
      async run(rest) {
        const { values } = parse(rest, { ...ADMIN_OPTIONS, out: { type: 'string' } }, false);
        const out = need(values.out, '--out FILE');
        const client = adminClientFrom(values);
        try {
          const res = await client.request('GET', '/v1/admin/audit/export');
          if (res.status !== 200) throw new CliError(`export failed: ${res.status} ${res.text}`);
          writeFileSync(out, res.text, { mode: 0o600 });
          const b = res.body as { events?: unknown[] };
          process.stdout.write(`wrote ${out} (${b.events?.length ?? 0} events)\n`);
          return 0;
        } finally { client.close(); }
      },
    },
  }),
  {
    name: 'receipt',
    summary: 'Show a receipt and its signature status.',
    usage: `portcullis receipt ID ${A}`,
    async run(argv) {
      const { values, positionals } = parse(argv, ADMIN_OPTIONS);
      return adminCall(values, 'GET', `/v1/receipts/${encodeURIComponent(need(positionals[0], 'receipt id'))}`, undefined, pretty);
    },
  },
  group('keys', 'Receipt signing keys: list every public key, rotate the active one.', {
    list: {
      usage: 'list',
      async run(rest) {
        const { values } = parse(rest, ADMIN_OPTIONS, false);
        return adminCall(values, 'GET', '/v1/receipt-keys', undefined, (b) => table(b.keys, ['kid', 'kty', 'crv', 'alg']));
      },
    },
    rotate: {
      usage: 'rotate',
      async run(rest) {
        const { values } = parse(rest, ADMIN_OPTIONS, false);
        return adminCall(values, 'POST', '/v1/admin/keys/rotate', undefined, (b) => `active receipt key is now ${b.kid} (${b.keys_served} public keys served)`);
      },
    },
  }),
  group('secrets', 'Write-only credentials injected by the egress guard: set, list (names only), remove.', {
    set: {
      usage: 'set NAME (--value-file FILE | --from-env VAR | reads stdin)',
      async run(rest) {
        const { values, positionals } = parse(rest, { ...ADMIN_OPTIONS, 'value-file': { type: 'string' }, 'from-env': { type: 'string' } });
        const name = need(positionals[0], 'secret name');
        let value: string;
        if (values['value-file']) value = readFileSync(values['value-file'], 'utf8');
        else if (values['from-env']) value = need(process.env[values['from-env']], `environment variable ${values['from-env']}`);
        else value = readFileSync(0, 'utf8');
        value = value.replace(/\r?\n$/, '');
        if (!value) throw new CliError('empty secret value', 2);
        return adminCall(values, 'PUT', `/v1/admin/secrets/${encodeURIComponent(name)}`, { value }, () => `secret ${name} stored`);
      },
    },
    list: {
      usage: 'list',
      async run(rest) {
        const { values } = parse(rest, ADMIN_OPTIONS, false);
        return adminCall(values, 'GET', '/v1/admin/secrets', undefined, (b) => table(b.secrets, ['name', 'updated_at']));
      },
    },
    remove: {
      usage: 'remove NAME',
      async run(rest) {
        const { values, positionals } = parse(rest, ADMIN_OPTIONS);
        const name = need(positionals[0], 'secret name');
        return adminCall(values, 'DELETE', `/v1/admin/secrets/${encodeURIComponent(name)}`, undefined, () => `secret ${name} removed`);
      },
    },
  }),
  ...([['domains', 'domain', 'egress allowlist'], ['paths', 'path', 'filesystem']] as const).map(([kind, f, what]) => group(kind, `Learned ${kind} (${what}) per action.`, {
    list: {
      usage: 'list',
      async run(rest) {
        const { values } = parse(rest, ADMIN_OPTIONS, false);
        return adminCall(values, 'GET', `/v1/admin/${kind}`, undefined, (b) => table(b[kind], [f, 'action_id', 'source', 'added_at']));
      },
    },
    add: {
      usage: `add --action ID --${f} VALUE`,
      async run(rest) {
        const { values } = parse(rest, { ...ADMIN_OPTIONS, action: { type: 'string' }, [f]: { type: 'string' } }, false);
        const v = values as unknown as Record<string, string | undefined>;
        return adminCall(values, 'POST', `/v1/admin/${kind}`, { action_id: need(v.action, '--action'), [f]: need(v[f], `--${f}`) }, (b) => `learned ${b[f]} for ${b.action_id}`);
      },
    },
    remove: {
      usage: `remove --action ID --${f} VALUE`,
      async run(rest) {
        const { values } = parse(rest, { ...ADMIN_OPTIONS, action: { type: 'string' }, [f]: { type: 'string' } }, false);
        const v = values as unknown as Record<string, string | undefined>;
        return adminCall(values, 'DELETE', `/v1/admin/${kind}`, { action_id: need(v.action, '--action'), [f]: need(v[f], `--${f}`) }, () => 'removed');
      },
    },
    clear: {
      usage: 'clear',
      async run(rest) {
        const { values } = parse(rest, ADMIN_OPTIONS, false);
        return adminCall(values, 'DELETE', `/v1/admin/${kind}/clear`, undefined, () => `all learned ${kind} cleared`);
      },
    },
  })),
  {
    name: 'intents',
    summary: 'List execution intents that never got a receipt (a crash between dispatch and evidence).',
    usage: `portcullis intents ${A}`,
    async run(argv) {
      const { values } = parse(argv, ADMIN_OPTIONS, false);
      return adminCall(values, 'GET', '/v1/admin/intents', undefined, (b) => `${b.count} unresolved\n${table(b.intents, ['intent_id', 'trace_id', 'action_id', 'principal', 'created_at'])}`);
    },
  },
  {
    name: 'reload',
    summary: 'Re-read manifests, policy data and the compiled policy; swap atomically or keep the old.',
    usage: `portcullis reload ${A}`,
    async run(argv) {
      const { values } = parse(argv, ADMIN_OPTIONS, false);
      return adminCall(values, 'POST', '/v1/admin/reload', undefined, (b) => `reloaded: ${b.manifests_loaded} manifests, policy ${b.policy_reloaded ? 'reloaded' : 'unchanged'} at ${b.reloaded_at}`);
    },
  },
  {
    name: 'metrics',
    summary: 'Print the Prometheus/OpenMetrics exposition.',
    usage: `portcullis metrics ${A}`,
    async run(argv) {
      const { values } = parse(argv, ADMIN_OPTIONS, false);
      return adminCall(values, 'GET', '/metrics', undefined, (b) => String(b));
    },
  },
  group('budgets', 'Per-principal budgets (calls and cost per window).', {
    list: {
      usage: 'list',
      async run(rest) {
        const { values } = parse(rest, ADMIN_OPTIONS, false);
        return adminCall(values, 'GET', '/v1/admin/budgets', undefined, (b) => table(b.budgets, ['principal', 'window_seconds', 'max_calls', 'max_cost', 'action_costs']));
      },
    },
    set: {
      usage: 'set --principal P --window-seconds N [--max-calls N] [--max-cost N] [--action-costs a=1,b=5]',
      async run(rest) {
        const { values } = parse(rest, { ...ADMIN_OPTIONS, principal: { type: 'string' }, 'window-seconds': { type: 'string' }, 'max-calls': { type: 'string' }, 'max-cost': { type: 'string' }, 'action-costs': { type: 'string' } }, false);
        const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));
        const costs = values['action-costs'] ? Object.fromEntries(values['action-costs'].split(',').map((kv) => { const [k, v] = kv.split('='); return [k!, Number(v)]; })) : undefined;
        const body = { principal: need(values.principal, '--principal'), window_seconds: num(need(values['window-seconds'], '--window-seconds')), max_calls: num(values['max-calls']), max_cost: num(values['max-cost']), action_costs: costs };
        return adminCall(values, 'PUT', '/v1/admin/budgets', JSON.parse(JSON.stringify(body)), (b) => `budget for ${b.principal} set`);
      },
    },
    remove: {
      usage: 'remove --principal P',
      async run(rest) {
        const { values } = parse(rest, { ...ADMIN_OPTIONS, principal: { type: 'string' } }, false);
        return adminCall(values, 'DELETE', '/v1/admin/budgets', { principal: need(values.principal, '--principal') }, () => 'removed');
      },
    },
  }),
];
