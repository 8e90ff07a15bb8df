// Just enough of the WebAssembly binary format to read and rewrite a module's memory limits: walk
// the sections, decode the memory section, and re-encode it with a new maximum. Anything this does
// not understand (shared or 64-bit memory, custom page sizes, several memories) is refused.

import { compileModule, moduleImports } from './wasm-api.ts';

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
const SECTION_IMPORT = 2;
const SECTION_MEMORY = 5;

/** Memory limits in 64 KiB pages. */
export interface MemoryLimits {
  initial: number;
  maximum: number | undefined;
}

export interface Section {
  id: number;
  /** Offset of the section id byte. */
  start: number;
  /** Offset of the payload (after the size). */
  payloadStart: number;
  /** Offset one past the payload. */
  end: number;
}

export class WasmFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WasmFormatError';
  }
}

function readU32(bytes: Uint8Array, pos: number): [value: number, next: number] {
  let result = 0;
  let shift = 0;
  for (let i = 0; i < 5; i++) {
    const b = bytes[pos + i];
    if (b === undefined) throw new WasmFormatError('truncated LEB128');
    result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) {
      if (result > 0xffffffff) throw new WasmFormatError('LEB128 u32 out of range');
      return [result, pos + i + 1];
    }
    shift += 7;
  }
  throw new WasmFormatError('LEB128 u32 too long');
}

export function encodeU32(value: number): number[] {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new RangeError(`not a u32: ${value}`);
  const out: number[] = [];
  let v = value;
  do {
    let b = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

/** Lists the top-level sections; throws WasmFormatError when the framing is broken. */
export function sections(bytes: Uint8Array): Section[] {
  if (bytes.length < 8 || MAGIC.some((m, i) => bytes[i] !== m)) throw new WasmFormatError('not a WebAssembly module');
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) throw new WasmFormatError('unsupported WebAssembly version');
  const out: Section[] = [];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos] as number;
    const [size, payloadStart] = readU32(bytes, pos + 1);
    const end = payloadStart + size;
    if (end > bytes.length) throw new WasmFormatError('section overruns the module');
    out.push({ id, start: pos, payloadStart, end });
    pos = end;
  }
  return out;
}

/** The defined memory's limits, or undefined when the module defines none. Refuses what it cannot cap. */
export function readMemoryLimits(bytes: Uint8Array): MemoryLimits | undefined {
  const memory = sections(bytes).filter((s) => s.id === SECTION_MEMORY);
  if (memory.length === 0) return undefined;
  if (memory.length > 1) throw new WasmFormatError('more than one memory section');
  const sec = memory[0] as Section;
  const [count, p0] = readU32(bytes, sec.payloadStart);
  if (count === 0) return undefined;
  if (count > 1) throw new WasmFormatError('more than one memory');
  const flags = bytes[p0];
  if (flags !== 0x00 && flags !== 0x01) throw new WasmFormatError(`unsupported memory limits flags 0x${(flags ?? 0).toString(16)} (shared, 64-bit or custom page size)`);
  const [initial, p1] = readU32(bytes, p0 + 1);
  let maximum: number | undefined;
  let p2 = p1;
  if (flags === 0x01) [maximum, p2] = readU32(bytes, p1);
  if (p2 !== sec.end) throw new WasmFormatError('trailing bytes in the memory section');
  return { initial, maximum };
}

/** True when the import section declares any import of kind memory (2). */
export function importsMemory(bytes: Uint8Array): boolean {
  return moduleImports(compileModule(bytes)).some((i) => i.kind === 'memory');
}

/** The sections and the limits of the module's one defined memory; refuses an imported memory or none. */
function definedMemory(bytes: Uint8Array): { all: Section[]; limits: MemoryLimits } {
  const all = sections(bytes);
  if (all.some((s) => s.id === SECTION_IMPORT) && importsMemory(bytes)) throw new WasmFormatError('module imports its memory');
  const limits = readMemoryLimits(bytes);
  if (!limits) throw new WasmFormatError('module defines no memory');
  return { all, limits };
}

/**
 * Returns a copy of `bytes` whose single memory has maximum = min(declared maximum, maxPages).
 * Throws when the module's initial memory already exceeds maxPages or it defines no memory.
 */
export function capMemory(bytes: Uint8Array, maxPages: number): { bytes: Uint8Array; limits: MemoryLimits } {
  const { all, limits } = definedMemory(bytes);
  if (limits.initial > maxPages) throw new WasmFormatError(`initial memory ${limits.initial} pages exceeds the cap of ${maxPages} pages`);
  const maximum = Math.min(limits.maximum ?? maxPages, maxPages);
  const payload = [...encodeU32(1), 0x01, ...encodeU32(limits.initial), ...encodeU32(maximum)];
  const sec = all.find((s) => s.id === SECTION_MEMORY) as Section;
  const header = [SECTION_MEMORY, ...encodeU32(payload.length)];
  const out = new Uint8Array(bytes.length - (sec.end - sec.start) + header.length + payload.length);
  out.set(bytes.subarray(0, sec.start), 0);
  out.set(header, sec.start);
  out.set(payload, sec.start + header.length);
  out.set(bytes.subarray(sec.end), sec.start + header.length + payload.length);
  return { bytes: out, limits: { initial: limits.initial, maximum } };
}

function encodeName(name: string): number[] {
  const utf8 = [...Buffer.from(name, 'utf8')];
  return [...encodeU32(utf8.length), ...utf8];
}

function section(id: number, payload: readonly number[] | Uint8Array): Uint8Array {
  const header = [id, ...encodeU32(payload.length)];
  const out = new Uint8Array(header.length + payload.length);
  out.set(header, 0);
  out.set(payload, header.length);
  return out;
}

/**
 * Returns a copy of `bytes` whose single defined memory becomes an import `(import module name
 * (memory initial maximum))`, with the same limits; everything else is unchanged. The memory keeps
 * index 0 (a module with no other memory), so loads, stores, data segments and the `memory`
 * export refer to the imported one. The host then supplies the memory at instantiation (the
 * sandbox hands each fresh instance a zeroed memory from a pool: src/sandbox/sandbox.ts).
 * Requires a capped module: one memory with a maximum, none imported.
 */
export function importMemory(bytes: Uint8Array, module: string, name: string): { bytes: Uint8Array; limits: MemoryLimits & { maximum: number } } {
  const { all, limits } = definedMemory(bytes);
  if (limits.maximum === undefined) throw new WasmFormatError('memory has no maximum (cap it first)');
  const entry = [...encodeName(module), ...encodeName(name), 0x02, 0x01, ...encodeU32(limits.initial), ...encodeU32(limits.maximum)];
  const imports = all.find((s) => s.id === SECTION_IMPORT);
  let importSection: Uint8Array;
  if (imports) {
    const [count, entriesStart] = readU32(bytes, imports.payloadStart);
    importSection = section(SECTION_IMPORT, [...encodeU32(count + 1), ...bytes.subarray(entriesStart, imports.end), ...entry]);
  } else {
    importSection = section(SECTION_IMPORT, [...encodeU32(1), ...entry]);
  }
  // Rebuild: the import section replaces the old one (or goes before the first section that must
  // follow it: function, table, memory, ...), and the memory section is dropped.
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  let placed = false;
  for (const s of all) {
    if (!placed && (s.id === SECTION_IMPORT || (s.id > SECTION_IMPORT && s.id !== 0))) {
      parts.push(importSection);
      placed = true;
    }
    if (s.id === SECTION_IMPORT || s.id === SECTION_MEMORY) continue;
    parts.push(bytes.subarray(s.start, s.end));
  }
  if (!placed) parts.push(importSection);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return { bytes: out, limits: { initial: limits.initial, maximum: limits.maximum } };
}
