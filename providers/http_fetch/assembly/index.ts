// http_fetch: one GET through the gate's egress guard; returns status, headers and body.
import { JValue } from "../../_lib/json";
import { emitError, emitHttp, emitOutput, readStep } from "../../_lib/protocol";

export function step(): i32 {
  const s = readStep();
  if (s.round == 0) {
    const url = s.input.get("url");
    if (url === null || !url.isStr()) return emitError("invalid_input", "url must be a string");
    const given = s.input.get("headers");
    const headers = given !== null && given.isObj() ? given : JValue.obj();
    return emitHttp("GET", url.s, headers, null);
  }
  const r = s.response(0);
  const out = JValue.obj();
  out.set("status", r.get("status")!);
  out.set("headers", r.get("headers")!);
  out.set("body", r.get("body")!);
  out.set("truncated", r.get("truncated")!);
  return emitOutput(out);
}
