// The embedded gate runs a lone request's ledger batches on its own connection
// (ledger.inline_when_alone, default true; docs/ledger.md "Where a batch runs"); false keeps every
// batch on the writer thread. Either way the chain is one and intact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortcullisClient } from '../../src/client/index.ts';
import { spyBatches, spyInline } from '../ledger/helpers.ts';
import { operatorHeaders, startTestGate } from '../helpers/gate.ts';

for (const inline of [true, false]) {
  test(`embedded gate, ledger.inline_when_alone = ${inline}: sequential echoes write their evidence ${inline ? 'on the gate\'s connection' : 'through the writer thread'}; concurrent ones through the thread`, async (t) => {
    const thread = spyBatches(t);
    const inlineTx = spyInline(t).txs;
    const counts = () => ({ inline: inlineTx.length, thread: thread.length });
    const g = await startTestGate({ overrides: inline ? {} : { ledger: { inline_when_alone: false } } });
    t.after(() => g.stop());
    const agent = new PortcullisClient({ socketPath: g.config.client_socket });
    t.after(() => agent.close());
    await agent.connect();
    const before = counts();
    for (let i = 0; i < 5; i++) await agent.execute('echo', { message: `m${i}` });
    const alone = { inline: counts().inline - before.inline, thread: counts().thread - before.thread };
    // echo may not do I/O: one one-phase commit (intent + receipt + event) per call.
    if (inline) assert.deepEqual(alone, { inline: 5, thread: 0 }, 'one one-phase commit per echo, each inline');
    else {
      assert.deepEqual(alone, { inline: 0, thread: 5 });
      assert.deepEqual(thread.slice(-5).map((b) => b.kinds), Array(5).fill('complete'));
    }
    const mid = counts().thread;
    await Promise.all(Array.from({ length: 12 }, (_, i) => agent.execute('echo', { message: `c${i}` })));
    assert.ok(counts().thread > mid, 'concurrent calls use the writer thread');
    const v = await g.admin.send('GET', '/v1/audit/verify', operatorHeaders(g.operator, 'GET', '/v1/audit/verify'));
    assert.equal((v.body as { intact: boolean }).intact, true, v.text);
  });
}
