"""docs/api/ is what scripts/api_docs.py writes from the code, and its examples fit the schemas.

A route or model change that is not regenerated fails here; so does an
example (a recorded real exchange) that the current schemas would reject, in
its request or its answer.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import jsonschema_rs  # comes with schemathesis (dev), pinned in requirements.lock
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("api_docs", ROOT / "scripts" / "api_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def api_docs() -> Any:
    return _script()


@pytest.fixture(scope="module")
def document(api_docs: Any) -> dict[str, Any]:
    return api_docs.build()  # type: ignore[no-any-return]


def test_pages_are_up_to_date(api_docs: Any, document: dict[str, Any]) -> None:
    examples = json.loads((ROOT / "docs" / "api" / "examples.json").read_text())
    pages = api_docs.render(document, examples)
    stale = [n for n, text in pages.items() if (ROOT / "docs" / "api" / n).read_text() != text]
    assert not stale, f"{stale}: run .venv/bin/python scripts/api_docs.py (and commit docs/api/)"
    for domain in ("auth", "chat", "conversations", "org", "selectors", "notices", "tasks", "uploads"):
        assert f"{domain}.md" in pages


def _check(schema: dict[str, Any], document: dict[str, Any], value: Any) -> list[str]:
    validator = jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})
    return [e.message for e in validator.iter_errors(value)]


def test_examples_fit_the_operations_schemas(document: dict[str, Any]) -> None:
    examples = json.loads((ROOT / "docs" / "api" / "examples.json").read_text())
    assert len(examples) >= 40
    problems = []
    for key, ex in examples.items():
        method, path = key.split(" ", 1)
        op = document["paths"].get(path, {}).get(method.lower())
        if op is None:
            problems.append(f"{key}: no such operation any more")
            continue
        answer = op["responses"].get(str(ex["status"]), {}).get("content", {}).get("application/json")
        if answer is None:
            problems.append(f"{key}: status {ex['status']} is not documented")
        elif ex["status"] < 300:
            problems += [f"{key} answer: {m}" for m in _check(answer["schema"], document, ex["response"])[:3]]
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None and ex["request"] is not None and ex["status"] < 300:
            problems += [f"{key} request: {m}" for m in _check(body["schema"], document, ex["request"])[:3]]
    hint = "\nre-record the examples: .venv/bin/python scripts/api_docs.py --record (and commit docs/api/)"
    assert not problems, "\n".join(problems) + hint


def test_examples_can_be_replayed_literally(api_docs: Any) -> None:
    """Each page's request line is what a client sends: ``/api/v1/units/#1/group`` was cut at the ``#``."""
    from urllib.parse import unquote, urlsplit

    examples = json.loads((ROOT / "docs" / "api" / "examples.json").read_text())
    for key, ex in examples.items():
        target = urlsplit(api_docs.request_target(ex))
        assert target.fragment == "" and unquote(target.path) == ex["url"], (key, target)
        assert target.query == ex["query"], key
    page = (ROOT / "docs" / "api" / "conversations.md").read_text()
    assert "POST /api/v1/units/%231/group" in page


def test_every_answer_says_what_it_holds(api_docs: Any, document: dict[str, Any]) -> None:
    """An "Answer fields" heading is never followed by nothing (sign-in's answer, a union, was an empty table)."""
    examples = json.loads((ROOT / "docs" / "api" / "examples.json").read_text())
    for name, text in api_docs.render(document, examples).items():
        lines = [line for line in text.splitlines() if line.strip()]
        for i, line in enumerate(lines):
            if line.startswith("Answer fields ("):
                after = lines[i + 1]
                assert not after.startswith(("Example", "###", "## ")), (name, line, after)
    auth = (ROOT / "docs" / "api" / "auth.md").read_text()
    assert "One of: [TokenAnswer](#tokenanswer), [AppToken](#apptoken)" in auth


#: Operations whose success answers no JSON (the file itself), so their example is a refusal.
NO_JSON_SUCCESS = {"GET /api/v1/uploads/{digest}"}


def test_every_person_facing_operation_shows_a_success(document: dict[str, Any]) -> None:
    """A client author sees what a working call answers, not only a 404 probe (history, reports, uploads …)."""
    examples = json.loads((ROOT / "docs" / "api" / "examples.json").read_text())
    pages = {"auth", "chat", "conversations", "org", "selectors", "notices", "tasks", "uploads"}
    missing = []
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            key = f"{method.upper()} {path}"
            if (op.get("tags") or ["meta"])[0] not in pages or key in NO_JSON_SUCCESS:
                continue
            ex = examples.get(key)
            if ex is None or ex["status"] >= 300:
                missing.append(key)
    assert not missing, f"{missing}: record a success (tests/test_api_successes.py, scripts/api_docs.py --record)"


def test_a_recording_of_refusals_never_replaces_a_success(api_docs: Any, document: dict[str, Any]) -> None:
    examples = json.loads((ROOT / "docs" / "api" / "examples.json").read_text())
    key = "GET /api/v1/reports/{report_id}"
    refusal = {"error": {"code": "not_found", "message": "no such report"}}
    probe = {"method": "GET", "path": "/api/v1/reports/{report_id}", "url": "/api/v1/reports/9", "query": "",
             "request": None, "status": 404, "response": refusal}  # fmt: skip
    assert examples[key]["status"] == 200
    assert key not in api_docs.merge([json.dumps(probe)], document, examples)
    assert api_docs.merge([json.dumps(probe)], document, {})[key]["status"] == 404


def test_an_example_keeps_short_lists_whole_so_request_and_answer_agree(
    api_docs: Any, document: dict[str, Any]
) -> None:
    """Cutting every list to five made POST /api/v1/apps send six scopes and show a different five answered."""
    six = ["notice:send", "task:create", "task:act", "report:read", "chat:bot", "org:read"]
    line = {"method": "POST", "path": "/api/v1/apps", "url": "/api/v1/apps", "query": "", "status": 201,
            "request": {"scopes": six}, "response": {"scopes": sorted(six), "ids": list(range(20))}}  # fmt: skip
    got = api_docs.merge([json.dumps(line)], document, {})["POST /api/v1/apps"]
    assert got["request"]["scopes"] == six and got["response"]["scopes"] == sorted(six)
    assert got["response"]["ids"] == [0, 1, 2, 3, 4]  # a long list is still cut


def test_the_examples_show_required_headers(api_docs: Any, document: dict[str, Any]) -> None:
    """The bot API's creates show their Idempotency-Key in the example (the header is required)."""
    examples = json.loads((ROOT / "docs" / "api" / "examples.json").read_text())
    pages = api_docs.render(document, examples)
    assert "POST /api/v1/bot/notices\nIdempotency-Key: …\nContent-Type: application/json" in pages["bot.md"]


def test_every_rest_error_code_is_listed_under_its_status() -> None:
    """The reference's status tables name every code REST can answer: a docs-only app client met
    invalid_client, insufficient_scope, address_not_allowed and idempotency_key_reused in answers
    that the bot pages did not list."""
    from kernel.errors import ErrorCode
    from zzd.http.contract import ERRORS

    listed = " ".join(ERRORS.values())
    # WebSocket-only frames, the 500 body, and 408 (an upload's idle timeout, on its own page)
    elsewhere = {"invalid_frame", "unknown_type", "internal_error", "incomplete_upload"}
    assert [c.value for c in ErrorCode if c.value not in listed and c.value not in elsewhere] == []


#: The answers a person's client reads most: every field says what it holds (a Gansu client from the
#: docs alone had to guess next_since, unread, owner_unit_id vs origin_unit_id, receipt times …).
DESCRIBED = ("Me", "Posted", "InboxItem", "LastMessage", "HistoryMessage", "EventPage", "StoredEvent", "Sent",
             "Receipt", "UnitProgress", "Totals", "PendingItem", "TaskView", "TaskDetail", "TaskEvent", "ReportView",
             "PositionView", "DirectoryHit", "Preview",
             # and what it writes
             "TokenRequest", "SendBody", "PostBody", "ReadBody", "MuteBody", "GroupBody", "MembersBody", "NoticeBody",
             "AckBody", "RemindBody", "TaskAction", "NoticeTasks", "NewReport", "LocationIn",
             "UnitGroupBody")  # fmt: skip


def test_the_answers_a_client_reads_most_describe_every_field(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    bare = [f"{name}.{field}" for name in DESCRIBED
            for field, prop in components[name]["properties"].items() if not prop.get("description")]  # fmt: skip
    assert not bare, f"fields without a meaning: {bare}"


def test_every_app_operation_shows_a_success(document: dict[str, Any]) -> None:
    """An app developer writing from docs/api/ sees a working call for every app and bot operation
    (the workbench, a notice's live count and the bot's photo upload had no example at all)."""
    examples = json.loads((ROOT / "docs" / "api" / "examples.json").read_text())
    missing = [
        f"{method.upper()} {path}"
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if (op.get("tags") or ["meta"])[0] in ("apps", "bot")
        and "application/json" in op["responses"].get("200", op["responses"].get("201", {})).get("content", {})
        and (examples.get(f"{method.upper()} {path}") or {"status": 999})["status"] >= 300
    ]
    assert not missing, f"{missing}: record a success (tests/test_api_successes.py, scripts/api_docs.py --merge)"
