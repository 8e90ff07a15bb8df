// readCappedBody/readIncoming over a real Unix socket (same server settings as the gate).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import type { GateEnv } from '../../src/http/env.ts';
import { installErrorHandler, readJsonBody } from '../../src/app/common.ts';
import { listenUnix } from '../../src/server.ts';

const dir = mkdtempSync(join(tmpdir(), 'body-'));
const sock = join(dir, 's.sock');
let started = 0, settled = 0;
const app = new Hono<GateEnv>();
installErrorHandler(app, 'client');
app.post('/echo', async (c) => {
  const delay = Number(c.req.query('delay') ?? 0);
  if (delay) await new Promise((r) => setTimeout(r, delay));
  started++;
  try {
    const body = await readJsonBody(c, 1024);
    return c.json({ ok: true, body });
  } finally {
    settled++;
  }
});
const listener = await listenUnix(app, sock, 0o600);
after(async () => { await listener.close(); rmSync(dir, { recursive: true, force: true }); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function open(): Promise<Socket> {
  return new Promise((res, rej) => { const s = connect(sock, () => res(s)); s.once('error', rej); });
}
function collect(s: Socket): { text: () => string; closed: Promise<void> } {
  let buf = '';
  s.on('data', (d) => { buf += d.toString('latin1'); });
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  s.on('error', () => undefined);
  return { text: () => buf, closed };
}
const req = (body: string, extra = '') => `POST /echo${extra} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

test('keep-alive and pipelining: each body goes to its own request', async () => {
  const s = await open();
  const c = collect(s);
  s.write(req('{"a":1}') + req('{"b":2}'));
  await sleep(200);
  s.write(req('{"c":3}'));
  await sleep(200);
  const t = c.text();
  assert.equal((t.match(/HTTP\/1.1 200/g) ?? []).length, 3, t);
  assert.match(t, /"a":1/); assert.match(t, /"b":2/); assert.match(t, /"c":3/);
  s.destroy();
});

test('chunked over the cap: 413 while the client is still sending; the connection does not stay pinned', async () => {
  const s = await open();
  const c = collect(s);
  s.write('POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
  const chunk = 'x'.repeat(600);
  let stop = false;
  (async () => { while (!stop && !s.destroyed) { s.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`); await sleep(5); } })();
  const t0 = Date.now();
  while (!/HTTP\/1.1 413/.test(c.text()) && Date.now() - t0 < 3000) await sleep(10);
  assert.match(c.text(), /HTTP\/1.1 413/);
  const closed = await Promise.race([c.closed.then(() => true), sleep(3000).then(() => false)]);
  stop = true;
  s.destroy();
  assert.ok(closed, 'server kept a connection with an unbounded unread body open');
});

test('a client that goes away mid-body: the handler settles (no leaked pending read)', async () => {
  const before = settled;
  const s = await open();
  collect(s);
  s.write('POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":');
  await sleep(100);
  s.destroy();
  await sleep(300);
  assert.equal(settled, started);
  assert.equal(settled, before + 1);
});

test('a client that sends the whole body and half-closes before the handler reads it', async () => {
  const s = await open();
  const c = collect(s);
  s.write(req('{"late":1}', '?delay=100'));
  s.end();
  await Promise.race([c.closed, sleep(2000)]);
  await sleep(200);
  assert.equal(settled, started, 'handler still pending');
});

test('the handler starts reading after the body arrived (async work first), keep-alive', async () => {
  const s = await open();
  const c = collect(s);
  s.write(req('{"d":4}', '?delay=50'));
  await sleep(300);
  assert.match(c.text(), /HTTP\/1.1 200[\s\S]*"d":4/);
  s.destroy();
});
