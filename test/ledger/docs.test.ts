// docs/receipts.md is exact: its worked example is recomputed from the documented rule, and its
// standalone node:crypto verifier (run as a separate process, no Portcullis code) agrees with
// verifyReceipt on the example and on receipts the gate produces, tampered or not.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createPrivateKey, sign as cryptoSign } from 'node:crypto';
import { openKeystore } from '../../src/keys/index.ts';
import { ADVISORY_LOCK, BUNDLE_FAILURES, CHAIN_FAILURES, buildReceipt, receiptSigningBytes, verifyReceipt, type Receipt } from '../../src/ledger/index.ts';
import { exampleKey, exampleReceipt, EXAMPLE_SEED_HEX } from './fixtures/receipt-example.ts';
import { makeGrant, receiptInput, tempDir, type TestContext } from './helpers.ts';

const DOCS = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'docs');
const DOC = readFileSync(join(DOCS, 'receipts.md'), 'utf8');

function block(marker: string): string {
  const m = new RegExp(`<!-- ${marker} -->\\n\`\`\`\\w*\\n([\\s\\S]*?)\\n\`\`\``).exec(DOC);
  assert.ok(m, `docs/receipts.md has a block after <!-- ${marker} -->`);
  return m[1]!;
}

function inline(label: string): string {
  const m = new RegExp(`${label}: \`([0-9a-f]+)\``).exec(DOC);
  assert.ok(m, `docs/receipts.md states ${label}`);
  return m[1]!;
}

function runSnippet(t: TestContext, receipt: unknown, jwks: unknown): { status: string; code: number | null } {
  const dir = tempDir(t, 'portcullis-doc-');
  const script = join(dir, 'verify-receipt.mjs');
  writeFileSync(script, block('verify-snippet'));
  writeFileSync(join(dir, 'receipt.json'), typeof receipt === 'string' ? receipt : JSON.stringify(receipt));
  writeFileSync(join(dir, 'keys.json'), JSON.stringify(jwks));
  // A bare node process: no tsx, no loader, nothing from this repository.
  const r = spawnSync(process.execPath, [script, join(dir, 'receipt.json'), join(dir, 'keys.json')], { encoding: 'utf8', cwd: dir });
  assert.equal(r.stderr, '', r.stderr);
  return { status: r.stdout.trim(), code: r.status };
}

describe('docs/receipts.md', () => {
  test('the worked example is what the documented rule produces', () => {
    const receipt = JSON.parse(block('example-receipt')) as Receipt;
    const jwks = JSON.parse(block('example-jwks')) as { keys: unknown[] };
    assert.deepEqual(receipt, exampleReceipt());
    assert.deepEqual(jwks, { keys: [exampleKey().publicJwk] });
    assert.equal(block('example-bytes'), receiptSigningBytes(receipt).toString('utf8'));
    assert.equal(inline('Signature \\(hex\\)'), receipt.receipt_signature);
    // Recompute from the seed printed in the doc, with nothing but node:crypto.
    const seed = inline('Private key seed \\(hex\\)');
    assert.equal(seed, EXAMPLE_SEED_HEX);
    const key = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(seed, 'hex')]), format: 'der', type: 'pkcs8' });
    const bytes = Buffer.from(block('example-bytes'), 'utf8');
    assert.equal(cryptoSign(null, bytes, key).toString('hex'), receipt.receipt_signature);
    assert.equal(verifyReceipt(receipt, jwks as never), 'verified');
  });

  test('the standalone verifier verifies the example', (t) => {
    assert.deepEqual(runSnippet(t, block('example-receipt'), JSON.parse(block('example-jwks'))), { status: 'verified', code: 0 });
  });

  const cases: Array<{ name: string; make(r: Receipt, other: Receipt): unknown; want: string }> = [
    { name: 'a gate receipt as served (with signature_status)', make: (r) => ({ ...r, signature_status: 'verified' }), want: 'verified' },
    { name: 'a receipt signed before two rotations', make: (_r, old) => old, want: 'verified' },
    { name: 'summary edited', make: (r) => ({ ...r, normalized_result: { kind: 'success', summary: 'edited' } }), want: 'signature_invalid' },
    { name: 'a "__proto__" member smuggled in', make: (r) => JSON.stringify(r).replace(/^\{/, '{"__proto__":{"approved":true},'), want: 'signature_invalid' },
    { name: 'unicode and escapes in strings', make: (r) => r, want: 'verified' },
    { name: 'signature stripped', make: (r) => { const { receipt_signature: _s, ...rest } = r; return rest; }, want: 'unsigned' },
    { name: 'kid not published', make: (r) => ({ ...r, signing_key_id: 'receipt-2000-01-AAAAAAAAAAAAAAAA' }), want: 'unknown_kid' },
    { name: 'kid naming a key that is not Ed25519', make: (r) => ({ ...r, signing_key_id: 'lease-p256' }), want: 'unknown_kid' },
    { name: 'signature of another receipt', make: (r, old) => ({ ...r, receipt_signature: old.receipt_signature }), want: 'signature_invalid' },
  ];
  for (const c of cases) {
    test(`standalone verifier agrees with verifyReceipt: ${c.name} -> ${c.want}`, async (t) => {
      const keys = await openKeystore({ dir: join(tempDir(t), 'keys') });
      const grant = makeGrant(keys);
      const old = buildReceipt(receiptInput(grant), keys.receipt);
      await keys.rotateReceiptKey();
      await keys.rotateReceiptKey();
      const r = buildReceipt(receiptInput(grant, {
        provider_receipt: { note: 'Grüße ☃ 𝄞 "quoted" \\ back\u0001slash', n: [1e21, 0.1, -0, 5e-7] },
        normalized_result: { kind: 'success', summary: 'ok\nnext line' },
      }), keys.receipt);
      const input = c.make(r, old);
      const parsed = typeof input === 'string' ? JSON.parse(input) : JSON.parse(JSON.stringify(input));
      assert.equal(verifyReceipt(parsed, keys.receiptJwks()), c.want, 'verifyReceipt');
      const jwks = { keys: [...keys.receiptJwks().keys, { ...keys.lease.publicJwk, kid: 'lease-p256' }] };
      assert.equal(verifyReceipt(parsed, jwks), c.want, 'verifyReceipt with a mixed JWKS');
      const out = runSnippet(t, input, jwks);
      assert.deepEqual(out, { status: c.want, code: c.want === 'verified' ? 0 : 1 });
    });
  }
});

describe('docs/ledger.md', () => {
  const doc = readFileSync(join(DOCS, 'ledger.md'), 'utf8');
  for (const reason of [...CHAIN_FAILURES, ...BUNDLE_FAILURES]) {
    test(`documents the verification reason ${reason}`, () => {
      assert.ok(doc.includes(`\`${reason}\``), reason);
    });
  }
  test('states the advisory lock key the code takes', () => {
    assert.ok(doc.includes(`pg_advisory_xact_lock(${ADVISORY_LOCK.ledgerAppend.toString()})`));
  });
});
