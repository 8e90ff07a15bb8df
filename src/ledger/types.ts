// Shapes the ledger hands out: stored audit events, checkpoints, intents and verification results.
import type { AuditEventInput } from '../contracts.ts';
import type { JsonValue } from './canonical.ts';
import type { AuditEventsTable, CheckpointsTable } from './schema.ts';

export type Decision = AuditEventInput['decision'];
export const DECISIONS: readonly Decision[] = ['allow', 'deny', 'error', 'pending_approval', 'admin', 'info'];

/** A stored audit event: the input plus id, sequence, timestamp and the hash chain. */
export type AuditEvent = Omit<AuditEventsTable, 'decision' | 'detail'> & {
  decision: Decision;
  detail: { [k: string]: JsonValue } | null;
};

export interface AppendResult {
  event_id: string;
  seq: number;
  hash: string;
}

/** A signed statement "the chain had `count` events and its head was `head_hash` at `ts`" (as stored). */
export type Checkpoint = CheckpointsTable;

/** Why a chain did not verify (documented in docs/ledger.md, "Verification"). */
export const CHAIN_FAILURES = [
  /** A row does not have the stored-event shape. */
  'malformed_event',
  /** Sequence numbers are not 1, 2, 3, …: an event was deleted or inserted. */
  'seq_mismatch',
  /** `prev_hash` is not the previous event's hash: deleted, inserted or reordered events. */
  'prev_hash_mismatch',
  /** The event's content no longer hashes to its `hash`: the event was changed. */
  'hash_mismatch',
  /** A checkpoint names a kid we do not trust. */
  'checkpoint_unknown_kid',
  /** A checkpoint's signature does not verify. */
  'checkpoint_signature_invalid',
  /** A checkpoint row does not have the checkpoint shape. */
  'checkpoint_malformed',
  /** A signed checkpoint disagrees with the chain at its sequence number: history was rewritten. */
  'checkpoint_mismatch',
  /** A signed checkpoint is beyond the end of the chain: the tail was truncated. */
  'truncated',
  /** A checkpoint this process signed is gone from the database. */
  'checkpoint_missing',
] as const;
export type ChainFailure = (typeof CHAIN_FAILURES)[number];

/** The first event that does not verify: its 0-based position in the chain, the seq expected there and its id (null when missing). */
export interface BrokenAt {
  index: number;
  seq: number;
  event_id: string | null;
}

/** Result of walking the chain (`GET /v1/audit/verify`). */
export interface VerifyResult {
  intact: boolean;
  /** Events that verified before the first break (all of them when intact). */
  events_checked: number;
  broken_at: BrokenAt | null;
  reason: ChainFailure | null;
  checkpoints_checked: number;
  /** The last verified event (null for an empty chain). */
  head: { seq: number; hash: string } | null;
}

/** Filters of `GET /v1/audit/events`. */
export interface EventFilters {
  trace_id?: string;
  action_id?: string;
  principal?: string;
  session_id?: string;
  decision?: Decision;
  /** ISO 8601; events strictly after. */
  after?: string;
  /** ISO 8601; events strictly before. */
  before?: string;
  /** Default 100, capped at 1000. */
  limit?: number;
}
