// github_create_issue: POST /repos/{owner}/{repo}/issues. The token is injected by the egress guard.
import { JValue } from "../../_lib/json";
import { emitError, emitHttp, emitOutput, encodeSegment, isSuccess, jsonBody, readStep, statusOf } from "../../_lib/protocol";

export function step(): i32 {
  const s = readStep();
  if (s.round == 0) {
    const owner = s.input.get("owner");
    const repo = s.input.get("repo");
    const title = s.input.get("title");
    if (owner === null || !owner.isStr()) return emitError("invalid_input", "owner must be a string");
    if (repo === null || !repo.isStr()) return emitError("invalid_input", "repo must be a string");
    if (title === null || !title.isStr()) return emitError("invalid_input", "title must be a string");
    if (owner.s == "." || owner.s == ".." || repo.s == "." || repo.s == "..") {
      return emitError("invalid_input", "owner and repo must not be dot segments");
    }
    const doc = JValue.obj();
    doc.set("title", title);
    const body = s.input.get("body");
    if (body !== null && body.isStr()) doc.set("body", body);
    const labels = s.input.get("labels");
    if (labels !== null && labels.isArr()) doc.set("labels", labels);
    const headers = JValue.obj();
    headers.set("Accept", JValue.str("application/vnd.github+json"));
    headers.set("Content-Type", JValue.str("application/json"));
    headers.set("User-Agent", JValue.str("portcullis-github-create-issue"));
    headers.set("X-GitHub-Api-Version", JValue.str("2022-11-28"));
    const url = "https://api.github.com/repos/" + encodeSegment(owner.s) + "/" + encodeSegment(repo.s) + "/issues";
    return emitHttp("POST", url, headers, doc.toJSON());
  }
  const r = s.response(0);
  const out = JValue.obj();
  out.set("status", JValue.num(statusOf(r)));
  const parsed = jsonBody(r);
  if (parsed === null || !parsed.isObj()) return emitOutput(out);
  if (isSuccess(r)) {
    const number = parsed.get("number");
    const url = parsed.get("html_url");
    const id = parsed.get("id");
    if (number !== null && number.isNum()) out.set("number", number);
    if (url !== null && url.isStr()) out.set("html_url", url);
    if (id !== null && id.isNum()) out.set("id", id);
  } else {
    const message = parsed.get("message");
    if (message !== null && message.isStr()) out.set("message", message);
  }
  return emitOutput(out);
}
