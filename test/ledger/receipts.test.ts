// Receipts and grants: exact signed bytes, verification statuses, tampering, rotation keeping old
// receipts verifiable, unknown kids, domain separation between purposes, malformed input refused.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import canonicalize from 'canonicalize';
import { openKeystore } from '../../src/keys/index.ts';
import {
  buildReceipt, verifyReceipt, receiptSigningBytes, resultHash, signGrant, verifyGrant, grantSigningBytes, jsonDigest,
  RECEIPT_ID, type Receipt,
} from '../../src/ledger/index.ts';
import { grantClaims, makeGrant, receiptInput, tempDir, testKeys } from './helpers.ts';

describe('receipts', () => {
  test('a built receipt has every contract field, binds the request and verifies', async (t) => {
    const keys = await testKeys(t);
    const grant = makeGrant(keys, { plan_hash: `sha256:${'12'.repeat(32)}` });
    const r = buildReceipt(receiptInput(grant), keys.receipt);
    assert.deepEqual(Object.keys(r).sort(), [
      'action_id', 'action_version', 'effect_evidence', 'failure_class', 'finished_at', 'grant_id', 'normalized_result', 'plan_hash',
      'principal', 'provider_module_digest', 'provider_receipt', 'receipt_id', 'receipt_signature', 'request_hash', 'result_hash',
      'session_id', 'signing_key_id', 'started_at', 'trace_id', 'verification_outcome',
    ]);
    assert.match(r.receipt_id, RECEIPT_ID);
    assert.equal(r.result_hash, resultHash({ status: 200, body: 'ok' }));
    assert.equal(r.result_hash, `sha256:${(await import('node:crypto')).createHash('sha256').update('{"body":"ok","status":200}').digest('hex')}`);
    assert.equal(r.signing_key_id, keys.receipt.kid);
    assert.match(r.receipt_signature, /^[0-9a-f]{128}$/);
    assert.equal(r.plan_hash, grant.plan_hash);
    assert.equal(verifyReceipt(r, keys.receiptJwks()), 'verified');
    assert.equal(verifyReceipt(r, keys.receiptKeys()), 'verified');
    assert.equal(verifyReceipt(JSON.parse(JSON.stringify(r)), keys.receiptJwks()), 'verified');
  });

  test('the signed bytes are "portcullis-receipt-v1\\n" + RFC 8785 of the receipt minus signature and status', async (t) => {
    const keys = await testKeys(t);
    const r = buildReceipt(receiptInput(makeGrant(keys)), keys.receipt);
    const { receipt_signature: _s, ...body } = r;
    const expected = `portcullis-receipt-v1\n${canonicalize(body)}`;
    assert.equal(receiptSigningBytes({ ...r, signature_status: 'verified' }).toString('utf8'), expected);
  });

  const tampers: Array<{ name: string; mutate(r: Record<string, unknown>, other: string): Record<string, unknown>; want: string }> = [
    { name: 'summary changed', mutate: (r) => ({ ...r, normalized_result: { kind: 'success', summary: 'HTTP 200 OK (edited)' } }), want: 'signature_invalid' },
    { name: 'result_hash swapped', mutate: (r) => ({ ...r, result_hash: resultHash({ other: true }) }), want: 'signature_invalid' },
    { name: 'principal reassigned', mutate: (r) => ({ ...r, principal: 'mallory' }), want: 'signature_invalid' },
    { name: 'failure_class changed', mutate: (r) => ({ ...r, failure_class: 'timeout' }), want: 'signature_invalid' },
    { name: 'extra field added', mutate: (r) => ({ ...r, approved: true }), want: 'signature_invalid' },
    { name: 'extra "__proto__" member added (JSON-level)', mutate: (r) => JSON.parse(JSON.stringify(r).replace(/^\{/, '{"__proto__":{"x":1},')) as Record<string, unknown>, want: 'signature_invalid' },
    { name: 'field removed', mutate: (r) => { const { effect_evidence: _e, ...rest } = r; return rest; }, want: 'signature_invalid' },
    { name: 'number became a string', mutate: (r) => ({ ...r, provider_receipt: { status: '200', body: 'ok' } }), want: 'signature_invalid' },
    { name: 'signature of another receipt', mutate: (r, other) => ({ ...r, receipt_signature: other }), want: 'signature_invalid' },
    { name: 'signature uppercased', mutate: (r) => ({ ...r, receipt_signature: String(r.receipt_signature).toUpperCase() }), want: 'signature_invalid' },
    { name: 'signature not a string', mutate: (r) => ({ ...r, receipt_signature: 42 }), want: 'signature_invalid' },
    { name: 'kid unknown', mutate: (r) => ({ ...r, signing_key_id: 'receipt-2026-11-AAAAAAAAAAAAAAAA' }), want: 'unknown_kid' },
    { name: 'kid missing', mutate: (r) => { const { signing_key_id: _k, ...rest } = r; return rest; }, want: 'unknown_kid' },
    { name: 'signature stripped', mutate: (r) => { const { receipt_signature: _s, ...rest } = r; return rest; }, want: 'unsigned' },
    { name: 'signature null', mutate: (r) => ({ ...r, receipt_signature: null }), want: 'unsigned' },
    { name: 'keys reordered (canonical form is order-free)', mutate: (r) => Object.fromEntries(Object.entries(r).reverse()), want: 'verified' },
    { name: 'a signature_status claim is not part of the signed bytes', mutate: (r) => ({ ...r, signature_status: 'verified' }), want: 'verified' },
  ];
  for (const c of tampers) {
    test(`verifyReceipt: ${c.name} -> ${c.want}`, async (t) => {
      const keys = await testKeys(t);
      const grant = makeGrant(keys);
      const r = buildReceipt(receiptInput(grant, { failure_class: null }), keys.receipt) as unknown as Record<string, unknown>;
      const other = buildReceipt(receiptInput(grant), keys.receipt).receipt_signature;
      assert.equal(verifyReceipt(c.mutate(r, other), keys.receiptJwks()), c.want);
    });
  }

  for (const v of [null, undefined, 'receipt', 42, [], [1]]) {
    test(`verifyReceipt on a non-object (${JSON.stringify(v)}) -> signature_invalid`, async (t) => {
      const keys = await testKeys(t);
      assert.equal(verifyReceipt(v, keys.receiptJwks()), 'signature_invalid');
    });
  }

  test('rotation: old receipts stay verifiable with receiptJwks(); new ones use the new kid', async (t) => {
    const dir = `${tempDir(t)}/keys`;
    const keys = await openKeystore({ dir });
    const grant = makeGrant(keys);
    const old = buildReceipt(receiptInput(grant), keys.receipt);
    await keys.rotateReceiptKey();
    const mid = buildReceipt(receiptInput(grant), keys.receipt);
    await keys.rotateReceiptKey();
    const fresh = buildReceipt(receiptInput(grant), keys.receipt);
    assert.equal(new Set([old.signing_key_id, mid.signing_key_id, fresh.signing_key_id]).size, 3);
    const reopened = await openKeystore({ dir });
    for (const r of [old, mid, fresh]) {
      assert.equal(verifyReceipt(r, keys.receiptJwks()), 'verified');
      assert.equal(verifyReceipt(r, reopened.receiptKeys()), 'verified');
    }
    // A verifier holding only the current key cannot vouch for the old receipt.
    assert.equal(verifyReceipt(old, { keys: [reopened.receipt.publicJwk] }), 'unknown_kid');
  });

  test('a receipt signed by another gate (kid not in our JWKS) -> unknown_kid', async (t) => {
    const ours = await testKeys(t);
    const theirs = await openKeystore({ dir: `${tempDir(t)}/theirs` });
    const r = buildReceipt(receiptInput(makeGrant(ours)), theirs.receipt);
    assert.equal(verifyReceipt(r, ours.receiptJwks()), 'unknown_kid');
  });

  test('an attacker key published under our kid does not verify our receipts, and vice versa', async (t) => {
    const ours = await testKeys(t);
    const theirs = await openKeystore({ dir: `${tempDir(t)}/theirs` });
    const r = buildReceipt(receiptInput(makeGrant(ours)), ours.receipt);
    const forgedJwks = { keys: [{ ...theirs.receipt.publicJwk, kid: ours.receipt.kid }] };
    assert.equal(verifyReceipt(r, forgedJwks), 'signature_invalid');
  });

  const badInputs: Array<{ name: string; patch: Record<string, unknown> }> = [
    { name: 'unknown result kind', patch: { normalized_result: { kind: 'great', summary: 'x' } } },
    { name: 'success without summary', patch: { normalized_result: { kind: 'success' } } },
    { name: 'failure without reason', patch: { normalized_result: { kind: 'timeout' } } },
    { name: 'verified outcome without evidence', patch: { verification_outcome: { status: 'verified' } } },
    { name: 'unknown outcome', patch: { verification_outcome: { status: 'probably' } } },
    { name: 'unknown failure_class', patch: { failure_class: 'oops' } },
    { name: 'effect_evidence not an array', patch: { effect_evidence: {} } },
    { name: 'local timestamp', patch: { started_at: '2026-11-22 13:00:00' } },
    { name: 'empty principal', patch: { principal: '' } },
    { name: 'caller-chosen receipt id that is not rcpt_<uuidv7>', patch: { receipt_id: 'rcpt_1' } },
    { name: 'result with a non-JSON value', patch: { result: { f: () => 1 } } },
    { name: 'provider_receipt with NaN', patch: { provider_receipt: { n: Number.NaN } } },
  ];
  for (const c of badInputs) {
    test(`buildReceipt refuses (TypeError): ${c.name}`, async (t) => {
      const keys = await testKeys(t);
      assert.throws(() => buildReceipt({ ...receiptInput(makeGrant(keys)), ...c.patch } as never, keys.receipt), TypeError);
    });
  }

  test('buildReceipt refuses any key but the receipt key', async (t) => {
    const keys = await testKeys(t);
    assert.throws(() => buildReceipt(receiptInput(makeGrant(keys)), keys.grant), TypeError);
  });

  test('receipt digest used by the chain is sha256 over the whole canonical receipt', async (t) => {
    const keys = await testKeys(t);
    const r: Receipt = buildReceipt(receiptInput(makeGrant(keys)), keys.receipt);
    const { createHash } = await import('node:crypto');
    assert.equal(jsonDigest(r), `sha256:${createHash('sha256').update(canonicalize(r)!).digest('hex')}`);
  });
});

describe('grants', () => {
  test('signGrant binds every claim; verifyGrant verifies with the grant key only', async (t) => {
    const keys = await testKeys(t);
    const g = signGrant(grantClaims({ approval_id: 'apr_1', approved_by: 'alice', operator_binding: 'thumb' }), keys.grant);
    assert.equal(g.signing_key_id, keys.grant.kid);
    assert.equal(verifyGrant(g, keys.grantKeys()), 'verified');
    assert.equal(verifyGrant(g, keys.grantJwks()), 'verified');
    assert.equal(verifyGrant(g, keys.receiptJwks()), 'unknown_kid');
    const { grant_signature: _s, ...body } = g;
    assert.equal(grantSigningBytes(g).toString('utf8'), `portcullis-grant-v1\n${canonicalize(body)}`);
  });

  const fields: Array<[string, unknown]> = [
    ['grant_id', 'grant_01900000-0000-7000-8000-000000000000'], ['trace_id', 'trc_other'], ['action_id', 'http_post'],
    ['action_version', '2.0.0'], ['module_digest', `sha256:${'00'.repeat(32)}`], ['request_hash', `sha256:${'01'.repeat(32)}`],
    ['plan_hash', `sha256:${'02'.repeat(32)}`], ['principal', 'mallory'], ['session_id', 'ses_other'], ['lease_jkt', 'other'],
    ['epoch', 1], ['approved_by', 'mallory'], ['operator_binding', 'other'], ['issued_at', '2026-11-22T12:00:00.000Z'],
    ['expires_at', '2030-01-01T00:00:00.000Z'],
  ];
  for (const [field, value] of fields) {
    test(`verifyGrant: ${field} changed after signing -> signature_invalid`, async (t) => {
      const keys = await testKeys(t);
      const g = signGrant(grantClaims({ approval_id: 'apr_1', approved_by: 'alice', operator_binding: 'thumb' }), keys.grant);
      assert.equal(verifyGrant({ ...g, [field]: value }, keys.grantKeys()), 'signature_invalid');
    });
  }

  test('verifyGrant statuses: unsigned, unknown kid, malformed', async (t) => {
    const keys = await testKeys(t);
    const g = makeGrant(keys);
    const { grant_signature: _s, ...unsigned } = g;
    assert.equal(verifyGrant(unsigned, keys.grantKeys()), 'unsigned');
    assert.equal(verifyGrant({ ...g, signing_key_id: 'grant-x' }, keys.grantKeys()), 'unknown_kid');
    assert.equal(verifyGrant({ ...g, epoch: -1 }, keys.grantKeys()), 'signature_invalid');
    assert.equal(verifyGrant('grant', keys.grantKeys()), 'signature_invalid');
  });

  test('domain separation: a receipt-key signature over the same object never verifies as a grant', async (t) => {
    const keys = await testKeys(t);
    const claims = { ...grantClaims(), signing_key_id: keys.receipt.kid };
    const sig = keys.receipt.sign(receiptSigningBytes(claims)).toString('hex');
    assert.equal(verifyGrant({ ...claims, grant_signature: sig }, keys.receiptJwks()), 'signature_invalid');
    const gsig = keys.receipt.sign(grantSigningBytes(claims)).toString('hex');
    assert.equal(verifyGrant({ ...claims, grant_signature: gsig }, keys.receiptJwks()), 'verified', 'control: same key, right domain');
  });

  const badClaims: Array<[string, Record<string, unknown>]> = [
    ['grant_id not grant_<uuidv7>', { grant_id: 'grant_1' }],
    ['epoch fractional', { epoch: 1.5 }],
    ['expires_at not ISO', { expires_at: 'tomorrow' }],
    ['empty lease_jkt', { lease_jkt: '' }],
    ['approved_by empty', { approved_by: '' }],
  ];
  for (const [name, patch] of badClaims) {
    test(`signGrant refuses (TypeError): ${name}`, async (t) => {
      const keys = await testKeys(t);
      assert.throws(() => signGrant({ ...grantClaims(), ...patch } as never, keys.grant), TypeError);
    });
  }

  test('signGrant refuses any key but the grant key', async (t) => {
    const keys = await testKeys(t);
    assert.throws(() => signGrant(grantClaims(), keys.receipt), TypeError);
  });
});
