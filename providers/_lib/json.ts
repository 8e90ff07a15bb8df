// Minimal JSON for providers: a parser into a small value tree (depth- and size-bounded) and a
// serializer. Used on host-supplied input and on HTTP bodies, so it must fail (trap) rather than
// guess on malformed text; a trap is reported by the gate as a provider error.

export const MAX_DEPTH: i32 = 64;

export enum Kind {
  Null,
  Bool,
  Num,
  Str,
  Arr,
  Obj,
}

export class JValue {
  kind: Kind = Kind.Null;
  b: bool = false;
  n: f64 = 0;
  s: string = "";
  items: Array<JValue> = [];
  keys: Array<string> = [];

  static nul(): JValue {
    return new JValue();
  }
  static bool(v: bool): JValue {
    const j = new JValue();
    j.kind = Kind.Bool;
    j.b = v;
    return j;
  }
  static num(v: f64): JValue {
    const j = new JValue();
    j.kind = Kind.Num;
    j.n = v;
    return j;
  }
  static str(v: string): JValue {
    const j = new JValue();
    j.kind = Kind.Str;
    j.s = v;
    return j;
  }
  static arr(): JValue {
    const j = new JValue();
    j.kind = Kind.Arr;
    return j;
  }
  static obj(): JValue {
    const j = new JValue();
    j.kind = Kind.Obj;
    return j;
  }

  isNull(): bool {
    return this.kind == Kind.Null;
  }
  isStr(): bool {
    return this.kind == Kind.Str;
  }
  isNum(): bool {
    return this.kind == Kind.Num;
  }
  isBool(): bool {
    return this.kind == Kind.Bool;
  }
  isArr(): bool {
    return this.kind == Kind.Arr;
  }
  isObj(): bool {
    return this.kind == Kind.Obj;
  }

  /** Object member lookup (last duplicate wins, as in JSON.parse); null when absent or not an object. */
  get(key: string): JValue | null {
    if (this.kind != Kind.Obj) return null;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }

  /** String member or the fallback when absent / not a string. */
  getStr(key: string, fallback: string): string {
    const v = this.get(key);
    if (v === null || v.kind != Kind.Str) return fallback;
    return v.s;
  }

  /** Sets (or appends) an object member. */
  set(key: string, value: JValue): JValue {
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) {
        this.items[i] = value;
        return this;
      }
    }
    this.keys.push(key);
    this.items.push(value);
    return this;
  }

  push(value: JValue): JValue {
    this.items.push(value);
    return this;
  }

  toJSON(): string {
    const out = new Array<string>();
    write(this, out);
    return out.join("");
  }
}

function write(v: JValue, out: Array<string>): void {
  switch (v.kind) {
    case Kind.Null:
      out.push("null");
      break;
    case Kind.Bool:
      out.push(v.b ? "true" : "false");
      break;
    case Kind.Num:
      out.push(numberToJSON(v.n));
      break;
    case Kind.Str:
      out.push(quote(v.s));
      break;
    case Kind.Arr: {
      out.push("[");
      for (let i = 0; i < v.items.length; i++) {
        if (i > 0) out.push(",");
        write(v.items[i], out);
      }
      out.push("]");
      break;
    }
    case Kind.Obj: {
      out.push("{");
      for (let i = 0; i < v.keys.length; i++) {
        if (i > 0) out.push(",");
        out.push(quote(v.keys[i]));
        out.push(":");
        write(v.items[i], out);
      }
      out.push("}");
      break;
    }
  }
}

export function numberToJSON(n: f64): string {
  if (!isFinite(n)) return "null";
  if (n == Math.floor(n) && Math.abs(n) < 9007199254740992.0) return (<i64>n).toString();
  return n.toString();
}

const HEX = "0123456789abcdef";

/** JSON string literal for `s` (quotes included). Two passes: exact length, then one buffer. */
export function quote(s: string): string {
  const len = s.length;
  let outLen = 2;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) outLen += 1;
    else if (c == 0x22 || c == 0x5c || c == 0x0a || c == 0x0d || c == 0x09) outLen += 2;
    else outLen += 6;
  }
  if (outLen == len + 2) return '"' + s + '"';
  const buf = new Uint16Array(outLen);
  let o = 0;
  buf[o++] = 0x22;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) {
      buf[o++] = <u16>c;
    } else if (c == 0x22 || c == 0x5c) {
      buf[o++] = 0x5c;
      buf[o++] = <u16>c;
    } else if (c == 0x0a) {
      buf[o++] = 0x5c;
      buf[o++] = 0x6e;
    } else if (c == 0x0d) {
      buf[o++] = 0x5c;
      buf[o++] = 0x72;
    } else if (c == 0x09) {
      buf[o++] = 0x5c;
      buf[o++] = 0x74;
    } else {
      buf[o++] = 0x5c;
      buf[o++] = 0x75;
      buf[o++] = 0x30;
      buf[o++] = 0x30;
      buf[o++] = <u16>HEX.charCodeAt((c >> 4) & 0xf);
      buf[o++] = <u16>HEX.charCodeAt(c & 0xf);
    }
  }
  buf[o++] = 0x22;
  return String.UTF16.decode(buf.buffer);
}

/** Parses a complete JSON text; traps (abort) on any syntax error, trailing data or excess depth. */
export function parse(text: string): JValue {
  const p = new Parser(text);
  p.ws();
  const v = p.value(0);
  p.ws();
  if (p.pos != text.length) throw new Error("json: trailing data");
  return v;
}

class Parser {
  src: string;
  pos: i32 = 0;

  constructor(src: string) {
    this.src = src;
  }

  ws(): void {
    const len = this.src.length;
    while (this.pos < len) {
      const c = this.src.charCodeAt(this.pos);
      if (c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09) this.pos++;
      else break;
    }
  }

  peek(): i32 {
    if (this.pos >= this.src.length) throw new Error("json: unexpected end");
    return this.src.charCodeAt(this.pos);
  }

  expect(c: i32): void {
    if (this.peek() != c) throw new Error("json: unexpected character");
    this.pos++;
  }

  literal(word: string): void {
    if (this.src.substring(this.pos, this.pos + word.length) != word) throw new Error("json: bad literal");
    this.pos += word.length;
  }

  value(depth: i32): JValue {
    if (depth > MAX_DEPTH) throw new Error("json: too deep");
    const c = this.peek();
    if (c == 0x7b) return this.object(depth + 1);
    if (c == 0x5b) return this.array(depth + 1);
    if (c == 0x22) return JValue.str(this.string());
    if (c == 0x74) {
      this.literal("true");
      return JValue.bool(true);
    }
    if (c == 0x66) {
      this.literal("false");
      return JValue.bool(false);
    }
    if (c == 0x6e) {
      this.literal("null");
      return JValue.nul();
    }
    return JValue.num(this.number());
  }

  object(depth: i32): JValue {
    const o = JValue.obj();
    this.expect(0x7b);
    this.ws();
    if (this.peek() == 0x7d) {
      this.pos++;
      return o;
    }
    while (true) {
      this.ws();
      const k = this.string();
      this.ws();
      this.expect(0x3a);
      this.ws();
      const v = this.value(depth);
      o.keys.push(k);
      o.items.push(v);
      this.ws();
      const c = this.peek();
      this.pos++;
      if (c == 0x2c) continue;
      if (c == 0x7d) return o;
      throw new Error("json: expected , or }");
    }
  }

  array(depth: i32): JValue {
    const a = JValue.arr();
    this.expect(0x5b);
    this.ws();
    if (this.peek() == 0x5d) {
      this.pos++;
      return a;
    }
    while (true) {
      this.ws();
      a.items.push(this.value(depth));
      this.ws();
      const c = this.peek();
      this.pos++;
      if (c == 0x2c) continue;
      if (c == 0x5d) return a;
      throw new Error("json: expected , or ]");
    }
  }

  string(): string {
    this.expect(0x22);
    const start = this.pos;
    const len = this.src.length;
    // Pass 1: find the closing quote and the decoded length; no allocation on the common path.
    let p = start;
    let outLen = 0;
    let escaped = false;
    while (true) {
      if (p >= len) throw new Error("json: unterminated string");
      const c = this.src.charCodeAt(p);
      if (c == 0x22) break;
      if (c < 0x20) throw new Error("json: control character in string");
      if (c == 0x5c) {
        escaped = true;
        if (p + 1 >= len) throw new Error("json: bad escape");
        p += this.src.charCodeAt(p + 1) == 0x75 ? 6 : 2;
      } else p++;
      outLen++;
    }
    const end = p;
    this.pos = end + 1;
    if (!escaped) return this.src.substring(start, end);
    // Pass 2: decode into one buffer of the exact size.
    const buf = new Uint16Array(outLen);
    let o = 0;
    p = start;
    while (p < end) {
      const c = this.src.charCodeAt(p);
      if (c != 0x5c) {
        buf[o++] = <u16>c;
        p++;
        continue;
      }
      const e = this.src.charCodeAt(p + 1);
      p += 2;
      if (e == 0x22 || e == 0x5c || e == 0x2f) buf[o++] = <u16>e;
      else if (e == 0x62) buf[o++] = 0x08;
      else if (e == 0x66) buf[o++] = 0x0c;
      else if (e == 0x6e) buf[o++] = 0x0a;
      else if (e == 0x72) buf[o++] = 0x0d;
      else if (e == 0x74) buf[o++] = 0x09;
      else if (e == 0x75) {
        if (p + 4 > end) throw new Error("json: bad unicode escape");
        let code: i32 = 0;
        for (let i = 0; i < 4; i++) {
          const h = this.src.charCodeAt(p + i);
          let d: i32 = -1;
          if (h >= 0x30 && h <= 0x39) d = h - 0x30;
          else if (h >= 0x61 && h <= 0x66) d = h - 0x61 + 10;
          else if (h >= 0x41 && h <= 0x46) d = h - 0x41 + 10;
          if (d < 0) throw new Error("json: bad unicode escape");
          code = (code << 4) | d;
        }
        p += 4;
        buf[o++] = <u16>code;
      } else throw new Error("json: bad escape");
    }
    if (o != outLen) throw new Error("json: escape accounting");
    return String.UTF16.decode(buf.buffer);
  }

  number(): f64 {
    const begin = this.pos;
    const len = this.src.length;
    if (this.pos < len && this.src.charCodeAt(this.pos) == 0x2d) this.pos++;
    const intStart = this.pos;
    while (this.pos < len && isDigit(this.src.charCodeAt(this.pos))) this.pos++;
    const intLen = this.pos - intStart;
    if (intLen == 0) throw new Error("json: bad number");
    if (intLen > 1 && this.src.charCodeAt(intStart) == 0x30) throw new Error("json: leading zero");
    if (this.pos < len && this.src.charCodeAt(this.pos) == 0x2e) {
      this.pos++;
      const f = this.pos;
      while (this.pos < len && isDigit(this.src.charCodeAt(this.pos))) this.pos++;
      if (this.pos == f) throw new Error("json: bad fraction");
    }
    if (this.pos < len && (this.src.charCodeAt(this.pos) | 0x20) == 0x65) {
      this.pos++;
      if (this.pos < len) {
        const s = this.src.charCodeAt(this.pos);
        if (s == 0x2b || s == 0x2d) this.pos++;
      }
      const e = this.pos;
      while (this.pos < len && isDigit(this.src.charCodeAt(this.pos))) this.pos++;
      if (this.pos == e) throw new Error("json: bad exponent");
    }
    return parseFloat(this.src.substring(begin, this.pos));
  }
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}
