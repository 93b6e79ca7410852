"""Write the REST reference (docs/api/*.md) from the OpenAPI document and recorded real exchanges.

    python scripts/api_docs.py            # rewrite docs/api/ from /openapi.json's models + examples.json
    python scripts/api_docs.py --check    # exit 1 if docs/api/ is not what the code would write
    python scripts/api_docs.py --merge /tmp/examples.jsonl   # refresh examples.json from a recording
    python scripts/api_docs.py --record   # record RECORD_TESTS afresh (SQLite), merge, rewrite

The document is built in-process from the route table (no server). Examples are
real requests and answers recorded from the test servers
(``ZZD_RECORD_EXAMPLES=/tmp/examples.jsonl pytest …``, tests/examples_recorder.py),
one per operation, with secrets shortened; tests/test_api_docs.py checks each
against the operation's schemas and that the pages are up to date.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "docs" / "api"
EXAMPLES = OUT / "examples.json"
PAGES = {
    "auth": ("Sign-in, tokens and the signed-in person", "Tokens: `POST /api/v1/auth/token`; every other call "
             "sends `Authorization: Bearer <access_token>`."),
    "chat": ("Direct messages, history, the inbox and the event stream", "The same services as the WebSocket "
             "frames (docs/protocol.md); events are listed in the AsyncAPI document at `/asyncapi.json`."),
    "conversations": ("Conversations, position threads and groups", "Concepts: docs/conversations.md."),
    "org": ("The org tree: units, roles, positions, assignments, 找岗位", "Who may change what: docs/admin.md."),
    "selectors": ("Selectors: preview and resolution", "The selector language: docs/selectors.md."),
    "notices": ("Notices, receipts, progress and pending lists", "Concepts and receipt meanings: docs/notices.md."),
    "tasks": ("Tasks, categories, statistics and grid reports", "The task lifecycle: docs/tasks.md."),
    "uploads": ("Photo uploads and downloads", "Details: docs/uploads.md."),
    "admin": ("Administrative grants and the audit log", "docs/admin.md."),
    "apps": ("App registry (administrators)", "docs/apps.md."),
    "bot": ("Bot API (for apps, with an app token)", "docs/apps.md."),
    "meta": ("Health, readiness, metrics and the API documents", "For operators and tooling."),
}  # fmt: skip
#: The tests whose exchanges ``--record`` takes (SQLite only: a few minutes).
RECORD_TESTS = [
    "tests/test_api_tour.py", "tests/test_org_notices_api.py", "tests/test_contract_asyncapi.py",
    "tests/notices/test_receipts_meaning.py", "tests/tasks/test_api.py", "tests/conversations/test_api.py",
    "tests/conversations/test_groups.py", "tests/admin/test_grants.py", "tests/attachments/test_http.py",
    "tests/apps", "tests/test_ops.py", "tests/test_api_successes.py", "tests/admin/test_import.py",
    "tests/test_auth_sessions.py",
]  # fmt: skip
#: Shown for the password a person chooses at activation (at least 8 characters, as the schema asks).
PASSWORD_PLACEHOLDER = "<new password>"  # noqa: S105 - a placeholder, not a credential
SECRETS = ("access_token", "refresh_token", "client_secret", "password", "token")


def build() -> dict[str, Any]:
    from zzd.app import create_app
    from zzd.config import Settings
    from zzd.http.openapi import build_openapi

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp}/docs.db", jwt_keys="docs:" + "k" * 40)  # type: ignore[arg-type]
        app = create_app(settings)
        return build_openapi(app.routes)


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    if "anyOf" in schema or "oneOf" in schema:
        return " or ".join(_type(s) for s in schema.get("anyOf", schema.get("oneOf", [])))
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return f"map of {_type(schema['additionalProperties'])}"
    return str(kind) + (f" ({schema['format']})" if "format" in schema else "")


def _bounds(schema: dict[str, Any]) -> str:
    parts = []
    for key, word in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "min length"), ("maxLength", "max length"),
                      ("minItems", "min items"), ("maxItems", "max items"), ("pattern", "pattern")):  # fmt: skip
        if key in schema:
            parts.append(f"{word} `{schema[key]}`")
    for sub in schema.get("anyOf", []):
        b = _bounds(sub)
        if b:
            parts.append(b)
    if "default" in schema:
        parts.append(f"default `{json.dumps(schema['default'], ensure_ascii=False)}`")
    return ", ".join(parts)


def _fields(schema: dict[str, Any], components: dict[str, Any], *, describe: bool = False) -> list[str]:
    """The field table of a model; a union or a free-form object says what it is instead
    (``describe``: with the model's description, where no Types entry follows it)."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    props = schema.get("properties", {})
    alternatives = [_type(s) for s in schema.get("anyOf", schema.get("oneOf", [])) if "$ref" in s]
    doc = (schema.get("description") or "").replace("\n", " ") + " " if describe else ""
    if not props and alternatives:  # a union of models: say which, each has its own table under Types
        return [doc + "One of: " + ", ".join(f"[{a}](#{a.lower()})" for a in alternatives) + " (fields under Types)."]
    if not props:
        return [doc + "Any JSON object."] if schema.get("additionalProperties") else []
    required = set(schema.get("required", []))
    rows = ["| field | type | required | rules | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, sub in props.items():
        desc = (sub.get("description") or "").replace("\n", " ")
        rows.append(f"| `{name}` | {_type(sub)} | {'yes' if name in required else 'no'} | {_bounds(sub)} | {desc} |")
    return rows


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=2)
    lines = text.splitlines()
    return "\n".join(lines[:60] + (["  …"] if len(lines) > 60 else []))


def _operation(
    method: str, path: str, op: dict[str, Any], components: dict[str, Any], ex: dict[str, Any] | None
) -> list[str]:  # noqa: E501
    out = [f"### `{method.upper()} {path}`", "", op.get("summary", "")]
    if op.get("description"):
        out += ["", op["description"]]
    if "security" not in op:
        who = "anyone (no token)."
    elif path.startswith("/api/v1/bot"):
        who = "an app, with an app token (client credentials)."
    else:
        who = "a signed-in caller (bearer token); the checks are in the summary and docs/admin.md."
    out += ["", "Who may call: " + who]
    params = op.get("parameters", [])
    if params:
        out += ["", "| parameter | in | type | required | rules | meaning |", "| --- | --- | --- | --- | --- | --- |"]
        for p in params:
            s = p.get("schema", {})
            out.append(f"| `{p['name']}` | {p['in']} | {_type(s)} | {'yes' if p.get('required') else 'no'} | "
                       f"{_bounds(s)} | {p.get('description', '')} |")  # fmt: skip
    body = op.get("requestBody", {}).get("content", {})
    if "application/json" in body:
        form = " or form-encoded, each field once" if "application/x-www-form-urlencoded" in body else ""
        out += ["", f"Body (JSON{form}; unknown fields are refused with `invalid_body`):", ""]
        out += _fields(body["application/json"]["schema"], components)
    elif body:
        out += ["", f"Body: {op['requestBody'].get('description', '')} ({', '.join(body)})."]
    out += ["", "| status | meaning |", "| --- | --- |"]
    for status, resp in op["responses"].items():
        schema = resp.get("content", {}).get("application/json", {}).get("schema", {})
        what = _type(schema) if schema else ", ".join(resp.get("content", {})) or "no body"
        out.append(f"| {status} | {resp['description']} ({what}) |")
    ok = [s for s in op["responses"] if s.startswith("2")]
    schema = op["responses"][ok[0]].get("content", {}).get("application/json", {}).get("schema") if ok else None
    if schema:
        out += ["", f"Answer fields ({_type(schema)}):", ""] + _fields(schema, components, describe=True)
    if ex is not None:
        url = request_target(ex)
        out += ["", "Example (recorded from a real exchange):", "", "```http", f"{method.upper()} {url}"]
        # required headers besides the token (e.g. Idempotency-Key): their values are not recorded
        heads = [f"{p['name']}: …" for p in params if p.get("in") == "header" and p.get("required")]
        if ex.get("request") is not None:
            out += [*heads, "Content-Type: application/json", "", _json(ex["request"])]
        elif ex.get("upload"):
            up = ex["upload"]
            out += [f"Content-Type: {up['content_type']}", f"Content-Length: {up['bytes']}",
                    f"X-Content-SHA256: {up['sha256']}", "", f"<{up['bytes']} bytes of the image>"]  # fmt: skip
        out += ["```", "", f"Answer `{ex['status']}`:", "", "```json", _json(ex["response"]), "```"]
    return out + [""]


def request_target(ex: dict[str, Any]) -> str:
    """The example's path and query as a client sends them: a ``#`` in a path (``/units/#1/group``) is
    ``%23`` on the wire, or a client replaying the page literally sends the rest as a fragment."""
    path = ex["url"].replace("%", "%25").replace("#", "%23").replace("?", "%3F").replace(" ", "%20")
    return path + (f"?{ex['query']}" if ex.get("query") else "")


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _types(ops: list[tuple[str, str, dict[str, Any]]], components: dict[str, Any]) -> list[str]:
    """The nested types the page's answers and bodies use (so the page needs no other to build a client)."""
    seen: list[str] = []
    todo = [r for _, _, op in ops for r in _refs(op.get("requestBody", {})) + _refs(op["responses"])]
    while todo:
        name = todo.pop(0)
        if name in seen or name == "Error" or name not in components:
            continue
        seen.append(name)
        todo += _refs(components[name])
    out = ["## Types", ""] if seen else []
    for name in seen:
        rows = _fields({"$ref": f"#/components/schemas/{name}"}, components)
        if rows:
            doc = (components[name].get("description") or "").replace("\n", " ")
            out += [f"### {name}", ""] + ([doc, ""] if doc else []) + rows + [""]
    return out


def render(doc: dict[str, Any], examples: dict[str, Any]) -> dict[str, str]:
    """Page name → Markdown."""
    components = doc["components"]["schemas"]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            tag = (op.get("tags") or ["meta"])[0]
            by_tag.setdefault(tag, []).append((path, method, op))
    pages: dict[str, str] = {}
    index = ["# REST reference", "", "Generated by `scripts/api_docs.py` from the server's own OpenAPI document "
             "(`GET /openapi.json`) and real exchanges recorded from the test servers (`docs/api/examples.json`). "
             "Errors always have the body `{\"error\": {\"code\", \"message\", \"data\"?, \"retryable\"?}}`; the "
             "codes are listed in [../protocol.md](../protocol.md#error-codes). A JSON body is read up to "
             "393,216 bytes (384 KiB; more answers `400 bad_request` with `\"data\": {\"max_bytes\": 393216}`): "
             "room for every field at its documented maximum (lengths count characters) even when the client "
             "escapes each one as `\\uXXXX`, as Python's `json.dumps` does by default. The WebSocket protocol: "
             "[../protocol.md](../protocol.md) and `GET /asyncapi.json`.",
             "", "| page | operations |", "| --- | --- |"]  # fmt: skip
    for tag in [t for t in PAGES if t in by_tag] + sorted(set(by_tag) - set(PAGES)):
        title, intro = PAGES.get(tag, (tag, ""))
        lines = [
            f"# {title}",
            "",
            intro,
            "",
            "Generated from `/openapi.json` by `scripts/api_docs.py`; do not edit. A long list in an example "
            f"may show only its first {LIST_KEEP} items.",
            "",
        ]
        for path, method, op in by_tag[tag]:
            lines += _operation(method, path, op, components, examples.get(f"{method.upper()} {path}"))
        lines += _types(by_tag[tag], components)
        pages[f"{tag}.md"] = "\n".join(lines).rstrip() + "\n"
        index.append(f"| [{title}]({tag}.md) | {len(by_tag[tag])} |")
    from zzd.gateway.asyncapi import build_asyncapi

    pages["stream.md"] = render_stream(build_asyncapi())
    index.append(f"| [{STREAM_TITLE}](stream.md) (WebSocket, from `/asyncapi.json`) | {len(STREAM_OPS)} |")
    pages["README.md"] = "\n".join(index) + "\n"
    return pages


STREAM_TITLE = "The apps' event stream"
#: The stream's operations, as the page lists them (the channel's messages say the rest).
STREAM_OPS = ("hello", "ack", "ping", "event")


def _frame_fields(schema: dict[str, Any], components: dict[str, Any], prefix: str = "") -> list[str]:
    """Rows of a frame's fields, nested objects flattened as ``data.app_id``."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    rows = []
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        target = components[sub["$ref"].rsplit("/", 1)[1]] if "$ref" in sub else sub
        if target.get("properties"):
            rows += _frame_fields(target, components, f"{prefix}{name}.")
            continue
        desc = (sub.get("description") or target.get("description") or "").replace("\n", " ")
        yes = "yes" if name in required else "no"
        rows.append(f"| `{prefix}{name}` | {_type(target)} | {yes} | {_bounds(target)} | {desc} |")
    return rows


def render_stream(doc: dict[str, Any]) -> str:
    """``docs/api/stream.md``: the channel ``appStream`` of the AsyncAPI document, frame by frame."""
    channel, components = doc["channels"]["appStream"], doc["components"]["schemas"]
    out = [f"# {STREAM_TITLE}", "", "Generated from `/asyncapi.json` (channel `appStream`) by `scripts/api_docs.py`; "
           "do not edit. Concepts, delivery and retries: [../webhooks.md](../webhooks.md#stream-mode).", "",
           f"`{channel['address']}` — {channel['description']}", "", "## Frames", ""]  # fmt: skip
    for name, message in channel["messages"].items():
        out += [f"### {name}: {message['title']}", "", message["summary"], ""]
        out += ["| field | type | required | rules | meaning |", "| --- | --- | --- | --- | --- |"]
        out += _frame_fields(message["payload"], components) + [""]
        for ex in message.get("examples", []):
            out += ["Example (recorded from a real stream):", "", "```json", _json(ex["payload"]), "```", ""]
    out += ["## Close codes", "", "| code | when | the app should |", "| --- | --- | --- |"]
    out += [f"| {c['code']} | {c['when']} | {c['client_should']} |" for c in channel["x-close-codes"]]
    out += ["", "A browser (any `Origin` header) is refused with HTTP 403 before the upgrade."]
    return "\n".join(out) + "\n"


#: Lists longer than this are cut to their first ``LIST_KEEP`` items in the examples. Shorter ones stay
#: whole: cutting every list to five made a request and its answer disagree (six scopes sent, a
#: different five of them shown answered).
LIST_CUT, LIST_KEEP = 12, 5


def _shorten(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("…" if k in SECRETS and isinstance(v, str) else _shorten(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in (value[:LIST_KEEP] if len(value) > LIST_CUT else value)]
    return value


def merge(lines: Iterable[str], doc: dict[str, Any], keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """One example per operation: a success if there is one, the fullest answer among them.

    ``keep``: the examples so far; one of them that is a success stays when the recording has only refusals
    of its operation (a recording of a few tests used to replace successes with their 404 probes).
    """
    keep = keep or {}
    from zzd.http.openapi import openapi_path

    best: dict[str, dict[str, Any]] = {}
    for line in lines:
        ex = json.loads(line)
        key = f"{ex['method']} {openapi_path(ex['path'])}"
        if openapi_path(ex["path"]) not in doc["paths"]:
            continue
        ex["path"] = openapi_path(ex["path"])
        score = (200 <= ex["status"] < 300, len(json.dumps(ex["response"])) < 4000, len(json.dumps(ex["response"])))
        if key not in best or score > best[key]["_score"]:
            best[key] = {**ex, "_score": score}
    out = {}
    for k, ex in sorted(best.items()):
        if k in keep and keep[k]["status"] < 300 <= ex["status"]:
            continue  # a recording that only reached a refusal never replaces a success already shown
        clean = _shorten({f: v for f, v in ex.items() if f != "_score"})
        if k == "POST /api/v1/auth/activate" and isinstance(clean.get("request"), dict):
            clean["request"]["code"] = "…"  # the one-time activation code
            clean["request"]["password"] = PASSWORD_PLACEHOLDER
        out[k] = clean
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if docs/api/ differs from what would be written")
    ap.add_argument("--merge", type=Path, help="a recording (JSON lines) to refresh docs/api/examples.json from")
    ap.add_argument("--record", action="store_true", help="run RECORD_TESTS with the recorder, then --merge")
    args = ap.parse_args()
    if args.record:
        import os
        import subprocess

        args.merge = Path(tempfile.mkdtemp()) / "examples.jsonl"
        env = {**os.environ, "ZZD_RECORD_EXAMPLES": str(args.merge)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-k", "sqlite", "-p", "no:randomly", *RECORD_TESTS]
        subprocess.run(cmd, cwd=ROOT, env=env, check=False)  # noqa: S603 - our own interpreter and test paths
    doc = build()
    if args.merge:
        old = json.loads(EXAMPLES.read_text()) if EXAMPLES.exists() else {}
        new = {**old, **merge(args.merge.read_text().splitlines(), doc, old)}
        EXAMPLES.write_text(json.dumps(new, ensure_ascii=False, indent=1) + "\n")
    examples = json.loads(EXAMPLES.read_text()) if EXAMPLES.exists() else {}
    pages = render(doc, examples)
    if args.check:
        stale = [n for n, text in pages.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        if stale:
            print(f"docs/api is out of date ({', '.join(stale)}): run python scripts/api_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(pages)} pages, {len(examples)} examples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
