// Append latency and throughput of the ledger on SQLite (WAL, synchronous=FULL) and PostgreSQL
// (throwaway server, fsync switched ON for the measurement). Not a test: run it by hand,
//   node --import tsx test/ledger/bench/append-latency.ts [events]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { openKeystore } from '../../../src/keys/index.ts';
import { openDatabase, openLedger, buildReceipt, type DatabaseConfig, type Ledger } from '../../../src/ledger/index.ts';
import { startPostgres, findPgBin } from '../../helpers/services.ts';
import { makeGrant, receiptInput } from '../helpers.ts';

const N = Number(process.argv[2] ?? 2000);
const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
const keys = await openKeystore({ dir: join(dir, 'keys') });

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const fmt = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;

async function sequential(ledger: Ledger, n: number): Promise<number[]> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await ledger.append({ type: 'execute', decision: 'allow', principal: 'agent-1', trace_id: `trc_${i}`, detail: { i, duration_ms: 12 } });
    lat.push(performance.now() - t0);
  }
  return lat;
}

async function concurrent(ledger: Ledger, n: number, inFlight: number): Promise<{ lat: number[]; perSec: number }> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < n) {
      const i = next++;
      const s = performance.now();
      await ledger.append({ type: 'execute', decision: 'allow', principal: 'agent-1', detail: { i } });
      lat.push(performance.now() - s);
    }
  }));
  return { lat, perSec: n / ((performance.now() - t0) / 1000) };
}

async function executePath(ledger: Ledger, n: number): Promise<number[]> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const grant = makeGrant(keys);
    const t0 = performance.now();
    const { intent_id } = await ledger.recordIntent({ grant });
    const receipt = buildReceipt(receiptInput(grant), keys.receipt);
    await ledger.finalize({ intentId: intent_id, receipt, auditEvent: { type: 'execute', decision: 'allow' } });
    lat.push(performance.now() - t0);
  }
  return lat;
}

async function run(name: string, config: () => Promise<DatabaseConfig>): Promise<void> {
  for (const groupCommit of [true, false]) {
    const database = await openDatabase(await config());
    const ledger = await openLedger({ database, keys, groupCommit });
    await sequential(ledger, 200); // warm-up
    const seq = await sequential(ledger, N);
    const c16 = await concurrent(ledger, N, 16);
    const ex = await executePath(ledger, Math.min(N, 500));
    const v0 = performance.now();
    const v = await ledger.verify();
    const verifyMs = performance.now() - v0;
    console.log(`${name} group commit ${groupCommit ? 'on ' : 'off'} | append c=1 p50 ${fmt(pct(seq, 50))} p99 ${fmt(pct(seq, 99))}`
      + ` | c=16 ${c16.perSec.toFixed(0)}/s p50 ${fmt(pct(c16.lat, 50))} p99 ${fmt(pct(c16.lat, 99))}`
      + ` | intent+finalize p50 ${fmt(pct(ex, 50))} | verify ${v.events_checked} events ${verifyMs.toFixed(0)} ms (${v.intact ? 'intact' : 'BROKEN'})`);
    await ledger.close();
    await database.close();
  }
}

let n = 0;
await run('sqlite  ', async () => ({ kind: 'sqlite', path: join(dir, `bench-${n++}.db`) }));
if (findPgBin('initdb')) {
  const server = await startPostgres();
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  // The harness runs fsync=off; durability is what we measure, so turn it on (a reloadable setting).
  await admin.query('alter system set fsync = on');
  await admin.query('alter system set synchronous_commit = on');
  await admin.query('select pg_reload_conf()');
  const dbs: string[] = [];
  await run('postgres', async () => {
    const name = `bench_${dbs.length}`;
    dbs.push(name);
    await admin.query(`create database ${name}`);
    return { kind: 'postgres', connectionString: server.url.replace(`/${server.database}?`, `/${name}?`) };
  });
  const fsync = await admin.query('show fsync');
  console.log(`(postgres fsync=${fsync.rows[0].fsync})`);
  await admin.end();
  await server.stop();
}
rmSync(dir, { recursive: true, force: true });
