// The CLI contract tooling depends on: `portcullis --help`, `up --state-dir DIR` (layout, modes,
// key reuse, clean SIGTERM shutdown, live-socket refusal), operator commands and `serve` refusals.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { unixTransport } from '../../src/client/transport.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'src', 'cli', 'bin.js');
const base = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
after(() => rmSync(base, { recursive: true, force: true }));

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
}

async function up(dir: string, extra: string[] = []): Promise<{ proc: ChildProcess; log: () => string }> {
  let out = '';
  const proc = spawn(process.execPath, [BIN, 'up', '--state-dir', dir, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { out += d; });
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`up exited ${proc.exitCode}: ${out}`);
    if (/listening: client/.test(out)) return { proc, log: () => out };
    await delay(100);
  }
  proc.kill('SIGKILL');
  throw new Error(`up did not start: ${out}`);
}

function exited(proc: ChildProcess): Promise<number | null> {
  return proc.exitCode !== null ? Promise.resolve(proc.exitCode) : new Promise((r) => proc.once('exit', (c) => r(c)));
}

test('portcullis --help lists the commands', () => {
  const r = cli(['--help']);
  assert.equal(r.status, 0, r.stderr);
  for (const c of ['up', 'serve', 'status', 'drain', 'revoke-all', 'epoch', 'policy', 'approvals', 'audit', 'secrets']) assert.match(r.stdout, new RegExp(`\\n  ${c} `));
});

test('unknown command and missing gate give clear errors and non-zero exits', () => {
  const r = cli(['frobnicate']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command/);
  const s = cli(['status'], { PORTCULLIS_STATE_DIR: '' });
  assert.notEqual(s.status, 0);
  assert.match(s.stderr, /--state-dir/);
});

test('up: creates DIR 0700 with keys, config, operator.json 0600; sockets 0660/0600; operator commands; SIGTERM removes sockets; keys reused', async () => {
  const dir = join(base, 'state');
  const first = await up(dir);
  try {
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, 'operator.json')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'gate.sock')).mode & 0o777, 0o660);
    assert.equal(statSync(join(dir, 'gate-admin.sock')).mode & 0o777, 0o600);
    const cred = JSON.parse(readFileSync(join(dir, 'operator.json'), 'utf8'));
    assert.deepEqual(Object.keys(cred).sort(), ['api_key', 'dpop_jwk', 'name']);
    assert.equal(cred.dpop_jwk.kty, 'EC');
    assert.equal(cred.dpop_jwk.crv, 'P-256');
    assert.equal(typeof cred.dpop_jwk.d, 'string');
    const t = unixTransport(join(dir, 'gate.sock'));
    assert.deepEqual((await t.send('GET', '/healthz', {})).body, { status: 'ok' });
    const jwks1 = JSON.stringify((await t.send('GET', '/.well-known/jwks.json', {})).body);
    t.close();
    const st = cli(['status', '--state-dir', dir, '--json']);
    assert.equal(st.status, 0, st.stderr);
    assert.equal(JSON.parse(st.stdout).status, 'ok');
    // Text form: one line per WAL, healthy.
    const text = cli(['status', '--state-dir', dir]);
    assert.equal(text.status, 0, text.stderr);
    for (const db of ['ledger', 'state']) assert.match(text.stdout, new RegExp(`^wal\\.${db}\\s+[\\d.]+ MiB, checkpointer up, .*: ok$`, 'm'), text.stdout);
    const ep = cli(['epoch', '--state-dir', dir]);
    assert.match(ep.stdout, /current epoch 0/);
    const viaEnv = cli(['epoch', '--json'], { PORTCULLIS_STATE_DIR: dir });
    assert.deepEqual(JSON.parse(viaEnv.stdout), { current_epoch: 0 });
    const explicit = cli(['revoke-all', '--admin-socket', join(dir, 'gate-admin.sock'), '--credential', join(dir, 'operator.json')]);
    assert.match(explicit.stdout, /0 -> 1/);
    // A second gate on the same live sockets is refused.
    const second = spawnSync(process.execPath, [BIN, 'up', '--state-dir', dir], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(second.status, 2);
    assert.match(second.stderr, /live: another gate is already listening/);
    first.proc.kill('SIGTERM');
    assert.equal(await exited(first.proc), 0);
    assert.equal(existsSync(join(dir, 'gate.sock')), false);
    assert.equal(existsSync(join(dir, 'gate-admin.sock')), false);
    // Second run: same keys, same epoch.
    const again = await up(dir);
    try {
      const t2 = unixTransport(join(dir, 'gate.sock'));
      assert.equal(JSON.stringify((await t2.send('GET', '/.well-known/jwks.json', {})).body), jwks1);
      t2.close();
      assert.deepEqual(JSON.parse(cli(['epoch', '--json', '--state-dir', dir]).stdout), { current_epoch: 1 });
      const d = cli(['drain', '--state-dir', dir]);
      assert.match(d.stdout, /draining/);
    } finally {
      again.proc.kill('SIGINT');
      assert.equal(await exited(again.proc), 0);
    }
  } finally {
    if (first.proc.exitCode === null) first.proc.kill('SIGKILL');
  }
});

test('up: a stale socket file is removed; a non-socket file is refused', async () => {
  const dir = join(base, 'stale');
  const g = await up(dir);
  g.proc.kill('SIGKILL');
  await exited(g.proc);
  assert.equal(existsSync(join(dir, 'gate.sock')), true, 'SIGKILL leaves the socket behind');
  const g2 = await up(dir);
  g2.proc.kill('SIGTERM');
  assert.equal(await exited(g2.proc), 0);
  writeFileSync(join(dir, 'gate.sock'), 'not a socket');
  const r = spawnSync(process.execPath, [BIN, 'up', '--state-dir', dir], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /is not a socket/);
});

test('serve refuses --unsafe-egress-allow without unsafe_dev, and a bad config names the key', () => {
  const cfg = join(base, 'prod.toml');
  writeFileSync(cfg, `mode = "production"\nstate_dir = "${join(base, 'prod')}"\nredis_url = "redis+unix:///nonexistent.sock"\ndatabase_url = "postgresql://x@/y?host=/nonexistent"\n[identity]\nprovider = "peercred"\n[identity.map.1000]\nprincipal = "agent"\n`);
  const r = cli(['serve', '--config', cfg, '--unsafe-egress-allow', '127.0.0.0/8']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unsafe_dev/);
  writeFileSync(cfg, 'mode = "production"\nstate_dir = "/tmp/x"\nlease_ttl_seconds = 99999\n');
  const bad = cli(['serve', '--config', cfg]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /lease_ttl_seconds/);
  writeFileSync(cfg, 'mode = "production"\nstate_dir = "/tmp/x"\nbogus_key = 1\n');
  assert.match(cli(['serve', '--config', cfg]).stderr, /bogus_key: unknown key/);
});
