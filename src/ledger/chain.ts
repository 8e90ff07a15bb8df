// The hash-chain rule and the one verifier used online (Ledger.verify) and offline (verifyBundle):
// hash = SHA-256(UTF-8("portcullis-audit-v1\n" + JCS(event without hash))), prev_hash = previous
// hash (genesis: 64 zeros), seq = 1, 2, 3, … and every signed checkpoint must agree with the chain.
import type { SigningKey } from '../keys/keystore.ts';
import type { PublicKeySet, SignatureCheck } from '../keys/key-set.ts';
import { DOMAIN, canonicalMembers, domainBytes, sha256Hex, withCanonicalMember, type JsonValue } from './canonical.ts';
import { DECISIONS, type AuditEvent, type BrokenAt, type ChainFailure, type Checkpoint, type VerifyResult } from './types.ts';

/** prev_hash of the first event. */
export const GENESIS_HASH = '0'.repeat(64);

const HEX64 = /^[0-9a-f]{64}$/;
const HEX128 = /^[0-9a-f]{128}$/;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The hashed form of an event: every stored column except `hash`, nulls explicit. */
export function eventHashInput(ev: Omit<AuditEvent, 'hash'>): Record<string, JsonValue> {
  return {
    seq: ev.seq,
    event_id: ev.event_id,
    ts: ev.ts,
    type: ev.type,
    decision: ev.decision,
    trace_id: ev.trace_id,
    action_id: ev.action_id,
    principal: ev.principal,
    session_id: ev.session_id,
    operator: ev.operator,
    reason_code: ev.reason_code,
    detail: ev.detail,
    prev_hash: ev.prev_hash,
  };
}

/** Lowercase hex SHA-256 of the event's domain-separated canonical form. */
export function hashEvent(ev: Omit<AuditEvent, 'hash'>): string {
  return sha256Hex(domainBytes(DOMAIN.audit, eventHashInput(ev)));
}

/**
 * {@link hashEvent} of an event whose detail is given as its canonical JSON text (`null` for no
 * detail): the same hash, without walking the detail again. How the writer hashes new events.
 */
export function hashEventWithDetailText(ev: Omit<AuditEvent, 'hash' | 'detail'>, detailText: string | null): string {
  const { detail: _none, ...rest } = eventHashInput({ ...ev, detail: null });
  return sha256Hex(`${DOMAIN.audit}\n${withCanonicalMember(canonicalMembers(rest), 'detail', detailText ?? 'null')}`);
}

/** The signed form of a checkpoint. */
export function checkpointSigningBytes(cp: Omit<Checkpoint, 'signature'>): Buffer {
  return domainBytes(DOMAIN.checkpoint, { seq: cp.seq, head_hash: cp.head_hash, count: cp.count, ts: cp.ts, kid: cp.kid });
}

/** Signs a checkpoint over {seq, head_hash, count, ts, kid} with the checkpoint key. */
export function signCheckpoint(body: { seq: number; head_hash: string; count: number; ts: string }, key: SigningKey): Checkpoint {
  const unsigned = { seq: body.seq, head_hash: body.head_hash, count: body.count, ts: body.ts, kid: key.kid };
  return { ...unsigned, signature: key.sign(checkpointSigningBytes(unsigned)).toString('hex') };
}

/** Checks a checkpoint's signature against trusted checkpoint keys. */
export function verifyCheckpointSignature(cp: Checkpoint, keys: PublicKeySet): SignatureCheck {
  return keys.verifyEd25519Hex(cp.kid, checkpointSigningBytes(cp), cp.signature);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
const nullableString = (v: unknown) => v === null || typeof v === 'string';
const posInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

/** Validates an untrusted event object (bundle or row) and returns it typed, or undefined. */
export function parseEvent(v: unknown): AuditEvent | undefined {
  if (!isRecord(v)) return undefined;
  if (!posInt(v.seq)) return undefined;
  for (const k of ['event_id', 'ts', 'type', 'decision', 'prev_hash', 'hash'] as const) if (typeof v[k] !== 'string') return undefined;
  for (const k of ['trace_id', 'action_id', 'principal', 'session_id', 'operator', 'reason_code'] as const) if (!nullableString(v[k])) return undefined;
  if (!DECISIONS.includes(v.decision as AuditEvent['decision'])) return undefined;
  if (!HEX64.test(v.prev_hash as string) || !HEX64.test(v.hash as string)) return undefined;
  if (v.detail !== null && !isRecord(v.detail)) return undefined;
  return v as unknown as AuditEvent;
}

/** Validates an untrusted checkpoint object and returns it typed, or undefined. */
export function parseCheckpoint(v: unknown): Checkpoint | undefined {
  if (!isRecord(v)) return undefined;
  if (!posInt(v.seq) || !posInt(v.count)) return undefined;
  if (typeof v.head_hash !== 'string' || !HEX64.test(v.head_hash)) return undefined;
  if (typeof v.ts !== 'string' || !ISO_MS.test(v.ts)) return undefined;
  if (typeof v.kid !== 'string' || typeof v.signature !== 'string' || !HEX128.test(v.signature)) return undefined;
  return { seq: v.seq, head_hash: v.head_hash, count: v.count, ts: v.ts, kid: v.kid, signature: v.signature };
}

/** A checkpoint trusted without a signature (one this process signed itself). */
export interface TrustedHead {
  seq: number;
  head_hash: string;
}

interface CheckpointEntry {
  cp: Checkpoint;
  status: SignatureCheck;
}

/**
 * Walks a chain event by event in sequence order and stops at the first break. Feed it with
 * {@link push} (false once broken) and read the result with {@link finish}.
 */
export class ChainVerifier {
  readonly #bySeq = new Map<number, CheckpointEntry[]>();
  readonly #checkpoints: CheckpointEntry[] = [];
  readonly #trusted: TrustedHead | null;
  #checkpointFailure: ChainFailure | null = null;
  #index = 0;
  #prevHash = GENESIS_HASH;
  #last: AuditEvent | null = null;
  #broken: { at: BrokenAt | null; reason: ChainFailure } | null = null;
  #checkpointsChecked = 0;

  /**
   * @param checkpoints untrusted checkpoint rows (validated here)
   * @param keys trusted checkpoint public keys
   * @param trusted a head this process signed itself; its checkpoint must still exist and agree
   * @param start verify a segment: the first pushed event must follow this (already verified) event
   */
  constructor(
    checkpoints: readonly unknown[], keys: PublicKeySet, trusted: TrustedHead | null = null,
    start: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH },
  ) {
    this.#trusted = trusted;
    this.#index = start.seq;
    this.#prevHash = start.hash;
    for (const raw of checkpoints) {
      const cp = parseCheckpoint(raw);
      if (!cp) {
        this.#checkpointFailure = 'checkpoint_malformed';
        continue;
      }
      const entry = { cp, status: verifyCheckpointSignature(cp, keys) };
      this.#checkpoints.push(entry);
      const list = this.#bySeq.get(cp.seq) ?? [];
      list.push(entry);
      this.#bySeq.set(cp.seq, list);
    }
    if (trusted && !this.#checkpoints.some((e) => e.cp.seq === trusted.seq && e.cp.head_hash === trusted.head_hash)) {
      this.#checkpointFailure ??= 'checkpoint_missing';
    }
  }

  get broken(): boolean {
    return this.#broken !== null;
  }

  /** Checks the next event; returns false (and stops) at the first break. */
  push(raw: unknown): boolean {
    if (this.#broken) return false;
    const index = this.#index;
    const expectedSeq = index + 1;
    const ev = parseEvent(raw);
    const id = isRecord(raw) && typeof raw.event_id === 'string' ? raw.event_id : null;
    const fail = (reason: ChainFailure) => {
      this.#broken = { at: { index, seq: expectedSeq, event_id: id }, reason };
      return false;
    };
    if (!ev) return fail('malformed_event');
    if (ev.seq !== expectedSeq) return fail('seq_mismatch');
    if (ev.prev_hash !== this.#prevHash) return fail('prev_hash_mismatch');
    let recomputed: string;
    try {
      recomputed = hashEvent(ev);
    } catch {
      return fail('malformed_event');
    }
    if (recomputed !== ev.hash) return fail('hash_mismatch');
    for (const { cp, status } of this.#bySeq.get(ev.seq) ?? []) {
      if (status === 'unknown_kid') return fail('checkpoint_unknown_kid');
      if (status !== 'verified') return fail('checkpoint_signature_invalid');
      if (cp.head_hash !== ev.hash || cp.count !== ev.seq) return fail('checkpoint_mismatch');
      this.#checkpointsChecked += 1;
    }
    if (this.#trusted && this.#trusted.seq === ev.seq && this.#trusted.head_hash !== ev.hash) return fail('checkpoint_mismatch');
    this.#prevHash = ev.hash;
    this.#last = ev;
    this.#index += 1;
    return true;
  }

  /** The verdict. Checkpoints beyond the last event mean a truncated tail. */
  finish(): VerifyResult {
    const head = this.#last ? { seq: this.#last.seq, hash: this.#last.hash } : null;
    const result = (at: BrokenAt | null, reason: ChainFailure | null): VerifyResult => ({
      intact: reason === null,
      events_checked: this.#index,
      broken_at: at,
      reason,
      checkpoints_checked: this.#checkpointsChecked,
      head,
    });
    if (this.#broken) return result(this.#broken.at, this.#broken.reason);
    const end = this.#index;
    const missing: BrokenAt = { index: end, seq: end + 1, event_id: null };
    // Beyond the end: an unverifiable checkpoint is reported as such; a valid one proves truncation.
    const beyond = this.#checkpoints.filter((e) => e.cp.seq > end).sort((a, b) => a.cp.seq - b.cp.seq);
    for (const e of beyond) {
      if (e.status === 'unknown_kid') return result(missing, 'checkpoint_unknown_kid');
      if (e.status !== 'verified') return result(missing, 'checkpoint_signature_invalid');
    }
    if (beyond.length > 0 || (this.#trusted && this.#trusted.seq > end)) return result(missing, 'truncated');
    if (this.#checkpointFailure) return result(null, this.#checkpointFailure);
    return result(null, null);
  }
}
