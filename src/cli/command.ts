// The CLI's command contract and shared helpers (option parsing, admin calls, output).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { AdminClient, CliError, resolveAdminTarget } from './admin-client.ts';

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

export const ADMIN_OPTIONS = {
  'state-dir': { type: 'string' },
  'admin-socket': { type: 'string' },
  credential: { type: 'string' },
  'base-url': { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

export function parse<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, allowPositionals = true) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw new CliError((e as Error).message, 2);
  }
}

export function adminClientFrom(v: Record<string, unknown>): AdminClient {
  return new AdminClient(resolveAdminTarget({
    stateDir: v['state-dir'] as string | undefined,
    adminSocket: v['admin-socket'] as string | undefined,
    credential: v.credential as string | undefined,
    baseUrl: v['base-url'] as string | undefined,
  }));
}

/** Calls the admin socket; prints JSON with --json, else `human(body)`; non-2xx -> error exit. */
export async function adminCall(v: Record<string, unknown>, method: string, path: string, body: unknown, human: (b: any) => string): Promise<number> {
  const client = adminClientFrom(v);
  try {
    const res = await client.request(method, path, body);
    if (res.status < 200 || res.status >= 300) {
      const err = res.body as { error?: string; [k: string]: unknown } | undefined;
      if (v.json) process.stdout.write(`${JSON.stringify(res.body, null, 2)}\n`);
      else process.stderr.write(`error: ${res.status} ${err?.error ?? res.text}${err && Object.keys(err).length > 1 ? ` ${JSON.stringify(err)}` : ''}\n`);
      return 1;
    }
    if (v.json) process.stdout.write(`${typeof res.body === 'string' ? res.body : JSON.stringify(res.body, null, 2)}\n`);
    else process.stdout.write(`${human(res.body)}\n`);
    return 0;
  } finally {
    client.close();
  }
}

/** A plain aligned table. */
export function table(rows: Array<Record<string, unknown>>, columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const cells = rows.map((r) => columns.map((c) => (r[c] === null || r[c] === undefined ? '-' : typeof r[c] === 'object' ? JSON.stringify(r[c]) : String(r[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}
