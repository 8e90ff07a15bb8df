// Operator commands for the gate core: status, drain, revoke-all, epoch, revoke.
import { ADMIN_OPTIONS, adminCall, parse, type Command } from '../command.ts';
import { CliError } from '../admin-client.ts';

const adminUsage = '[--state-dir DIR | --admin-socket PATH --credential FILE] [--json]';

/** One WAL (GET /v1/admin/status `wal.<db>`) on one line: size, thread, last kept-up checkpoint, backlog, problem. */
function walLine(w: Record<string, unknown>): string {
  const mib = typeof w.wal_bytes === 'number' ? `${(w.wal_bytes / 1048576).toFixed(1)} MiB` : '?';
  const age = typeof w.last_checkpoint_age_seconds === 'number' ? `kept up ${w.last_checkpoint_age_seconds} s ago` : 'no checkpoint yet';
  const thread = w.checkpointer_running === true ? 'checkpointer up' : 'checkpointer DOWN';
  const pending = typeof w.frames_pending === 'number' ? `${w.frames_pending} frames pending` : 'frames pending ?';
  return `${mib}, ${thread}, ${age}, ${pending}: ${typeof w.problem === 'string' ? `PROBLEM: ${w.problem}` : 'ok'}`;
}

/** `portcullis status` without --json: one line per field, one per WAL. */
export function formatStatus(b: Record<string, unknown>): string {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(b)) {
    if (k === 'wal' && typeof v === 'object' && v !== null) {
      for (const [db, w] of Object.entries(v as Record<string, unknown>)) {
        if (typeof w === 'object' && w !== null) lines.push(`${`wal.${db}`.padEnd(22)} ${walLine(w as Record<string, unknown>)}`);
      }
      continue;
    }
    lines.push(`${k.padEnd(22)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  }
  return lines.join('\n');
}

export const coreCommands: Command[] = [
  {
    name: 'status',
    summary: 'Show the gate status (health, epoch, drain, in-flight, approvals, unresolved intents).',
    usage: `portcullis status ${adminUsage}`,
    async run(argv) {
      const { values } = parse(argv, ADMIN_OPTIONS, false);
      return adminCall(values, 'GET', '/v1/admin/status', undefined, formatStatus);
    },
  },
  {
    name: 'drain',
    summary: 'Stop accepting new client calls (irreversible until restart); in-flight calls finish.',
    usage: `portcullis drain ${adminUsage}`,
    async run(argv) {
      const { values } = parse(argv, ADMIN_OPTIONS, false);
      return adminCall(values, 'POST', '/v1/admin/drain', undefined, (b) =>
        `${b.already_draining ? 'already draining' : 'draining'}; in-flight executions: ${b.in_flight_executions}`);
    },
  },
  {
    name: 'revoke-all',
    summary: 'Kill switch: advance the revocation epoch; every existing lease and grant is refused.',
    usage: `portcullis revoke-all ${adminUsage}`,
    async run(argv) {
      const { values } = parse(argv, ADMIN_OPTIONS, false);
      return adminCall(values, 'POST', '/v1/admin/revoke-all', undefined, (b) => `revocation epoch ${b.previous_epoch} -> ${b.current_epoch}`);
    },
  },
  {
    name: 'epoch',
    summary: 'Show the current revocation epoch.',
    usage: `portcullis epoch ${adminUsage}`,
    async run(argv) {
      const { values } = parse(argv, ADMIN_OPTIONS, false);
      return adminCall(values, 'GET', '/v1/admin/epoch', undefined, (b) => `current epoch ${b.current_epoch}`);
    },
  },
  {
    name: 'revoke',
    summary: 'Revoke one session (--session ID) or every lease of one principal (--principal NAME).',
    usage: `portcullis revoke (--session ID | --principal NAME) ${adminUsage}`,
    async run(argv) {
      const { values } = parse(argv, { ...ADMIN_OPTIONS, session: { type: 'string' }, principal: { type: 'string' } }, false);
      if (Boolean(values.session) === Boolean(values.principal)) throw new CliError('give exactly one of --session or --principal', 2);
      const body = values.session ? { session_id: values.session } : { principal: values.principal };
      return adminCall(values, 'POST', '/v1/admin/revoke', body, () => `revoked ${values.session ? `session ${values.session}` : `principal ${values.principal}`}`);
    },
  },
];
