// webhook_notify: POSTs {"event", "payload"} as JSON to a webhook; reports whether it was accepted.
import { JValue } from "../../_lib/json";
import { emitError, emitHttp, emitOutput, isSuccess, readStep } from "../../_lib/protocol";

export function step(): i32 {
  const s = readStep();
  if (s.round == 0) {
    const url = s.input.get("url");
    const event = s.input.get("event");
    const payload = s.input.get("payload");
    if (url === null || !url.isStr()) return emitError("invalid_input", "url must be a string");
    if (event === null || !event.isStr()) return emitError("invalid_input", "event must be a string");
    const doc = JValue.obj();
    doc.set("event", event);
    doc.set("payload", payload !== null ? payload : JValue.obj());
    const headers = JValue.obj();
    headers.set("Content-Type", JValue.str("application/json"));
    return emitHttp("POST", url.s, headers, doc.toJSON());
  }
  const r = s.response(0);
  const out = JValue.obj();
  out.set("status", r.get("status")!);
  out.set("delivered", JValue.bool(isSuccess(r)));
  return emitOutput(out);
}
