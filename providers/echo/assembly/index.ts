// echo: returns the message it was given and its length. No I/O; the smallest complete provider.
import { JValue } from "../../_lib/json";
import { emitError, emitOutput, readStep } from "../../_lib/protocol";

export function step(): i32 {
  const s = readStep();
  const message = s.input.get("message");
  if (message === null || !message.isStr()) return emitError("invalid_input", "message must be a string");
  const out = JValue.obj();
  out.set("message", JValue.str(message.s));
  out.set("length", JValue.num(<f64>message.s.length));
  return emitOutput(out);
}
