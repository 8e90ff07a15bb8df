// Export and offline verification on both backends: a bundle verifies with public keys only after a
// JSON round trip; tampering with its chain is reported with the first broken index; tampering with
// the manifest, signature, keys or receipts is reported with its own reason.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openKeystore, type Keystore } from '../../src/keys/index.ts';
import {
  exportBundle, verifyBundle, hashEvent, jsonDigest, domainBytes, DOMAIN, type AuditBundle, type BundleVerifyResult, type Ledger,
} from '../../src/ledger/index.ts';
import { BACKENDS, ledgerOn, makeGrant, makeReceipt, tempDir, testKeys, type TestContext } from './helpers.ts';

/** 10 events: 3 executions (dispatch + finalize events) and 4 plain events. */
async function populate(ledger: Ledger, keys: Keystore): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const grant = makeGrant(keys, { trace_id: `trc_${i}` });
    const { intent_id } = await ledger.recordIntent({ grant }, { type: 'execute_dispatch', decision: 'allow' });
    await ledger.finalize({ intentId: intent_id, receipt: makeReceipt(keys, grant), auditEvent: { type: 'execute', decision: 'allow' } });
  }
  for (let i = 0; i < 4; i++) await ledger.append({ type: 'lease_issued', decision: 'info', principal: 'agent-1', detail: { i } });
}

function roundTrip(b: AuditBundle): AuditBundle {
  return JSON.parse(JSON.stringify(b)) as AuditBundle;
}

/** Re-signs a tampered bundle's manifest as an attacker who recomputes digests but has no key. */
function redigest(b: AuditBundle): AuditBundle {
  const events = b.events;
  const last = events[events.length - 1];
  b.manifest = {
    ...b.manifest,
    events_count: events.length, checkpoints_count: b.checkpoints.length,
    receipts_count: b.receipts ? b.receipts.length : null,
    events_digest: jsonDigest(events), checkpoints_digest: jsonDigest(b.checkpoints),
    receipts_digest: b.receipts ? jsonDigest(b.receipts) : null, public_keys_digest: jsonDigest(b.public_keys),
    head: last ? { seq: last.seq, hash: last.hash } : null,
  };
  return b;
}

interface Case {
  name: string;
  tamper(b: AuditBundle, t: TestContext): Promise<AuditBundle> | AuditBundle;
  reason: BundleVerifyResult['reason'];
  /** Expected broken_at; `event` is the 1-based original event whose id is reported (null: missing). */
  brokenAt?: { index: number; seq: number; event: number | null };
  /** Verify with the bundle's own keys instead of the caller's trusted keys. */
  selfKeyed?: boolean;
}

const cases: Case[] = [
  { name: 'untouched', tamper: (b) => b, reason: null },
  {
    name: 'event changed', tamper: (b) => { b.events[2]!.principal = 'mallory'; return b; },
    reason: 'hash_mismatch', brokenAt: { index: 2, seq: 3, event: 3 },
  },
  {
    name: 'event deleted', tamper: (b) => { b.events.splice(4, 1); return b; },
    reason: 'seq_mismatch', brokenAt: { index: 4, seq: 5, event: 6 },
  },
  {
    name: 'events reordered (5 and 6 swapped, seq rewritten)', tamper: (b) => {
      const [e5, e6] = [b.events[4]!, b.events[5]!];
      b.events[4] = { ...e6, seq: 5 };
      b.events[5] = { ...e5, seq: 6 };
      return b;
    },
    reason: 'prev_hash_mismatch', brokenAt: { index: 4, seq: 5, event: 6 },
  },
  {
    name: 'event inserted (forged, correctly linked, later seqs shifted)', tamper: (b) => {
      const prev = b.events[6]!;
      const forged = { ...prev, seq: 8, event_id: 'evt_forged', type: 'forged', prev_hash: prev.hash };
      const { hash: _h, ...rest } = forged;
      b.events = [...b.events.slice(0, 7), { ...forged, hash: hashEvent(rest) }, ...b.events.slice(7).map((e) => ({ ...e, seq: e.seq + 1 }))];
      return b;
    },
    reason: 'prev_hash_mismatch', brokenAt: { index: 8, seq: 9, event: 8 },
  },
  {
    name: 'tail truncated (checkpoint kept)', tamper: (b) => { b.events = b.events.slice(0, 7); return b; },
    reason: 'truncated', brokenAt: { index: 7, seq: 8, event: null },
  },
  {
    name: 'tail truncated and checkpoints dropped, manifest untouched', tamper: (b) => {
      b.events = b.events.slice(0, 7);
      b.checkpoints = [];
      return b;
    },
    reason: 'manifest_mismatch',
  },
  {
    name: 'tail truncated, checkpoints dropped, manifest recomputed without the key', tamper: (b) => {
      b.events = b.events.slice(0, 7);
      b.checkpoints = [];
      return redigest(b);
    },
    reason: 'bundle_signature_invalid',
  },
  {
    name: 're-signed by an attacker key that also replaced the bundle\'s keys (caller trusts its own keys)',
    tamper: async (b, t) => {
      const rogue = await openKeystore({ dir: `${tempDir(t)}/rogue` });
      b.events = b.events.slice(0, 7);
      b.checkpoints = [];
      b.public_keys.checkpoint = rogue.checkpointJwks();
      redigest(b);
      b.manifest.kid = rogue.checkpoint.kid;
      b.signature = rogue.checkpoint.sign(domainBytes(DOMAIN.bundle, b.manifest)).toString('hex');
      return b;
    },
    reason: 'bundle_unknown_kid',
  },
  { name: 'receipt edited, manifest untouched', tamper: (b) => { b.receipts![1]!.principal = 'mallory'; return b; }, reason: 'manifest_mismatch' },
  { name: 'receipt edited, manifest recomputed (no key)', tamper: (b) => { b.receipts![1]!.principal = 'mallory'; return redigest(b); }, reason: 'bundle_signature_invalid' },
  {
    name: 'signature flipped', tamper: (b) => { b.signature = (b.signature[0] === '0' ? '1' : '0') + b.signature.slice(1); return b; },
    reason: 'bundle_signature_invalid',
  },
  { name: 'not a bundle', tamper: () => ({ hello: 'world' }) as never, reason: 'bundle_malformed' },
  {
    name: 'bundle keys replaced by garbage (verifying with the bundle\'s own keys)',
    tamper: (b) => { b.public_keys.checkpoint = { keys: [{ kty: 'RSA' }] } as never; return b; },
    reason: 'bundle_malformed', selfKeyed: true,
  },
];

for (const backend of BACKENDS) {
  describe(`bundle export and offline verification (${backend.name})`, { skip: backend.skip }, () => {
    before(() => backend.start());
    after(() => backend.stop());

    async function exported(t: TestContext) {
      const keys = await testKeys(t);
      const ledger = await ledgerOn(await (await backend.fresh(t)).open(), keys);
      await populate(ledger, keys);
      const bundle = await exportBundle(ledger, keys, { clock: { now: () => Date.parse('2026-11-22T14:00:00Z') } });
      return { keys, ledger, bundle };
    }

    test('export covers the head with a checkpoint and verifies after a JSON round trip', async (t) => {
      const { keys, bundle } = await exported(t);
      assert.equal(bundle.events.length, 10);
      assert.equal(bundle.receipts?.length, 3);
      assert.deepEqual(bundle.checkpoints.map((c) => c.seq), [10]);
      assert.equal(bundle.manifest.kid, keys.checkpoint.kid);
      assert.equal(bundle.manifest.created_at, '2026-11-22T14:00:00.000Z');
      const r = verifyBundle(roundTrip(bundle), { trustedKeys: keys.checkpointJwks(), trustedReceiptKeys: keys.receiptJwks() });
      assert.deepEqual(r, {
        intact: true, events_checked: 10, broken_at: null, reason: null, checkpoints_checked: 1,
        head: bundle.manifest.head, signature: 'verified', keys_trusted: true, receipts: { checked: 3, invalid: [] },
      });
      const selfKeyed = verifyBundle(roundTrip(bundle));
      assert.equal(selfKeyed.intact, true);
      assert.equal(selfKeyed.keys_trusted, false);
    });

    test('an empty ledger exports an empty bundle that verifies', async (t) => {
      const keys = await testKeys(t);
      const ledger = await ledgerOn(await (await backend.fresh(t)).open(), keys);
      const b = await exportBundle(ledger, keys, { receipts: false });
      assert.equal(b.manifest.head, null);
      assert.equal(b.receipts, undefined);
      assert.equal(verifyBundle(roundTrip(b), { trustedKeys: keys.checkpointJwks() }).intact, true);
    });

    test('a bundle from a tampered database still exports (forensics) and reports the break', async (t) => {
      const { keys, ledger } = await exported(t);
      const { dropAppendOnly } = await import('./helpers.ts');
      const { sql } = await import('kysely');
      await dropAppendOnly(ledger.database);
      await sql`update audit_events set principal = 'mallory' where seq = 4`.execute(ledger.database.db);
      const b = await exportBundle(ledger, keys);
      const r = verifyBundle(roundTrip(b), { trustedKeys: keys.checkpointJwks() });
      assert.equal(r.reason, 'hash_mismatch');
      assert.deepEqual(r.broken_at, { index: 3, seq: 4, event_id: b.events[3]!.event_id });
    });

    for (const c of cases) {
      test(`tampered bundle: ${c.name} -> ${c.reason ?? 'intact'}`, async (t) => {
        const { keys, bundle } = await exported(t);
        const original = roundTrip(bundle);
        const tampered = await c.tamper(roundTrip(bundle), t);
        const r = c.selfKeyed ? verifyBundle(tampered) : verifyBundle(tampered, { trustedKeys: keys.checkpointJwks(), trustedReceiptKeys: keys.receiptJwks() });
        assert.equal(r.reason, c.reason, JSON.stringify(r));
        assert.equal(r.intact, c.reason === null);
        if (c.brokenAt) {
          const ev = c.brokenAt.event;
          assert.deepEqual(r.broken_at, { index: c.brokenAt.index, seq: c.brokenAt.seq, event_id: ev === null ? null : original.events[ev - 1]!.event_id });
          assert.equal(r.events_checked, c.brokenAt.index);
        }
      });
    }

    test('a receipt row tampered in the database exports with a valid bundle signature -> receipt_invalid', async (t) => {
      const { keys, ledger, bundle } = await exported(t);
      const { dropAppendOnly } = await import('./helpers.ts');
      const { sql } = await import('kysely');
      await dropAppendOnly(ledger.database);
      const victim = bundle.receipts![2]!;
      const forged = JSON.stringify({ ...victim, normalized_result: { kind: 'success', summary: 'nothing to see' } });
      await sql`update receipts set receipt_json = ${forged} where receipt_id = ${victim.receipt_id}`.execute(ledger.database.db);
      const b = await exportBundle(ledger, keys);
      const r = verifyBundle(roundTrip(b), { trustedKeys: keys.checkpointJwks(), trustedReceiptKeys: keys.receiptJwks() });
      assert.equal(r.signature, 'verified');
      assert.equal(r.reason, 'receipt_invalid');
      assert.deepEqual(r.receipts.invalid, [{ index: 2, receipt_id: victim.receipt_id, status: 'signature_invalid' }]);
    });

    test('receipt missing from the bundle while the chain names it -> receipt_missing (with a valid signature)', async (t) => {
      const { keys, ledger } = await exported(t);
      const b = await exportBundle(ledger, keys);
      // The gate itself signs a bundle whose receipts were filtered: signature fine, binding not.
      const filtered = roundTrip(b);
      filtered.receipts = filtered.receipts!.slice(1);
      redigest(filtered);
      filtered.signature = keys.checkpoint.sign(domainBytes(DOMAIN.bundle, filtered.manifest)).toString('hex');
      const r = verifyBundle(filtered, { trustedKeys: keys.checkpointJwks() });
      assert.equal(r.reason, 'receipt_missing');
      assert.deepEqual(r.receipts.invalid, [{ index: -1, receipt_id: b.receipts![0]!.receipt_id, status: 'missing' }]);
    });

    test('receipts verified with an older rotated key stay valid in a later export', async (t) => {
      const keys = await openKeystore({ dir: `${tempDir(t)}/keys` });
      const ledger = await ledgerOn(await (await backend.fresh(t)).open(), keys);
      await populate(ledger, keys);
      await keys.rotateReceiptKey();
      await populate(ledger, keys);
      const b = await exportBundle(ledger, keys);
      assert.equal(new Set(b.receipts!.map((r) => r.signing_key_id)).size, 2);
      const r = verifyBundle(roundTrip(b), { trustedKeys: keys.checkpointJwks(), trustedReceiptKeys: keys.receiptJwks() });
      assert.equal(r.intact, true, JSON.stringify(r));
      assert.equal(r.receipts.checked, 6);
    });
  });
}
