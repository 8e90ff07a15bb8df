// Ledger write jobs as plain data, and the one function that runs a job inside a chain
// transaction. The same code runs in the gate's thread (PostgreSQL, or SQLite without a writer
// thread) and in the SQLite writer thread (src/ledger/writer-thread.ts): a job crosses the thread
// boundary as a structured-cloneable object, its outcome comes back the same way.
import { GateError, type GateErrorCode } from '../errors.ts';
import { hashEventWithDetailText } from './chain.ts';
import type { ChainTx } from './chain-tx.ts';
import type { AuditEventsTable, ExecutionIntentsTable, ReceiptsTable } from './schema.ts';
import type { AppendResult, AuditEvent } from './types.ts';
import type { Receipt } from './receipts.ts';

/**
 * An event validated and canonicalized before it reaches a transaction: its detail travels only as
 * its canonical text (what is stored and hashed), never as an object to clone and walk again.
 */
export type PreparedEvent = Omit<AuditEvent, 'seq' | 'ts' | 'prev_hash' | 'hash' | 'detail'> & { detailText: string | null };

/** The receipt fields a finalization checks against its intent. */
export type ReceiptBinding = Pick<Receipt,
  'receipt_id' | 'grant_id' | 'trace_id' | 'action_id' | 'action_version' | 'principal' | 'session_id'
  | 'request_hash' | 'plan_hash' | 'provider_module_digest'>;

/**
 * One write. `at` is the ISO time the gate took when it accepted the write (its clock, checked
 * there); the chain never lets `ts` go backwards, whatever order writes commit in.
 */
export type JobSpec =
  | { kind: 'append'; at: string; event: PreparedEvent }
  | { kind: 'intent'; at: string; intent: ExecutionIntentsTable; event: PreparedEvent | null }
  | { kind: 'finalize'; at: string; intentId: string; receipt: ReceiptBinding; receiptJson: string; event: PreparedEvent }
  /** recordIntent + finalize in one (Ledger.complete): the intent row arrives already resolved. */
  | { kind: 'complete'; at: string; intent: ExecutionIntentsTable; receipt: ReceiptBinding; receiptJson: string; event: PreparedEvent };

export interface RecordedIntent {
  intent_id: string;
  created_at: string;
  event: AppendResult | null;
}

export interface Finalized {
  receipt_id: string;
  event: AppendResult;
}

export interface Completed extends Finalized {
  intent_id: string;
}

/** A job's refusal, thrown before the job wrote anything: only that job fails, the batch goes on. */
export class Refusal {
  constructor(readonly error: GateError) {}
}

/** Assigns seq/ts/prev_hash/hash in memory for the events of one transaction. */
export class ChainCursor {
  readonly rows: AuditEventsTable[] = [];
  constructor(private seq: number, private hash: string, private ts: string | null) {}

  add(p: PreparedEvent, at: string): AppendResult {
    const seq = this.seq + 1;
    // Timestamps never go backwards along the chain (clock skew between hosts or a stepped clock).
    const ts = this.ts !== null && at < this.ts ? this.ts : at;
    const ev = {
      seq, event_id: p.event_id, ts, type: p.type, decision: p.decision, trace_id: p.trace_id, action_id: p.action_id,
      principal: p.principal, session_id: p.session_id, operator: p.operator, reason_code: p.reason_code,
      prev_hash: this.hash,
    };
    const hash = hashEventWithDetailText(ev, p.detailText);
    this.rows.push({ ...ev, detail: p.detailText, hash });
    this.seq = seq;
    this.hash = hash;
    this.ts = ts;
    return { event_id: p.event_id, seq, hash };
  }
}

const finalizeRefusal = (msg: string, cause?: unknown) =>
  new Refusal(new GateError('evidence_persistence_failed', `finalize: ${msg}`, cause === undefined ? {} : { cause }));
const completeRefusal = (msg: string, cause?: unknown) =>
  new Refusal(new GateError('internal_error', `complete: ${msg}`, cause === undefined ? {} : { cause }));

/**
 * Checks a receipt against the intent it resolves (its stored grant): the first field that
 * differs, or undefined. Throws `refusal` when the stored grant is unreadable.
 */
function receiptMismatch(receipt: ReceiptBinding, intent: ExecutionIntentsTable, refusal: (msg: string, cause?: unknown) => Refusal): string | undefined {
  let moduleDigest: unknown;
  try {
    moduleDigest = (JSON.parse(intent.grant_json) as { module_digest?: unknown }).module_digest;
  } catch (err) {
    throw refusal('stored grant is unreadable', err);
  }
  return ([
    ['grant_id', intent.grant_id], ['trace_id', intent.trace_id], ['action_id', intent.action_id],
    ['action_version', intent.action_version], ['principal', intent.principal], ['session_id', intent.session_id],
    ['request_hash', intent.request_hash], ['plan_hash', intent.plan_hash], ['provider_module_digest', moduleDigest],
  ] as const).find(([k, v]) => receipt[k] !== v)?.[0];
}

function receiptRow(intentId: string, receipt: ReceiptBinding, receiptJson: string, eventSeq: number, at: string): ReceiptsTable {
  return {
    receipt_id: receipt.receipt_id, intent_id: intentId, grant_id: receipt.grant_id, trace_id: receipt.trace_id,
    action_id: receipt.action_id, principal: receipt.principal, session_id: receipt.session_id,
    event_seq: eventSeq, receipt_json: receiptJson, created_at: at,
  };
}

/** Runs one job in the open transaction `tx`. Throws {@link Refusal} (nothing written) or a database error. */
export async function runJob(tx: ChainTx, cursor: ChainCursor, job: JobSpec): Promise<unknown> {
  switch (job.kind) {
    case 'append':
      return cursor.add(job.event, job.at);
    case 'intent': {
      const i = job.intent;
      const used = await tx.intentConflict(i.grant_id, i.intent_id);
      if (used) throw new Refusal(new GateError('internal_error', used.grant_id === i.grant_id ? 'grant already consumed' : 'intent_id exists'));
      await tx.insertIntent(i);
      return { intent_id: i.intent_id, created_at: i.created_at, event: job.event ? cursor.add(job.event, job.at) : null } satisfies RecordedIntent;
    }
    case 'finalize': {
      const { intentId, receipt } = job;
      const intent = await tx.intent(intentId);
      if (!intent) throw finalizeRefusal('unknown intent');
      if (intent.resolved_at !== null) throw finalizeRefusal('intent already resolved');
      const mismatch = receiptMismatch(receipt, intent, finalizeRefusal);
      if (mismatch) throw finalizeRefusal(`receipt ${mismatch} does not match the intent`);
      if (await tx.receiptExists(receipt.receipt_id)) throw finalizeRefusal('receipt_id exists');
      // Writes start here: nothing below may throw a Refusal.
      if ((await tx.resolveIntent(intentId, job.at, receipt.receipt_id)) !== 1) throw new Error('intent changed under the chain lock');
      const event = cursor.add(job.event, job.at);
      await tx.insertReceipt(receiptRow(intentId, receipt, job.receiptJson, event.seq, job.at));
      return { receipt_id: receipt.receipt_id, event } satisfies Finalized;
    }
    case 'complete': {
      const { intent, receipt } = job;
      const used = await tx.intentConflict(intent.grant_id, intent.intent_id);
      if (used) throw completeRefusal(used.grant_id === intent.grant_id ? 'grant already consumed' : 'intent_id exists');
      if (intent.resolved_at === null || intent.receipt_id !== receipt.receipt_id) throw completeRefusal('intent row is not resolved by this receipt');
      const mismatch = receiptMismatch(receipt, intent, completeRefusal);
      if (mismatch) throw completeRefusal(`receipt ${mismatch} does not match the grant`);
      if (await tx.receiptExists(receipt.receipt_id)) throw completeRefusal('receipt_id exists');
      // Writes start here: nothing below may throw a Refusal.
      await tx.insertIntent(intent);
      const event = cursor.add(job.event, job.at);
      await tx.insertReceipt(receiptRow(intent.intent_id, receipt, job.receiptJson, event.seq, job.at));
      return { intent_id: intent.intent_id, receipt_id: receipt.receipt_id, event } satisfies Completed;
    }
  }
}

/**
 * Whether a batch may be acknowledged before its fsync under `receipt_fsync = "after_reply"`: it
 * carries receipts only (finalizations, and one-phase runs that could have no effect). A batch with
 * an intent (an effect may follow it) or any other event is always fsynced first.
 */
export function receiptsOnly(jobs: readonly JobSpec[]): boolean {
  return jobs.every((j) => j.kind === 'finalize' || j.kind === 'complete');
}

/** The outcome of one job after its batch, as it crosses a thread boundary. */
export type JobOutcome =
  | { ok: true; value: unknown }
  | { ok: false; refusal: { code: GateErrorCode; message: string } };

/**
 * Runs a batch of jobs in one transaction opened by `transaction` (which commits or rolls back).
 * Returns each job's outcome and the number of events committed; a database failure throws
 * (the whole batch failed, or its COMMIT outcome is unknown).
 */
export async function runBatch(
  transaction: <T>(fn: (tx: ChainTx) => Promise<T>) => Promise<T>,
  genesis: string,
  jobs: readonly JobSpec[],
): Promise<{ outcomes: JobOutcome[]; events: number }> {
  return transaction(async (tx) => {
    const head = await tx.head();
    const cursor = new ChainCursor(head?.seq ?? 0, head?.hash ?? genesis, head?.ts ?? null);
    const outcomes: JobOutcome[] = [];
    for (const job of jobs) {
      try {
        outcomes.push({ ok: true, value: await runJob(tx, cursor, job) });
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        outcomes.push({ ok: false, refusal: { code: err.error.code, message: err.error.message } });
      }
    }
    await tx.insertEvents(cursor.rows);
    return { outcomes, events: cursor.rows.length };
  });
}
