// Throwaway servers outlive nothing: a test process that is killed (the runner's file timeout)
// takes its Redis and PostgreSQL with it, through the reaper in test/helpers/services.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { serviceSkipReason } from './services.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVICES = fileURLToPath(new URL('./services.ts', import.meta.url));

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const skip = serviceSkipReason('redis') ?? serviceSkipReason('postgres');

test('a killed test process takes its Redis and PostgreSQL servers with it', { skip, timeout: 120_000 }, async () => {
  const script = `
    import { startRedis, startPostgres } from ${JSON.stringify(SERVICES)};
    const r = await startRedis();
    const p = await startPostgres();
    console.log(JSON.stringify({ redisSocket: r.socketPath, pgDir: p.socketDir }));
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', './src/loader/register.mjs', '--input-type=module', '-e', script], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  for (let i = 0; i < 600 && !out.includes('\n'); i++) await delay(100);
  const started = JSON.parse(out.trim()) as { redisSocket: string; pgDir: string };
  const pgPid = Number(readFileSync(join(started.pgDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  assert.ok(alive(pgPid), 'postgres runs');
  assert.ok(existsSync(started.redisSocket), 'redis runs');

  child.kill('SIGKILL');
  let gone = false;
  for (let i = 0; i < 200 && !gone; i++) {
    await delay(100);
    gone = !alive(pgPid) && !existsSync(started.redisSocket) && !existsSync(started.pgDir);
  }
  assert.ok(gone, `left behind: postgres ${alive(pgPid) ? 'running' : 'stopped'}, redis socket ${existsSync(started.redisSocket)}, pg dir ${existsSync(started.pgDir)}`);
});
