// CPU per ledger operation on the path of one allowed execute, embedded SQLite (WAL,
// synchronous=FULL), sequential: sign a grant, record its intent, build the receipt, finalize, and
// a deny's audit append. Not a test: run it by hand (docs/benchmarks.md quotes its figures),
//   node --import tsx test/ledger/bench/execute-ops.ts [iterations]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openKeystore } from '../../../src/keys/index.ts';
import { openDatabase, openLedger, buildReceipt, signGrant, newGrantId } from '../../../src/ledger/index.ts';
import { grantClaims, receiptInput } from '../helpers.ts';

const N = Number(process.argv[2] ?? 2000);
const dir = mkdtempSync(join(tmpdir(), 'portcullis-ledger-ops-'));
try {
  const keys = await openKeystore({ dir: join(dir, 'keys') });
  const db = await openDatabase({ kind: 'sqlite', path: join(dir, 'ledger.db') });
  const ledger = await openLedger({ database: db, keys });
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const one = async (): Promise<number[]> => {
    const t = [cpuMs()];
    const now = Date.now();
    const grant = signGrant({ ...grantClaims(), grant_id: newGrantId(), issued_at: new Date(now).toISOString(), expires_at: new Date(now + 60_000).toISOString() }, keys.grant);
    t.push(cpuMs());
    const { intent_id } = await ledger.recordIntent({ grant });
    t.push(cpuMs());
    const receipt = buildReceipt(receiptInput(grant), keys.receipt);
    t.push(cpuMs());
    await ledger.finalize({
      intentId: intent_id, receipt,
      auditEvent: { type: 'execute', decision: 'allow', reason_code: 'unverifiable_declared', detail: { receipt_id: receipt.receipt_id, grant_id: grant.grant_id, request_hash: grant.request_hash, duration_ms: 1, fuel_consumed: 1000, io_calls: 0 } },
    });
    t.push(cpuMs());
    await ledger.append({ type: 'execute', decision: 'deny', principal: 'agent', trace_id: 'trc_x', action_id: 'http_post', session_id: 'ses_1', reason_code: 'policy_denied', detail: { status: 403, request_hash: grant.request_hash, deny_reason: 'not granted', deny_reason_code: 'acl', policy_version: 'v1' } });
    t.push(cpuMs());
    return t.slice(1).map((x, i) => x - t[i]!);
  };
  for (let i = 0; i < Math.min(1500, N); i++) await one();
  const acc = [0, 0, 0, 0, 0];
  for (let i = 0; i < N; i++) (await one()).forEach((v, j) => (acc[j]! += v));
  const names = ['signGrant', 'recordIntent', 'buildReceipt', 'finalize', 'append (deny)'];
  console.log(`ledger operations, embedded SQLite, ${N} sequential executes, CPU per operation:`);
  for (const [j, name] of names.entries()) console.log(`  ${name.padEnd(14)} ${((acc[j]! / N) * 1000).toFixed(0).padStart(5)} µs`);
  await ledger.close();
  await db.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
