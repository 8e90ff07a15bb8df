// slack_post: chat.postMessage. The bot token is injected by the gate's egress guard (never seen here).
import { JValue } from "../../_lib/json";
import { emitError, emitHttp, emitOutput, jsonBody, readStep, statusOf } from "../../_lib/protocol";

const ENDPOINT = "https://slack.com/api/chat.postMessage";

export function step(): i32 {
  const s = readStep();
  if (s.round == 0) {
    const channel = s.input.get("channel");
    const text = s.input.get("text");
    if (channel === null || !channel.isStr()) return emitError("invalid_input", "channel must be a string");
    if (text === null || !text.isStr()) return emitError("invalid_input", "text must be a string");
    const doc = JValue.obj();
    doc.set("channel", channel);
    doc.set("text", text);
    const thread = s.input.get("thread_ts");
    if (thread !== null && thread.isStr()) doc.set("thread_ts", thread);
    const headers = JValue.obj();
    headers.set("Content-Type", JValue.str("application/json; charset=utf-8"));
    return emitHttp("POST", ENDPOINT, headers, doc.toJSON());
  }
  const r = s.response(0);
  const out = JValue.obj();
  out.set("status", JValue.num(statusOf(r)));
  const body = jsonBody(r);
  if (body === null || !body.isObj()) {
    out.set("ok", JValue.bool(false));
    out.set("error", JValue.str("unexpected_response"));
    return emitOutput(out);
  }
  const ok = body.get("ok");
  const accepted = ok !== null && ok.isBool() && ok.b;
  out.set("ok", JValue.bool(accepted));
  if (accepted) {
    const ch = body.get("channel");
    const ts = body.get("ts");
    if (ch !== null && ch.isStr()) out.set("channel", ch);
    if (ts !== null && ts.isStr()) out.set("ts", ts);
  } else {
    out.set("error", JValue.str(body.getStr("error", "unknown_error")));
  }
  return emitOutput(out);
}
