// UUID v7 (RFC 9562) for every id the gate mints: evt_, int_, grant_, rcpt_, trc_, apr_ ...
// Same layout and monotonic ordering as the `uuid` package's v7 (48-bit ms timestamp, then a
// 32-bit counter seeded at random each new millisecond and incremented within one), but the random
// bits come from a pooled randomFillSync instead of one WebCrypto call per id (~15 µs each here;
// an allowed execute mints about eight). Pool bytes are used once and never reused.
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 16 * 256;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

function random16(): Buffer {
  if (offset + 16 > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const r = pool.subarray(offset, offset + 16);
  offset += 16;
  return r;
}

let lastMs = -Infinity;
let seq = 0;
const HEX: string[] = Array.from({ length: 256 }, (_, i) => (i + 0x100).toString(16).slice(1));

/** A new lowercase UUID v7 string, strictly increasing within this process. */
export function uuidv7(): string {
  const rnd = random16();
  const now = Date.now();
  if (now > lastMs) {
    // 31 random bits (as uuid's v7Sequence): room to count up within the millisecond.
    seq = ((rnd[6]! & 0x7f) << 24) | (rnd[7]! << 16) | (rnd[8]! << 8) | rnd[9]!;
    lastMs = now;
  } else {
    seq = (seq + 1) | 0;
    if (seq === 0) lastMs++;
  }
  const ms = lastMs;
  const b = new Uint8Array(16);
  b[0] = (ms / 0x10000000000) & 0xff;
  b[1] = (ms / 0x100000000) & 0xff;
  b[2] = (ms / 0x1000000) & 0xff;
  b[3] = (ms / 0x10000) & 0xff;
  b[4] = (ms / 0x100) & 0xff;
  b[5] = ms & 0xff;
  b[6] = 0x70 | ((seq >>> 28) & 0x0f);
  b[7] = (seq >>> 20) & 0xff;
  b[8] = 0x80 | ((seq >>> 14) & 0x3f);
  b[9] = (seq >>> 6) & 0xff;
  b[10] = ((seq << 2) & 0xff) | (rnd[10]! & 0x03);
  b[11] = rnd[11]!;
  b[12] = rnd[12]!;
  b[13] = rnd[13]!;
  b[14] = rnd[14]!;
  b[15] = rnd[15]!;
  const h = (i: number) => HEX[b[i]!]!;
  return `${h(0)}${h(1)}${h(2)}${h(3)}-${h(4)}${h(5)}-${h(6)}${h(7)}-${h(8)}${h(9)}-${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`;
}
