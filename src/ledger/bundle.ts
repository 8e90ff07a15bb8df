// Offline evidence: an exported bundle holds the chain, its signed checkpoints, the receipts and
// the public keys, under a manifest signed with the checkpoint key. `verifyBundle` needs nothing
// but the bundle (and, to trust the signer, the operator's own copy of the public keys).
import { systemClock, type Clock } from '../contracts.ts';
import type { SigningKey } from '../keys/keystore.ts';
import { PublicKeySet, toKeySet, type SignatureCheck } from '../keys/key-set.ts';
import type { Jwks } from '../keys/jwk.ts';
import { DOMAIN, domainBytes, jsonDigest } from './canonical.ts';
import { ChainVerifier } from './chain.ts';
import type { Ledger } from './ledger.ts';
import { verifyReceipt, type Receipt, type SignatureStatus } from './receipts.ts';
import type { AuditEvent, BrokenAt, ChainFailure, Checkpoint } from './types.ts';

export const BUNDLE_FORMAT = 'portcullis-audit-bundle-v1';

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  created_at: string;
  /** Last event in the bundle (null when empty). */
  head: { seq: number; hash: string } | null;
  events_count: number;
  checkpoints_count: number;
  /** null when receipts were not exported. */
  receipts_count: number | null;
  /** `sha256:` of JCS(events) / JCS(checkpoints) / JCS(receipts) / JCS(public_keys). */
  events_digest: string;
  checkpoints_digest: string;
  receipts_digest: string | null;
  public_keys_digest: string;
  /** Checkpoint key that signed the manifest. */
  kid: string;
}

export interface AuditBundle {
  manifest: BundleManifest;
  events: AuditEvent[];
  checkpoints: Checkpoint[];
  receipts?: Receipt[];
  public_keys: { checkpoint: Jwks; receipt: Jwks };
  /** Hex Ed25519 over UTF-8("portcullis-bundle-v1\n" + JCS(manifest)) with the checkpoint key. */
  signature: string;
}

/** Keys for export; a Keystore satisfies this. */
export interface BundleKeys {
  readonly checkpoint: SigningKey;
  checkpointJwks(): Jwks;
  receiptJwks(): Jwks;
}

export interface ExportOptions {
  /** Include receipts (default true). */
  receipts?: boolean;
  clock?: Clock;
}

/**
 * Exports the ledger. A checkpoint is attempted first so the head is covered by a signed
 * checkpoint; if that is refused (a broken chain) the export still happens — for forensics — and
 * `verifyBundle` reports the break. Events appended during the export are not included.
 */
export async function exportBundle(ledger: Ledger, keys: BundleKeys, options: ExportOptions = {}): Promise<AuditBundle> {
  const clock = options.clock ?? systemClock;
  await ledger.checkpoint().catch(() => null);
  const [latest] = await ledger.queryEvents({ limit: 1 });
  const upto = latest?.seq ?? 0;
  const events: AuditEvent[] = [];
  for (let after = 0; after < upto;) {
    const page = (await ledger.readEvents(after, upto)) as AuditEvent[];
    if (page.length === 0) break;
    events.push(...page);
    after = page[page.length - 1]!.seq;
  }
  // Every checkpoint, also those past the current head: a truncated tail must show in the bundle.
  const checkpoints = await ledger.readCheckpoints();
  const receipts = options.receipts === false ? undefined : await ledger.readReceipts(upto);
  const public_keys = { checkpoint: keys.checkpointJwks(), receipt: keys.receiptJwks() };
  const last = events[events.length - 1];
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    created_at: new Date(clock.now()).toISOString(),
    head: last ? { seq: last.seq, hash: last.hash } : null,
    events_count: events.length,
    checkpoints_count: checkpoints.length,
    receipts_count: receipts ? receipts.length : null,
    events_digest: jsonDigest(events),
    checkpoints_digest: jsonDigest(checkpoints),
    receipts_digest: receipts ? jsonDigest(receipts) : null,
    public_keys_digest: jsonDigest(public_keys),
    kid: keys.checkpoint.kid,
  };
  const signature = keys.checkpoint.sign(domainBytes(DOMAIN.bundle, manifest)).toString('hex');
  return { manifest, events, checkpoints, ...(receipts ? { receipts } : {}), public_keys, signature };
}

/** Bundle-level failures (beyond the chain failures; documented in docs/ledger.md). */
export const BUNDLE_FAILURES = [
  'bundle_malformed',
  'bundle_unknown_kid',
  'bundle_signature_invalid',
  /** Manifest digests, counts or head do not match the contents. */
  'manifest_mismatch',
  /** A receipt's signature does not verify. */
  'receipt_invalid',
  /** A receipt is not bound by a finalize event in the chain (receipt_id + receipt_digest). */
  'receipt_unbound',
  /** The chain names a receipt the bundle does not contain. */
  'receipt_missing',
] as const;
export type BundleFailure = (typeof BUNDLE_FAILURES)[number];

export interface BundleVerifyResult {
  intact: boolean;
  events_checked: number;
  broken_at: BrokenAt | null;
  /** The first failure: a chain failure (with broken_at) takes precedence over bundle failures. */
  reason: ChainFailure | BundleFailure | null;
  checkpoints_checked: number;
  head: { seq: number; hash: string } | null;
  /** The manifest signature against the checkpoint keys used. */
  signature: SignatureCheck;
  /** True when the checkpoint keys came from the caller, false when taken from the bundle itself. */
  keys_trusted: boolean;
  receipts: { checked: number; invalid: Array<{ index: number; receipt_id: string | null; status: SignatureStatus | 'unbound' | 'missing' }> };
}

export interface VerifyBundleOptions {
  /** Trusted checkpoint keys (operator's copy). Without them the bundle's own keys are used: integrity only, not authenticity. */
  trustedKeys?: Jwks | PublicKeySet;
  /** Trusted receipt keys; default the bundle's receipt JWKS. */
  trustedReceiptKeys?: Jwks | PublicKeySet;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function malformed(keysTrusted: boolean): BundleVerifyResult {
  return {
    intact: false, events_checked: 0, broken_at: null, reason: 'bundle_malformed', checkpoints_checked: 0, head: null,
    signature: 'signature_invalid', keys_trusted: keysTrusted, receipts: { checked: 0, invalid: [] },
  };
}

function keySetOrNull(keys: unknown): PublicKeySet | null {
  try {
    return keys instanceof PublicKeySet ? keys : toKeySet(keys as Jwks);
  } catch {
    return null;
  }
}

/**
 * Verifies a bundle offline with public keys only: the chain (first broken index), every
 * checkpoint, the manifest (digests, counts, head) and its signature, every receipt's signature
 * and its binding into the chain. Never throws on the bundle's content.
 */
export function verifyBundle(bundle: unknown, options: VerifyBundleOptions = {}): BundleVerifyResult {
  const keysTrusted = options.trustedKeys !== undefined;
  if (!isRecord(bundle) || !isRecord(bundle.manifest) || !Array.isArray(bundle.events) || !Array.isArray(bundle.checkpoints)
    || !isRecord(bundle.public_keys) || (bundle.receipts !== undefined && !Array.isArray(bundle.receipts))) {
    return malformed(keysTrusted);
  }
  const manifest = bundle.manifest;
  const cpKeys = keySetOrNull(options.trustedKeys ?? bundle.public_keys.checkpoint);
  const rcKeys = keySetOrNull(options.trustedReceiptKeys ?? bundle.public_keys.receipt);
  if (!cpKeys || !rcKeys) return malformed(keysTrusted);

  const chain = new ChainVerifier(bundle.checkpoints, cpKeys);
  for (const ev of bundle.events) if (!chain.push(ev)) break;
  const walked = chain.finish();

  let signature: SignatureCheck;
  try {
    signature = cpKeys.verifyEd25519Hex(manifest.kid, domainBytes(DOMAIN.bundle, manifest), bundle.signature);
  } catch {
    signature = 'signature_invalid';
  }

  let manifestOk = false;
  try {
    const events = bundle.events as AuditEvent[];
    const last = events[events.length - 1];
    const receipts = bundle.receipts as unknown[] | undefined;
    const head = manifest.head as { seq?: unknown; hash?: unknown } | null;
    manifestOk = manifest.format === BUNDLE_FORMAT
      && manifest.events_count === events.length
      && manifest.checkpoints_count === bundle.checkpoints.length
      && manifest.receipts_count === (receipts ? receipts.length : null)
      && manifest.events_digest === jsonDigest(events)
      && manifest.checkpoints_digest === jsonDigest(bundle.checkpoints)
      && manifest.receipts_digest === (receipts ? jsonDigest(receipts) : null)
      && manifest.public_keys_digest === jsonDigest(bundle.public_keys)
      && (last ? isRecord(head) && head.seq === last.seq && head.hash === last.hash : head === null);
  } catch {
    manifestOk = false;
  }

  const invalid: BundleVerifyResult['receipts']['invalid'] = [];
  let checked = 0;
  if (Array.isArray(bundle.receipts)) {
    // receipt_id -> receipt_digest, as bound by the chain's finalize events.
    const bound = new Map<string, string>();
    for (const ev of bundle.events) {
      const d = isRecord(ev) && isRecord(ev.detail) ? ev.detail : null;
      if (d && typeof d.receipt_id === 'string' && typeof d.receipt_digest === 'string') bound.set(d.receipt_id, d.receipt_digest);
    }
    const seen = new Set<string>();
    bundle.receipts.forEach((r, index) => {
      checked += 1;
      const id = isRecord(r) && typeof r.receipt_id === 'string' ? r.receipt_id : null;
      if (id !== null) seen.add(id);
      const status = verifyReceipt(r, rcKeys);
      if (status !== 'verified') {
        invalid.push({ index, receipt_id: id, status });
        return;
      }
      let digest: string | null = null;
      try {
        digest = jsonDigest(r);
      } catch {
        digest = null;
      }
      if (id === null || bound.get(id) !== digest) invalid.push({ index, receipt_id: id, status: 'unbound' });
    });
    for (const id of bound.keys()) if (!seen.has(id)) invalid.push({ index: -1, receipt_id: id, status: 'missing' });
  }

  let reason: ChainFailure | BundleFailure | null = walked.reason;
  if (reason === null) {
    if (signature === 'unknown_kid') reason = 'bundle_unknown_kid';
    else if (signature !== 'verified') reason = 'bundle_signature_invalid';
    else if (!manifestOk) reason = 'manifest_mismatch';
    else if (invalid.length > 0) {
      const first = invalid[0]!.status;
      reason = first === 'unbound' ? 'receipt_unbound' : first === 'missing' ? 'receipt_missing' : 'receipt_invalid';
    }
  }
  return {
    intact: reason === null,
    events_checked: walked.events_checked,
    broken_at: walked.broken_at,
    reason,
    checkpoints_checked: walked.checkpoints_checked,
    head: walked.head,
    signature,
    keys_trusted: keysTrusted,
    receipts: { checked, invalid },
  };
}
