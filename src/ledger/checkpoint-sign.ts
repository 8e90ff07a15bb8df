// Computing the next signed checkpoint: re-verify the chain segment since the latest checkpoint
// (whose own signature is checked first), then sign (head seq, head hash, count) and store it.
// One function for both places it runs: the gate's thread (PostgreSQL, or SQLite without a writer
// thread), and the embedded ledger's checkpoint thread (src/ledger/writer-thread.ts), where its
// ≈ 10 ms per 100 events never stall the event loop.
import type { Kysely } from 'kysely';
import { GateError } from '../errors.ts';
import type { SigningKey } from '../keys/keystore.ts';
import type { PublicKeySet } from '../keys/key-set.ts';
import { ChainVerifier, GENESIS_HASH, parseCheckpoint, signCheckpoint, verifyCheckpointSignature } from './chain.ts';
import type { AuditEventsTable, LedgerTables } from './schema.ts';
import type { Checkpoint } from './types.ts';

/** The key material a checkpoint needs: the signing key (only `kid` and `sign` are used) and every historical checkpoint key. */
export interface CheckpointKeys {
  signing: Pick<SigningKey, 'kid' | 'sign'>;
  verify: PublicKeySet;
}

export function rowToEvent(r: AuditEventsTable): unknown {
  let detail: unknown = null;
  if (r.detail !== null) {
    try {
      detail = JSON.parse(r.detail);
    } catch {
      detail = undefined; // parseEvent refuses it: malformed_event
    }
  }
  return { ...r, seq: Number(r.seq), detail };
}

/**
 * Signs and stores a checkpoint at the current head, after verifying the segment since the latest
 * one; null when there is nothing new. Refusals are `ledger_unavailable` GateErrors; database
 * errors are thrown as they are. `page` rows are verified at a time, `pause` awaited between pages.
 */
export async function signNextCheckpoint(
  db: Kysely<LedgerTables>,
  keys: CheckpointKeys,
  ts: string,
  opts: { page: number; pause?: () => Promise<void> },
): Promise<Checkpoint | null> {
  const broken = (msg: string) => new GateError('ledger_unavailable', `checkpoint refused: ${msg}`);
  const head = await db.selectFrom('audit_events').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
  if (!head) return null;
  const headSeq = Number(head.seq);
  const lastRow = await db.selectFrom('checkpoints').selectAll().orderBy('seq', 'desc').limit(1).executeTakeFirst();
  const last = lastRow ? parseCheckpoint({ ...lastRow, seq: Number(lastRow.seq), count: Number(lastRow.count) }) : undefined;
  if (lastRow && !last) throw broken('latest checkpoint is malformed');
  if (last && last.seq > headSeq) throw broken('chain is shorter than the latest checkpoint');
  if (last && last.seq === headSeq) return null;
  let start = { seq: 0, hash: GENESIS_HASH };
  if (last) {
    if (verifyCheckpointSignature(last, keys.verify) !== 'verified') throw broken('latest checkpoint does not verify');
    start = { seq: last.seq, hash: last.head_hash };
    const at = await db.selectFrom('audit_events').select('hash').where('seq', '=', last.seq).executeTakeFirst();
    if (!at || at.hash !== last.head_hash) throw broken('chain disagrees with the latest checkpoint');
  }
  const verifier = new ChainVerifier([], keys.verify, null, start);
  for (let after = start.seq; after < headSeq;) {
    const rows = await db.selectFrom('audit_events').selectAll().where('seq', '>', after).where('seq', '<=', headSeq)
      .orderBy('seq').limit(opts.page).execute();
    if (rows.length === 0) break;
    for (const r of rows) if (!verifier.push(rowToEvent(r))) break;
    if (verifier.broken) break;
    after = Number(rows[rows.length - 1]!.seq);
    if (after < headSeq && opts.pause) await opts.pause();
  }
  const seg = verifier.finish();
  if (!seg.intact || seg.head?.seq !== headSeq || seg.head.hash !== head.hash) throw broken(`chain does not verify (${seg.reason ?? 'short'})`);
  const cp = signCheckpoint({ seq: headSeq, head_hash: head.hash, count: headSeq, ts }, keys.signing as SigningKey);
  await db.insertInto('checkpoints').values(cp).onConflict((oc) => oc.column('seq').doNothing()).execute();
  const stored = await db.selectFrom('checkpoints').selectAll().where('seq', '=', headSeq).executeTakeFirstOrThrow();
  const result: Checkpoint = { ...stored, seq: Number(stored.seq), count: Number(stored.count) };
  if (result.head_hash !== head.hash) throw broken('a conflicting checkpoint exists at this seq');
  return result;
}
