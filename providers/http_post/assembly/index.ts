// http_post: one POST with a caller-supplied body through the egress guard.
import { JValue } from "../../_lib/json";
import { emitError, emitHttp, emitOutput, readStep } from "../../_lib/protocol";

export function step(): i32 {
  const s = readStep();
  if (s.round == 0) {
    const url = s.input.get("url");
    const body = s.input.get("body");
    if (url === null || !url.isStr()) return emitError("invalid_input", "url must be a string");
    if (body === null || !body.isStr()) return emitError("invalid_input", "body must be a string");
    const headers = JValue.obj();
    headers.set("Content-Type", JValue.str(s.input.getStr("content_type", "application/json")));
    return emitHttp("POST", url.s, headers, body.s);
  }
  const r = s.response(0);
  const out = JValue.obj();
  out.set("status", r.get("status")!);
  out.set("headers", r.get("headers")!);
  out.set("body", r.get("body")!);
  out.set("truncated", r.get("truncated")!);
  return emitOutput(out);
}
