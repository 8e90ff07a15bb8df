// The in-process shortcut for grants and receipts this process signed (src/ledger/signed-here.ts):
// it may skip the Ed25519 verification only for the very object that was signed, unchanged, with a
// key the verifier's set holds. Each test attacks one way around it.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { GateError } from '../../src/errors.ts';
import { buildReceipt, canonicalJson, openDatabase } from '../../src/ledger/index.ts';
import { signedHere, signedText } from '../../src/ledger/signed-here.ts';
import { count, ledgerOn, makeGrant, receiptInput, tempDir, testKeys } from './helpers.ts';
import { join } from 'node:path';

async function embeddedLedger(t: Parameters<typeof tempDir>[0]) {
  const db = await openDatabase({ kind: 'sqlite', path: join(tempDir(t), 'ledger.db') });
  t.after(() => db.close());
  const keys = await testKeys(t);
  return { db, keys, ledger: await ledgerOn(db, keys) };
}

const refused = (code: string, text: RegExp) => (err: unknown) => {
  assert.ok(err instanceof GateError, String(err));
  assert.equal(err.code, code);
  assert.match(err.message, text);
  return true;
};

describe('signed here', () => {
  test('a signed grant or receipt cannot be altered in place (deep-frozen), so its remembered text stays exact', async (t) => {
    const { keys } = await embeddedLedger(t);
    const grant = makeGrant(keys);
    assert.throws(() => { (grant as { principal: string }).principal = 'mallory'; }, TypeError);
    const receipt = buildReceipt(receiptInput(grant), keys.receipt);
    assert.throws(() => { (receipt as { provider_receipt: unknown }).provider_receipt = { forged: true }; }, TypeError);
    const nested = receipt.normalized_result as { summary?: string };
    assert.throws(() => { nested.summary = 'forged'; }, TypeError);
    assert.equal(signedText(grant, keys.grantKeys()), canonicalJson(grant));
    assert.equal(signedText(receipt, keys.receiptKeys()), canonicalJson(receipt));
  });

  test('an altered copy of a signed grant is verified in full and refused', async (t) => {
    const { db, keys, ledger } = await embeddedLedger(t);
    const grant = { ...makeGrant(keys), principal: 'mallory' };
    await assert.rejects(ledger.recordIntent({ grant }), refused('internal_error', /grant signature signature_invalid/));
    assert.equal(await count(db, 'execution_intents'), 0);
  });

  test('an altered copy of a signed receipt is verified in full and refused', async (t) => {
    const { db, keys, ledger } = await embeddedLedger(t);
    const grant = makeGrant(keys);
    const { intent_id } = await ledger.recordIntent({ grant });
    const receipt = { ...buildReceipt(receiptInput(grant), keys.receipt), provider_receipt: { forged: true } };
    await assert.rejects(
      ledger.finalize({ intentId: intent_id, receipt, auditEvent: { type: 'execute', decision: 'allow' } }),
      refused('evidence_persistence_failed', /receipt signature signature_invalid/),
    );
    assert.equal(await count(db, 'receipts'), 0);
  });

  test('only the signed object itself is remembered: an equal copy takes the full verification (and passes)', async (t) => {
    const { keys, ledger } = await embeddedLedger(t);
    const grant = makeGrant(keys);
    const copy = structuredClone(grant);
    assert.equal(signedHere(grant, canonicalJson(grant), keys.grantKeys()), true);
    assert.equal(signedHere(copy, canonicalJson(copy), keys.grantKeys()), false);
    await ledger.recordIntent({ grant: copy });
  });

  test('a key set without the signing key gets no shortcut (another gate, or a rotated-out key)', async (t) => {
    const keys = await testKeys(t);
    const other = await testKeys(t);
    const grant = makeGrant(keys);
    const receipt = buildReceipt(receiptInput(grant), keys.receipt);
    assert.equal(signedHere(grant, canonicalJson(grant), other.grantKeys()), false);
    assert.equal(signedHere(receipt, canonicalJson(receipt), other.receiptKeys()), false);
    // Same kid space, different purpose: a grant is never "signed here" for the receipt keys.
    assert.equal(signedHere(grant, canonicalJson(grant), keys.receiptKeys()), false);
    const db = await openDatabase({ kind: 'sqlite', path: join(tempDir(t), 'l.db') });
    t.after(() => db.close());
    const ledger = await ledgerOn(db, other);
    await assert.rejects(ledger.recordIntent({ grant }), refused('internal_error', /grant signature unknown_kid/));
  });

  test('the remembered text is exactly the canonical form the signature covers (plus the signature member)', async (t) => {
    const { verifyGrant, grantSigningBytes } = await import('../../src/ledger/index.ts');
    const keys = await testKeys(t);
    const grant = makeGrant(keys);
    const text = signedText(grant, keys.grantKeys())!;
    assert.equal(text, canonicalJson(structuredClone(grant)));
    const { grant_signature: _sig, ...body } = JSON.parse(text) as Record<string, unknown>;
    assert.equal(grantSigningBytes(body).toString('utf8'), `portcullis-grant-v1\n${canonicalJson(body)}`);
    assert.equal(verifyGrant(JSON.parse(text), keys.grantKeys()), 'verified');
  });
});

