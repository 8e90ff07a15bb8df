// The evidence ledger: one hash chain of audit events, execution intents recorded before dispatch
// (or, for a run that could have no effect, one-phase with its receipt), receipts finalized with
// their audit event in one transaction, signed checkpoints. Every write
// holds the chain lock (PostgreSQL advisory lock / SQLite IMMEDIATE), so any number of gate
// processes on one database keep one unbroken sequence. Concurrent writes are group-committed.
import type { WalHealth } from '../stores/wal-checkpointer.ts';
import { uuidv7 } from '../ids.ts';
import { publish } from '../observe.ts';
import { GateError, type GateErrorCode } from '../errors.ts';
import { systemClock, type AuditEventInput, type AuditSink, type Clock } from '../contracts.ts';
import type { SigningKey } from '../keys/keystore.ts';
import type { PublicKeySet } from '../keys/key-set.ts';
import { canonicalJson, sha256Hex, toJsonValue, type JsonValue } from './canonical.ts';
import { ChainVerifier, GENESIS_HASH, type TrustedHead } from './chain.ts';
import { ADVISORY_LOCK, CommitError, type LedgerDatabase } from './db.ts';
import { rowToEvent, signNextCheckpoint } from './checkpoint-sign.ts';
import { signedText } from './signed-here.ts';
import { KyselyChainTx, SqliteChainTx, type ChainTx } from './chain-tx.ts';
import { receiptsOnly, runBatch, type Completed, type Finalized, type JobOutcome, type JobSpec, type PreparedEvent, type ReceiptBinding, type RecordedIntent } from './jobs.ts';
import { WriterThread } from './writer-thread.ts';
import { WalSync } from './wal-sync.ts';
import { grantProblem, verifyGrant, type SignedGrant } from './grants.ts';
import { RECEIPT_ID, verifyReceipt, type Receipt } from './receipts.ts';
import { LEDGER_MIGRATIONS, type ExecutionIntentsTable } from './schema.ts';
import { DECISIONS, type AppendResult, type AuditEvent, type Checkpoint, type EventFilters, type VerifyResult } from './types.ts';

/** The keys the ledger needs; a Keystore satisfies this. */
export interface LedgerKeys {
  readonly checkpoint: SigningKey;
  checkpointKeys(): PublicKeySet;
  receiptKeys(): PublicKeySet;
  grantKeys(): PublicKeySet;
}

export interface LedgerOptions {
  database: LedgerDatabase;
  keys: LedgerKeys;
  clock?: Clock;
  /** UUID v7 generator (ids are `evt_`, `int_` + uuid). */
  uuid?: () => string;
  /**
   * Group commit: writes that arrive while a transaction is in flight are batched into the next
   * one (default true, at most 64 jobs per transaction). `false` commits every write alone.
   */
  groupCommit?: boolean | { maxBatch: number };
  /**
   * Embedded SQLite with a writer thread: a batch runs on this thread's own connection instead
   * when this returns true (the gate: its request is the only one in flight) and no ledger thread
   * has a request in flight. The event loop would only wait for the thread meanwhile, and the two
   * thread hops cost more than they save (docs/ledger.md, "Where a batch runs").
   */
  inlineWhen?: () => boolean;
}

/** An execution intent: a consumed grant, recorded before dispatch. */
export type ExecutionIntent = Omit<ExecutionIntentsTable, 'grant_json' | 'grant_signature'> & { grant: SignedGrant };

export interface RecordIntentInput {
  /** Defaults to `int_<uuidv7>`. */
  intent_id?: string;
  grant: SignedGrant;
}


export interface FinalizeInput {
  intentId: string;
  receipt: Receipt;
  auditEvent: AuditEventInput;
}

export interface CompleteInput extends RecordIntentInput {
  receipt: Receipt;
  auditEvent: AuditEventInput;
}


const MAX_FIELD = 512;
const MAX_TYPE = 128;
const MAX_DETAIL_CHARS = 256 * 1024;
const VERIFY_PAGE = 1000;
/**
 * Without a checkpoint thread (PostgreSQL, or SQLite in tools and tests) a checkpoint re-verifies
 * its segment on the event loop: in pages this small, yielding between them, so requests are
 * served in between instead of waiting for the whole segment.
 */
const CHECKPOINT_PAGE = 32;
const DEFAULT_MAX_BATCH = 64;
const INTENT_ID = /^int_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

interface Job {
  /** Code for a failure of the database (not a refusal). */
  failCode: GateErrorCode;
  job: JobSpec;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

function isoNow(clock: Clock): string {
  const ms = clock.now();
  const d = new Date(ms);
  if (!Number.isFinite(ms) || d.getUTCFullYear() < 1970 || d.getUTCFullYear() > 9999) throw new GateError('clock_error', 'clock out of range');
  return d.toISOString();
}

function field(name: string, v: unknown, max = MAX_FIELD): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v.length > max || v.includes('\u0000') || !v.isWellFormed()) {
    throw new TypeError(`audit event ${name} must be a string of at most ${max} characters without NUL`);
  }
  return v;
}

function toIso(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length > 64) throw new GateError('invalid_input', `${name} must be an ISO 8601 timestamp`);
  const ms = Date.parse(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(ms)) throw new GateError('invalid_input', `${name} must be an ISO 8601 timestamp`);
  const d = new Date(ms);
  if (d.getUTCFullYear() > 9999) throw new GateError('invalid_input', `${name} out of range`);
  return d.toISOString();
}

/**
 * The canonical text of a signed grant or receipt, its signature verified. A document this process
 * signed (deep-frozen since) is taken as is; anything else is serialized and verified in full.
 */
function verifiedText(
  doc: object,
  keys: PublicKeySet,
  verify: (doc: unknown, keys: PublicKeySet) => string,
  errors: { malformed(err: unknown): GateError; badSignature(status: string): GateError },
): string {
  const known = signedText(doc, keys);
  if (known !== undefined) return known;
  let text: string;
  try {
    text = canonicalJson(doc);
  } catch (err) {
    throw errors.malformed(err);
  }
  const status = verify(doc, keys);
  if (status !== 'verified') throw errors.badSignature(status);
  return text;
}

/**
 * A failed COMMIT (CommitError: it may have been applied) carries `outcome: 'unknown'` in its
 * extra, so a caller that must tell it from "nothing written" (the one-phase `complete`) can.
 */
function unknownOutcome(err: unknown): { extra?: { outcome: 'unknown' } } {
  return err instanceof CommitError ? { extra: { outcome: 'unknown' } } : {};
}

function dbError(code: GateErrorCode, err: unknown): GateError {
  if (err instanceof GateError) return err;
  return new GateError(code, 'ledger database failure', { cause: err, ...unknownOutcome(err) });
}

/**
 * The evidence ledger. Construct with {@link openLedger}. `append` returns the chained position;
 * {@link Ledger.auditSink} is the same append typed as the shared {@link AuditSink} contract.
 *
 * Errors: every database failure is `ledger_unavailable`, except in {@link finalize} which only
 * ever throws `evidence_persistence_failed` (it runs after the side effect happened). A malformed
 * audit event is `invalid_input`; a malformed or already consumed grant is `internal_error`.
 */
export class Ledger {
  readonly database: LedgerDatabase;
  readonly #keys: LedgerKeys;
  readonly #clock: Clock;
  readonly #uuid: () => string;
  readonly #maxBatch: number;
  readonly #queue: Job[] = [];
  #running = false;
  #draining: Promise<void> = Promise.resolve();
  #closed = false;
  #trusted: TrustedHead | null = null;
  #checkpointing: Promise<Checkpoint | null> | null = null;
  /** Embedded SQLite with a writer thread: where write batches run (else in this thread). */
  readonly #thread: WriterThread | undefined;
  readonly #listeners = new Set<(committedEvents: number) => void>();
  readonly #inlineWhen: (() => boolean) | undefined;
  /**
   * The WAL fsyncs that follow inline batches acknowledged before them, one after the other; a
   * batch answered after its own fsync waits for them all (a receipts-only batch need not).
   */
  #syncing: Promise<void> | null = null;
  #walSync: WalSync | undefined;
  #inlineBatches = 0;

  /** @internal use {@link openLedger}. */
  constructor(options: LedgerOptions) {
    this.database = options.database;
    this.#keys = options.keys;
    this.#clock = options.clock ?? systemClock;
    this.#uuid = options.uuid ?? uuidv7;
    const gc = options.groupCommit ?? true;
    this.#maxBatch = gc === false ? 1 : gc === true ? DEFAULT_MAX_BATCH : Math.max(1, Math.trunc(gc.maxBatch));
    const wt = this.database.writerThread;
    this.#inlineWhen = wt && this.database.hasRawSqlite ? options.inlineWhen : undefined;
    this.#thread = wt
      ? new WriterThread({
        ...wt,
        onError: (message) => {
          publish('audit_write_error', {});
          publish('error', { code: 'ledger_writer_failed', path: 'ledger', message });
        },
        onCheckpointError: (message) => publish('error', { code: 'ledger_wal_checkpoint_failed', path: 'ledger', message }),
      })
      : undefined;
    // Its threads hold their own connections: they stop when the database closes, closed ledger or not.
    if (this.#thread) {
      const thread = this.#thread;
      this.database.onClose(() => thread.close());
    }
  }

  /**
   * Why this ledger refuses every write until the process restarts (its writer thread's fsync
   * failed after an early reply), or undefined. The gate reports not ready while it is set.
   */
  get writerFailed(): string | undefined {
    return this.#thread?.failed;
  }

  /** The ledger file's WAL (embedded SQLite with a writer thread, once its checkpointer runs), else null. */
  walHealth(): WalHealth | null {
    return this.#thread?.walHealth() ?? null;
  }

  /**
   * Starts the WAL checkpointer thread now instead of with the first write (the gate does, so its
   * health is reported from start-up). No-op without a writer thread.
   */
  startWalCheckpointer(): void {
    this.#thread?.startCheckpointer();
  }

  /** @internal tests: how many batches ran on this thread's connection instead of the writer thread. */
  get inlineBatches(): number {
    return this.#inlineBatches;
  }

  /** This ledger as the shared AuditSink (`append` resolving to void) for admin routes and stages. */
  readonly auditSink: AuditSink = {
    append: async (event: AuditEventInput): Promise<void> => {
      await this.append(event);
    },
  };

  // ---------------------------------------------------------------- writes

  /** Appends one audit event to the chain; resolves once it is durably committed. */
  async append(event: AuditEventInput): Promise<AppendResult> {
    let prepared: PreparedEvent;
    try {
      prepared = this.#prepare(event, {});
    } catch (err) {
      throw err instanceof GateError ? err : new GateError('invalid_input', 'malformed audit event', { cause: err });
    }
    return this.#enqueue('ledger_unavailable', { kind: 'append', at: isoNow(this.#clock), event: prepared }) as Promise<AppendResult>;
  }

  /**
   * Records an execution intent and consumes its grant (UNIQUE grant_id) — with the optional audit
   * event — in one transaction, before any effect of the call (src/pipeline/stages/dispatch.ts:
   * before a provider that may do I/O is dispatched). The grant's signature is checked against the
   * grant keys; a grant already consumed, malformed or not verifying is refused (`internal_error`).
   */
  async recordIntent(input: RecordIntentInput, auditEvent?: AuditEventInput): Promise<RecordedIntent> {
    const { intent, grantJson } = this.#intentRow(input, 'recordIntent');
    const grant = input.grant;
    let prepared: PreparedEvent | null = null;
    try {
      if (auditEvent) {
        prepared = this.#prepare(auditEvent, {
          bind: { trace_id: grant.trace_id, action_id: grant.action_id, principal: grant.principal, session_id: grant.session_id },
          reserved: { intent_id: intent.intent_id, grant_id: grant.grant_id, grant_digest: `sha256:${sha256Hex(grantJson)}` },
        });
      }
    } catch (err) {
      throw err instanceof GateError ? err : new GateError('internal_error', 'recordIntent: malformed input', { cause: err });
    }
    return this.#enqueue('ledger_unavailable', { kind: 'intent', at: intent.created_at, event: prepared, intent }) as Promise<RecordedIntent>;
  }

  /**
   * Stores the signed receipt, appends the final audit event (its detail gains intent_id,
   * receipt_id and receipt_digest, binding the receipt into the chain) and resolves the intent —
   * all in one transaction, or nothing. The receipt must verify against the receipt keys and match
   * the intent's grant (grant, trace, action, version, digest, principal, session, request, plan).
   * Throws only `evidence_persistence_failed`.
   */
  async finalize(input: FinalizeInput): Promise<Finalized> {
    const fail = (msg: string, cause?: unknown) => new GateError('evidence_persistence_failed', `finalize: ${msg}`, { cause });
    const { intentId, receipt, auditEvent } = input ?? ({} as FinalizeInput);
    if (typeof intentId !== 'string' || !INTENT_ID.test(intentId)) throw fail('intentId must be int_<uuidv7>');
    const parts = this.#receiptParts(receipt, intentId, auditEvent, fail);
    return this.#enqueue('evidence_persistence_failed', { kind: 'finalize', intentId, ...parts }) as Promise<Finalized>;
  }

  /**
   * The one-phase form for a run that cannot have had an effect (a provider that may not do I/O,
   * src/pipeline/stages/dispatch.ts): the execution intent (consuming its grant), already resolved,
   * the receipt and the final audit event, in one transaction, made durable as a finalization is
   * (receipt_fsync: before the answer, or right after it).
   * The rows are the ones {@link recordIntent} + {@link finalize} would leave, with the same checks
   * (grant signature, unconsumed grant, receipt signature, receipt matching the grant). Nothing is
   * written before the run, so a crash during it leaves nothing, which is right: nothing happened.
   *
   * Errors: a refused grant or receipt is `internal_error`, a broken clock `clock_error` (nothing
   * written). A database failure is `ledger_unavailable`: nothing was recorded, unless its `extra`
   * says `outcome: 'unknown'` (the COMMIT itself failed, or the writer thread went with the batch
   * in flight): then the caller must find out (getReceipt) before it refunds or retries anything.
   */
  async complete(input: CompleteInput): Promise<Completed> {
    const { intent } = this.#intentRow(input, 'complete');
    const fail = (msg: string, cause?: unknown) => new GateError('internal_error', `complete: ${msg}`, { cause });
    const parts = this.#receiptParts(input.receipt, intent.intent_id, input.auditEvent, fail);
    const resolved: ExecutionIntentsTable = { ...intent, created_at: parts.at, resolved_at: parts.at, receipt_id: parts.receipt.receipt_id };
    return this.#enqueue('ledger_unavailable', { kind: 'complete', intent: resolved, ...parts }) as Promise<Completed>;
  }

  /**
   * The checks {@link recordIntent} and {@link complete} make on a grant (shape, signature with the
   * grant keys; a grant signed in this process is a memo hit), without writing anything: the
   * pipeline runs them before a one-phase run, whose grant is otherwise consumed only after it.
   * Throws `internal_error`; returns the grant's canonical text.
   */
  checkGrant(grant: SignedGrant, what = 'checkGrant'): string {
    const problem = grantProblem(grant, true);
    if (problem) throw new GateError('internal_error', `${what}: ${problem}`);
    return verifiedText(grant, this.#keys.grantKeys(), verifyGrant, {
      malformed: (err) => new GateError('internal_error', `${what}: malformed input`, { cause: err }),
      badSignature: (status) => new GateError('internal_error', `${what}: grant signature ${status}`),
    });
  }

  /** The intent row for a grant: its signature verified (or signed here), its id checked or minted. */
  #intentRow(input: RecordIntentInput, what: string): { intent: ExecutionIntentsTable; grantJson: string } {
    const grant = input?.grant;
    const grantJson = this.checkGrant(grant, what);
    const intentId = input.intent_id ?? `int_${this.#uuid()}`;
    if (!INTENT_ID.test(intentId)) throw new GateError('internal_error', `${what}: intent_id must be int_<uuidv7>`);
    const at = isoNow(this.#clock);
    return {
      grantJson,
      intent: {
        intent_id: intentId, trace_id: grant.trace_id, grant_id: grant.grant_id, grant_json: grantJson,
        grant_signature: grant.grant_signature, action_id: grant.action_id, action_version: grant.action_version,
        principal: grant.principal, session_id: grant.session_id, request_hash: grant.request_hash,
        plan_hash: grant.plan_hash, created_at: at, resolved_at: null, receipt_id: null,
      },
    };
  }

  /** A receipt's verified text, the fields checked against its intent, and its final audit event. */
  #receiptParts(
    receipt: Receipt, intentId: string, auditEvent: AuditEventInput, fail: (msg: string, cause?: unknown) => GateError,
  ): { at: string; receipt: ReceiptBinding; receiptJson: string; event: PreparedEvent } {
    if (typeof receipt !== 'object' || receipt === null || typeof receipt.receipt_id !== 'string' || !RECEIPT_ID.test(receipt.receipt_id)) {
      throw fail('receipt_id must be rcpt_<uuidv7>');
    }
    const receiptJson = verifiedText(receipt, this.#keys.receiptKeys(), verifyReceipt, {
      malformed: (err) => fail('malformed receipt or audit event', err),
      badSignature: (status) => fail(`receipt signature ${status}`),
    });
    let event: PreparedEvent;
    try {
      event = this.#prepare(auditEvent, {
        bind: { trace_id: receipt.trace_id, action_id: receipt.action_id, principal: receipt.principal, session_id: receipt.session_id },
        reserved: { intent_id: intentId, receipt_id: receipt.receipt_id, receipt_digest: `sha256:${sha256Hex(receiptJson)}` },
      });
    } catch (err) {
      throw fail('malformed receipt or audit event', err);
    }
    let at: string;
    try {
      at = isoNow(this.#clock);
    } catch (err) {
      throw fail('clock out of range', err);
    }
    const binding: ReceiptBinding = {
      receipt_id: receipt.receipt_id, grant_id: receipt.grant_id, trace_id: receipt.trace_id, action_id: receipt.action_id,
      action_version: receipt.action_version, principal: receipt.principal, session_id: receipt.session_id,
      request_hash: receipt.request_hash, plan_hash: receipt.plan_hash, provider_module_digest: receipt.provider_module_digest,
    };
    return { at, receipt: binding, receiptJson, event };
  }

  // ---------------------------------------------------------------- reads

  /** Intents with no receipt (crashed or failed between dispatch and finalization), oldest first. */
  async unresolvedIntents(options: { limit?: number } = {}): Promise<ExecutionIntent[]> {
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? 1000), 1), 10000);
    try {
      const rows = await this.database.db.selectFrom('execution_intents').selectAll()
        .where('resolved_at', 'is', null).orderBy('created_at').orderBy('intent_id').limit(limit).execute();
      return rows.map((r) => {
        const { grant_json, grant_signature: _s, ...rest } = r;
        return { ...rest, grant: JSON.parse(grant_json) as SignedGrant };
      });
    } catch (err) {
      throw dbError('ledger_unavailable', err);
    }
  }

  /** Number of unresolved intents (for the gauge and readiness). */
  async countUnresolvedIntents(): Promise<number> {
    try {
      const r = await this.database.db.selectFrom('execution_intents').select((eb) => eb.fn.countAll<number>().as('n'))
        .where('resolved_at', 'is', null).executeTakeFirstOrThrow();
      return Number(r.n);
    } catch (err) {
      throw dbError('ledger_unavailable', err);
    }
  }

  /** The stored receipt exactly as signed, or null (also for ids that are not `rcpt_<uuidv7>`). */
  async getReceipt(receiptId: string): Promise<Receipt | null> {
    if (typeof receiptId !== 'string' || !RECEIPT_ID.test(receiptId)) return null;
    try {
      const row = await this.database.db.selectFrom('receipts').select('receipt_json').where('receipt_id', '=', receiptId).executeTakeFirst();
      return row ? (JSON.parse(row.receipt_json) as Receipt) : null;
    } catch (err) {
      throw dbError('ledger_unavailable', err);
    }
  }

  /**
   * Audit events matching every given filter, newest first (descending seq, which is also
   * descending ts: timestamps never decrease along the chain). `limit` defaults to 100, capped at 1000.
   * Bad filter values are `invalid_input`.
   */
  async queryEvents(filters: EventFilters = {}): Promise<AuditEvent[]> {
    let limit = 100;
    if (filters.limit !== undefined) {
      if (!Number.isSafeInteger(filters.limit) || filters.limit < 1) throw new GateError('invalid_input', 'limit must be a positive integer');
      limit = Math.min(filters.limit, 1000);
    }
    if (filters.decision !== undefined && !DECISIONS.includes(filters.decision)) throw new GateError('invalid_input', 'unknown decision');
    const after = filters.after === undefined ? undefined : toIso('after', filters.after);
    const before = filters.before === undefined ? undefined : toIso('before', filters.before);
    let q = this.database.db.selectFrom('audit_events').selectAll();
    for (const k of ['trace_id', 'action_id', 'principal', 'session_id', 'decision'] as const) {
      const v = filters[k];
      if (v === undefined) continue;
      if (typeof v !== 'string' || v.length > MAX_FIELD) throw new GateError('invalid_input', `${k} must be a string`);
      q = q.where(k, '=', v);
    }
    if (after !== undefined) q = q.where('ts', '>', after);
    if (before !== undefined) q = q.where('ts', '<', before);
    try {
      const rows = await q.orderBy('seq', 'desc').limit(limit).execute();
      return rows.map((r) => rowToEvent(r) as AuditEvent);
    } catch (err) {
      throw dbError('ledger_unavailable', err);
    }
  }

  /** Events with afterSeq < seq <= uptoSeq in chain order (for export). */
  async readEvents(afterSeq: number, uptoSeq: number, limit = VERIFY_PAGE): Promise<unknown[]> {
    try {
      const rows = await this.database.db.selectFrom('audit_events').selectAll()
        .where('seq', '>', afterSeq).where('seq', '<=', uptoSeq).orderBy('seq').limit(limit).execute();
      return rows.map(rowToEvent);
    } catch (err) {
      throw dbError('ledger_unavailable', err);
    }
  }

  /** Checkpoints with seq <= uptoSeq, in order (for export). */
  async readCheckpoints(uptoSeq = Number.MAX_SAFE_INTEGER): Promise<Checkpoint[]> {
    try {
      const rows = await this.database.db.selectFrom('checkpoints').selectAll().where('seq', '<=', uptoSeq).orderBy('seq').execute();
      return rows.map((r) => ({ ...r, seq: Number(r.seq), count: Number(r.count) }));
    } catch (err) {
      throw dbError('ledger_unavailable', err);
    }
  }

  /** Receipts finalized by an event with seq <= uptoSeq, in chain order (for export). */
  async readReceipts(uptoSeq: number): Promise<Receipt[]> {
    try {
      const rows = await this.database.db.selectFrom('receipts').select('receipt_json').where('event_seq', '<=', uptoSeq).orderBy('event_seq').execute();
      return rows.map((r) => JSON.parse(r.receipt_json) as Receipt);
    } catch (err) {
      throw dbError('ledger_unavailable', err);
    }
  }

  // ---------------------------------------------------------------- integrity

  /**
   * Walks the whole chain in seq order and checks seq continuity, every link, every hash and every
   * signed checkpoint (signature, agreement with the chain, none beyond the end). Also requires the
   * last checkpoint this process signed or verified to still be there. Reports the first break.
   */
  async verify(): Promise<VerifyResult> {
    try {
      const cps = await this.readCheckpoints();
      const verifier = new ChainVerifier(cps, this.#keys.checkpointKeys(), this.#trusted);
      let after = 0;
      for (;;) {
        const rows = await this.database.db.selectFrom('audit_events').selectAll().where('seq', '>', after).orderBy('seq').limit(VERIFY_PAGE).execute();
        for (const r of rows) if (!verifier.push(rowToEvent(r))) break;
        if (verifier.broken || rows.length < VERIFY_PAGE) break;
        after = Number(rows[rows.length - 1]!.seq);
      }
      const result = verifier.finish();
      if (result.intact) {
        const latest = cps[cps.length - 1];
        if (latest && (!this.#trusted || latest.seq > this.#trusted.seq)) this.#trusted = { seq: latest.seq, head_hash: latest.head_hash };
      }
      return result;
    } catch (err) {
      throw dbError('ledger_unavailable', err);
    }
  }

  /**
   * Signs a checkpoint {seq, head_hash, count, ts, kid} for the current head, after verifying the
   * segment since the previous checkpoint (a broken segment is never blessed: `ledger_unavailable`).
   * Returns null when there is nothing new to checkpoint. Concurrent calls share one run.
   */
  checkpoint(): Promise<Checkpoint | null> {
    this.#checkpointing ??= this.#checkpoint().finally(() => {
      this.#checkpointing = null;
    });
    return this.#checkpointing;
  }

  async #checkpoint(): Promise<Checkpoint | null> {
    try {
      // The checkpoint thread has its own connection: a closed database must still refuse, as it does here.
      if (this.database.closed) throw new Error('database is closed');
      // Never sign a head whose WAL frames the disk may have lost.
      const failed = this.writerFailed;
      if (failed !== undefined) throw new Error(`ledger refuses writes: ${failed}`);
      const ts = isoNow(this.#clock);
      const result = this.#thread
        ? await this.#thread.checkpoint({ ts, key: this.#keys.checkpoint, jwks: this.#keys.checkpointKeys().toJwks() })
        : await signNextCheckpoint(this.database.db, { signing: this.#keys.checkpoint, verify: this.#keys.checkpointKeys() }, ts, {
          page: CHECKPOINT_PAGE, pause: () => new Promise((r) => setImmediate(r)),
        });
      if (result && (!this.#trusted || result.seq > this.#trusted.seq)) this.#trusted = { seq: result.seq, head_hash: result.head_hash };
      return result;
    } catch (err) {
      throw dbError('ledger_unavailable', err);
    }
  }

  /** Subscribes to commits (argument: number of events committed). Returns the unsubscribe function. */
  onCommitted(listener: (committedEvents: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Refuses new writes and waits for queued ones. Does not close the database. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#running) await this.#draining;
    if (this.#checkpointing) await this.#checkpointing.catch(() => undefined);
    if (this.#syncing) await this.#syncing;
    this.#walSync?.close();
    await this.#thread?.close();
  }

  // ---------------------------------------------------------------- internals

  #prepare(
    input: AuditEventInput,
    opts: { bind?: Partial<Record<'trace_id' | 'action_id' | 'principal' | 'session_id', string>>; reserved?: Record<string, string> },
  ): PreparedEvent {
    if (typeof input !== 'object' || input === null) throw new TypeError('audit event must be an object');
    const type = field('type', input.type, MAX_TYPE);
    if (!type) throw new TypeError('audit event type is required');
    if (!DECISIONS.includes(input.decision)) throw new TypeError('audit event decision is not one of the known decisions');
    const top = {
      trace_id: field('trace_id', input.trace_id),
      action_id: field('action_id', input.action_id),
      principal: field('principal', input.principal),
      session_id: field('session_id', input.session_id),
    };
    for (const [k, v] of Object.entries(opts.bind ?? {}) as Array<[keyof typeof top, string]>) {
      if (top[k] === null) top[k] = v;
      else if (top[k] !== v) throw new TypeError(`audit event ${k} does not match the bound record`);
    }
    let detail: { [k: string]: JsonValue } | null = null;
    if (input.detail !== undefined && input.detail !== null) {
      const copy = toJsonValue(input.detail);
      if (typeof copy !== 'object' || copy === null || Array.isArray(copy)) throw new TypeError('audit event detail must be an object');
      detail = copy;
    }
    if (opts.reserved) {
      detail ??= {};
      for (const [k, v] of Object.entries(opts.reserved)) {
        if (Object.hasOwn(detail, k) && detail[k] !== v) throw new TypeError(`audit event detail.${k} is reserved`);
        detail[k] = v;
      }
    }
    const detailText = detail === null ? null : canonicalJson(detail);
    if (detailText !== null && detailText.length > MAX_DETAIL_CHARS) throw new TypeError('audit event detail too large');
    return {
      event_id: `evt_${this.#uuid()}`, type, decision: input.decision, ...top,
      operator: field('operator', input.operator), reason_code: field('reason_code', input.reason_code), detailText,
    };
  }

  /** One chain transaction: prepared statements on embedded SQLite, kysely + the advisory lock on PostgreSQL. */
  #transaction<T>(fn: (tx: ChainTx) => Promise<T>, sqlite: { synchronous?: 'NORMAL' } = {}): Promise<T> {
    if (this.database.hasRawSqlite) return this.database.sqliteTransaction((raw) => fn(new SqliteChainTx(raw)), sqlite);
    return this.database.transaction((k) => fn(new KyselyChainTx(k)), { advisoryLock: ADVISORY_LOCK.ledgerAppend });
  }

  #enqueue(failCode: GateErrorCode, job: JobSpec): Promise<unknown> {
    if (this.#closed) return Promise.reject(new GateError(failCode, 'ledger is closed'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ failCode, job, resolve, reject });
      if (!this.#running) {
        this.#running = true;
        this.#draining = this.#drain();
      }
    });
  }

  /**
   * One transaction at a time per instance; whatever queued meanwhile forms the next batch. The
   * first batch starts in the check phase (setImmediate), after this event-loop turn has handled
   * every ready socket: on embedded SQLite a transaction is synchronous (no other request can join
   * it while it runs), so this is what lets the writes of concurrent requests share one commit.
   */
  async #drain(): Promise<void> {
    try {
      // Also for a caller that looks alone: requests whose bytes are already waiting on other
      // sockets are only read (and counted) in this turn's poll phase, before the check phase.
      await new Promise<void>((resolve) => setImmediate(resolve));
      while (this.#queue.length > 0) await this.#runBatch(this.#queue.splice(0, this.#maxBatch));
    } finally {
      // Same tick as the last empty-queue check: a job pushed after this starts a new drain.
      this.#running = false;
    }
  }

  async #runBatch(batch: Job[]): Promise<void> {
    let outcomes: JobOutcome[];
    let committed = 0;
    try {
      const jobs = batch.map((j) => j.job);
      // The previous inline batches' post-reply fsyncs come first, except for a batch that is
      // itself answered before its fsync (receipts only, after_reply): it takes no risk they do
      // not, and a failed one still stops every write after it is known. Waiting made ≈ 2% of
      // lone calls wait 1.5–5 ms behind a slow fsync (docs/benchmarks.md, "Eighth session").
      if (this.#syncing && !this.#answeredEarly(jobs)) await this.#syncing;
      // The writer thread has its own connection: a closed database must still refuse, as it does here.
      if (this.database.closed) throw new Error('database is closed');
      const r = !this.#thread
        ? await runBatch((fn) => this.#transaction(fn), GENESIS_HASH, jobs)
        : this.#inlineWhen?.() && this.#thread.idle
          ? await this.#runInline(this.#thread, jobs)
          : await this.#thread.run(jobs);
      outcomes = r.outcomes;
      committed = r.events;
    } catch (err) {
      // The whole transaction rolled back (or its COMMIT outcome is unknown): every job in it fails.
      // Never retried here: a retry after an unknown COMMIT could record an event twice. Callers
      // that must tell the two apart (complete) find `outcome: 'unknown'` in the error's extra.
      for (const job of batch) {
        // finalize promises evidence_persistence_failed and nothing else (e.g. not clock_error).
        job.reject(job.failCode === 'evidence_persistence_failed'
          ? new GateError(job.failCode, 'finalize failed', { cause: err, ...unknownOutcome(err) })
          : dbError(job.failCode, err));
      }
      return;
    }
    batch.forEach((job, i) => {
      const o = outcomes[i];
      if (o?.ok) job.resolve(o.value);
      else job.reject(o ? new GateError(o.refusal.code, o.refusal.message) : new GateError(job.failCode, 'ledger writer returned no outcome'));
    });
    if (committed > 0) {
      for (const l of this.#listeners) {
        try {
          l(committed);
        } catch {
          // a listener's failure is its own
        }
      }
    }
  }

  /** Whether this batch, run inline, is answered before its fsync (receipt_fsync = after_reply). */
  #answeredEarly(jobs: readonly JobSpec[]): boolean {
    return this.database.writerThread?.receiptFsync === 'after_reply' && receiptsOnly(jobs);
  }

  /**
   * One batch on this thread's connection (the writer thread is idle: nothing else can hold the
   * write lock), with the writer thread's durability rule: a batch of receipts only (finalize,
   * complete) is committed without fsync, acknowledged, then its WAL fsynced on the libuv pool (after
   * the previous such fsync) before the next batch that is not receipts-only starts; anything else
   * commits with synchronous=FULL. A failed post-reply fsync is fatal
   * to this ledger's writes, as on the writer thread.
   */
  async #runInline(thread: WriterThread, jobs: readonly JobSpec[]): Promise<{ outcomes: JobOutcome[]; events: number }> {
    thread.startCheckpointer();
    const wt = this.database.writerThread!;
    const late = this.#answeredEarly(jobs);
    if (late) (this.#walSync ??= new WalSync(`${wt.path}-wal`, wt.faultWalSync === true)).open();
    const r = await runBatch((fn) => this.#transaction(fn, late ? { synchronous: 'NORMAL' } : {}), GENESIS_HASH, jobs);
    this.#inlineBatches++;
    if (late) {
      // One fsync at a time on the descriptor: this one starts when the previous one is done.
      const walSync = this.#walSync!;
      const syncing: Promise<void> = (this.#syncing ?? Promise.resolve()).then(() => walSync.sync()).catch((err: unknown) => {
        // Fatal as on the writer thread: the thread refuses every later write, inline ones included.
        thread.fail(`WAL fsync failed after an early reply: ${err instanceof Error ? err.message : String(err)}`);
      }).finally(() => {
        if (this.#syncing === syncing) this.#syncing = null;
      });
      this.#syncing = syncing;
    }
    return r;
  }
}

/** Registers the ledger's migration, applies pending migrations and returns the ledger. */
export async function openLedger(options: LedgerOptions): Promise<Ledger> {
  for (const [name, m] of Object.entries(LEDGER_MIGRATIONS)) options.database.registerMigration(name, m);
  try {
    await options.database.migrate();
  } catch (err) {
    throw dbError('ledger_unavailable', err);
  }
  return new Ledger(options);
}
