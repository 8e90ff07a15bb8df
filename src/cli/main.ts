// `portcullis` — the gate's command line: `up` (embedded), `serve` (production) and the
// operator commands that talk to the admin socket.
import { resolve } from 'node:path';
import { CliError } from './admin-client.ts';
import { parse, type Command } from './command.ts';
import { coreCommands } from './commands/core.ts';
import { extraCommands } from './commands/index.ts';
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfigFile } from '../config/load.ts';
import { ensureStateDir } from '../runtime/state-dir.ts';
import { StartupError } from '../server.ts';

// Operator commands stay light: the runtime (sandbox, binaryen, policy engine, databases) is
// loaded only by `up` and `serve`.
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

async function startGate(config: import('../config/load.ts').GateConfig): Promise<void> {
  const { createRuntime } = await import('../runtime/bootstrap.ts');
  const { runGate } = await import('../runtime/run.ts');
  const { buildExtension } = await import('../runtime/wire.ts');
  const runtime = await createRuntime(config, { extend: buildExtension });
  await runGate(runtime, { signals: true });
}

const DEFAULT_STATE_DIR = '.portcullis';

function firstCallHelp(dir: string): string {
  return [
    '',
    'First call (another terminal):',
    `  curl --unix-socket ${dir}/gate.sock http://localhost/healthz`,
    `  curl --unix-socket ${dir}/gate.sock http://localhost/v1/actions`,
    `  npx portcullis status --state-dir ${dir}`,
    'Agents use the TypeScript client (import { PortcullisClient } from "portcullis/client"):',
    `  new PortcullisClient({ socketPath: "${dir}/gate.sock" }).execute("echo", { message: "hi" })`,
    '',
  ].join('\n');
}

const upCommand: Command = {
  name: 'up',
  summary: 'Run the gate in embedded mode (no external service) in the foreground.',
  usage: 'portcullis up [--state-dir DIR] [--unsafe-egress-allow CIDR]... [--print-first-call]',
  async run(argv) {
    const { values } = parse(argv, {
      'state-dir': { type: 'string' },
      'unsafe-egress-allow': { type: 'string', multiple: true },
      'print-first-call': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    }, false);
    const dir = resolve(values['state-dir'] ?? process.env.PORTCULLIS_STATE_DIR ?? DEFAULT_STATE_DIR);
    const layout = ensureStateDir(dir);
    const config = loadConfigFile(layout.configPath);
    if (config.mode !== 'embedded') throw new CliError(`${layout.configPath} is not an embedded-mode config; use \`portcullis serve --config\``, 2);
    const unsafe = values['unsafe-egress-allow'] ?? [];
    if (unsafe.length > 0) config.unsafe_egress_allow = [...config.unsafe_egress_allow, ...unsafe];
    await startGate(config);
    if (layout.created) process.stderr.write(`created ${dir} (keys, config, operator credential ${layout.credentialPath})\n`);
    if (values['print-first-call'] || layout.created) process.stderr.write(firstCallHelp(dir));
    return -1; // keep running until a signal
  },
};

const serveCommand: Command = {
  name: 'serve',
  summary: 'Run the gate in production mode (Redis + PostgreSQL from the config file).',
  usage: 'portcullis serve --config FILE [--unsafe-egress-allow CIDR]...',
  async run(argv) {
    const { values } = parse(argv, {
      config: { type: 'string' },
      'unsafe-egress-allow': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h', default: false },
    }, false);
    const file = values.config ?? process.env.PORTCULLIS_CONFIG;
    if (!file) throw new CliError('serve needs --config FILE (or PORTCULLIS_CONFIG)', 2);
    const config = loadConfigFile(resolve(file));
    const unsafe = values['unsafe-egress-allow'] ?? [];
    if (unsafe.length > 0) {
      if (!config.unsafe_dev) throw new CliError('--unsafe-egress-allow is refused by `serve` unless the config says unsafe_dev = true', 2);
      config.unsafe_egress_allow = [...config.unsafe_egress_allow, ...unsafe];
    }
    await startGate(config);
    return -1;
  },
};

const commands: Command[] = [upCommand, serveCommand, ...coreCommands, ...extraCommands];

function help(): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return [
    `portcullis ${VERSION} — a gate for AI agents' side effects`,
    '',
    'Usage: portcullis <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'Operator commands find the gate with --state-dir DIR (as `up` lays it out), or',
    '--admin-socket PATH and --credential FILE, or PORTCULLIS_STATE_DIR. --json prints the gate\'s JSON.',
    'Run `portcullis <command> --help` for a command\'s options.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`);
    return 0;
  }
  if (name === '--version' || name === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`unknown command ${JSON.stringify(name)}; known: ${commands.map((c) => c.name).join(', ')}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${cmd.summary}\n\nUsage: ${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof CliError) {
      process.stderr.write(`portcullis ${name}: ${e.message}\n`);
      return e.exitCode;
    }
    if (e instanceof ConfigError || e instanceof StartupError) {
      process.stderr.write(`portcullis ${name}: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`portcullis ${name}: ${(e as Error).stack ?? String(e)}\n`);
    return 1;
  }
}

const code = await main(process.argv.slice(2));
if (code >= 0) process.exitCode = code;
