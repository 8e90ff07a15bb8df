// The provider side of Portcullis's step protocol (docs/providers.md). The host calls the exported
// `step` with {"input": <request>, "io": [<responses so far>]}; the provider answers with exactly one
// of {"http": <request>}, {"output": <value>} or {"error": {"code", "message"}}. No socket, no WASI.
import { Host } from "@extism/as-pdk";
import { JValue, parse, quote } from "./json";

/** Abort handler wired in by `--use abort=providers/_lib/protocol/providerAbort`: any abort traps. */
export function providerAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  unreachable();
}

export class Step {
  input: JValue;
  io: Array<JValue>;

  constructor(input: JValue, io: Array<JValue>) {
    this.input = input;
    this.io = io;
  }

  /** Number of HTTP responses already received (0 on the first call). */
  get round(): i32 {
    return this.io.length;
  }

  /** The i-th HTTP response: {status, headers, body, truncated}. */
  response(i: i32): JValue {
    return this.io[i];
  }
}

/** Reads and parses the host's step envelope; traps when it is not the documented shape. */
export function readStep(): Step {
  const env = parse(String.UTF8.decode(Host.input().buffer));
  if (!env.isObj()) throw new Error("step: envelope is not an object");
  const input = env.get("input");
  const io = env.get("io");
  if (input === null || io === null || !io.isArr()) throw new Error("step: missing input or io");
  return new Step(input, io.items);
}

/** Writes `s` as the call's output, UTF-8 encoded (as-pdk's outputString sizes by UTF-16 length). */
export function writeOutput(s: string): void {
  Host.output(Uint8Array.wrap(String.UTF8.encode(s)));
}

/** Answers with an HTTP request for the host to perform; `headers` is a JSON object (may be empty). */
export function emitHttp(method: string, url: string, headers: JValue, body: string | null): i32 {
  const req = JValue.obj();
  req.set("method", JValue.str(method));
  req.set("url", JValue.str(url));
  req.set("headers", headers);
  if (body !== null) req.set("body", JValue.str(body));
  writeOutput('{"http":' + req.toJSON() + "}");
  return 0;
}

/** Answers with the action's final output. */
export function emitOutput(output: JValue): i32 {
  writeOutput('{"output":' + output.toJSON() + "}");
  return 0;
}

/** Answers with a declared provider error (the gate reports it as a provider failure). */
export function emitError(code: string, message: string): i32 {
  writeOutput('{"error":{"code":' + quote(code) + ',"message":' + quote(message) + "}}");
  return 0;
}

/** Percent-encodes a path segment (RFC 3986 unreserved characters pass through). */
export function encodeSegment(s: string): string {
  const bytes = Uint8Array.wrap(String.UTF8.encode(s));
  const hex = "0123456789ABCDEF";
  const parts = new Array<string>();
  for (let i = 0; i < bytes.length; i++) {
    const b = <i32>bytes[i];
    const unreserved =
      (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d || b == 0x2e || b == 0x5f || b == 0x7e;
    if (unreserved) parts.push(String.fromCharCode(b));
    else {
      parts.push("%");
      parts.push(hex.charAt(b >> 4));
      parts.push(hex.charAt(b & 0xf));
    }
  }
  return parts.join("");
}

/** True for a 2xx status in an HTTP response value. */
export function isSuccess(response: JValue): bool {
  const s = response.get("status");
  if (s === null || !s.isNum()) return false;
  return s.n >= 200 && s.n < 300;
}

/** The numeric status of a response value (0 when absent). */
export function statusOf(response: JValue): f64 {
  const s = response.get("status");
  if (s === null || !s.isNum()) return 0;
  return s.n;
}

/** The response body parsed as JSON, or null when it is not JSON (or was truncated). */
export function jsonBody(response: JValue): JValue | null {
  const t = response.get("truncated");
  if (t !== null && t.isBool() && t.b) return null;
  const body = response.getStr("body", "");
  if (body.length == 0) return null;
  const c = body.charCodeAt(0);
  if (c != 0x7b && c != 0x5b) return null;
  return parse(body);
}
