"""``If-None-Match`` on downloads (RFC 9110 §13.1.2): ``*``, weak comparison, lists, over a real server.

The parser is tested on its own first (no server), then every form against the running app on both
backends: the person's download, the bot's, and the web client's static files (Starlette's own check).
"""

from __future__ import annotations

import httpx
import pytest

from tests.attachments.conftest import image, sha
from tests.client import login, new_person
from tests.conftest import RunningServer
from zzd.http.conditional import entity_tags, none_match

URL = "/api/v1/uploads"
TAG = '"abc"'


@pytest.mark.parametrize(
    ("lines", "modified"),
    [
        (["*"], False),  # a current representation exists: 304 (was 200)
        ([" *\t"], False),
        (['W/"abc"'], False),  # weak comparison: the weak form of our strong tag matches (was 200)
        (['"abc"'], False),
        (['"x", "abc"'], False),
        (['"x"', '"abc"'], False),  # a list over two header lines is one list
        ([', "x",,  "abc" ,'], False),  # empty list elements are allowed (RFC 9110 5.6.1)
        (['"a,b", "abc"'], False),  # a comma inside an opaque tag does not split it
        (['"ABC"'], True),  # opaque tags compare character by character
        (['"x", "y"'], True),
        (["abc"], True),  # malformed: ignored, so the full answer
        (['"abc'], True),
        (['*, "abc"'], True),  # * is the whole field value or nothing
        (['"x" "abc"'], True),
        (['w/"abc"'], True),  # W/ is case-sensitive
        (['"a,b"'], True),
        ([], True),
    ],
)
def test_if_none_match_is_read_as_rfc_9110_says(lines: list[str], modified: bool) -> None:
    assert none_match(lines, TAG) is not modified
    assert none_match(lines, "W/" + TAG) is not modified  # a weak ETag of ours compares the same way


def test_entity_tags_keep_their_quotes_and_drop_the_weak_prefix() -> None:
    assert entity_tags('W/"a", "b,c" ,, ""') == ['"a"', '"b,c"', '""']
    assert entity_tags('"a" junk') is None


async def _uploaded(server: RunningServer) -> tuple[str, dict[str, str]]:
    _, lg = await new_person(server.services_obj)  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {(await login(server.http, lg))['access_token']}"}
    data = image()
    async with httpx.AsyncClient(base_url=server.http) as c:
        r = await c.post(
            URL, content=data, headers={**auth, "Content-Type": "image/jpeg", "X-Content-SHA256": sha(data)}
        )
        assert r.status_code == 201, r.text
    return sha(data), auth


async def test_downloads_answer_304_to_star_weak_tags_and_lists(up_server: RunningServer) -> None:
    digest, auth = await _uploaded(up_server)
    etag = f'"{digest}"'
    async with httpx.AsyncClient(base_url=up_server.http) as c:

        async def get(*lines: str, url: str = f"{URL}/{digest}") -> httpx.Response:
            return await c.get(url, headers=[*auth.items(), *(("If-None-Match", v) for v in lines)])

        full = await get()
        assert full.status_code == 200 and full.headers["etag"] == etag
        for lines in (["*"], [f"W/{etag}"], [f'"{"0" * 64}", {etag}'], ['"x"', etag]):
            r = await get(*lines)
            assert r.status_code == 304 and r.content == b"", (lines, r.status_code)
            # a 304 carries what the 200 would have, for the cache to update its stored answer
            assert r.headers["etag"] == etag and r.headers["cache-control"] == full.headers["cache-control"]
        for lines in ([f'"{digest.upper()}"'], ['"x", "y"'], [digest], [f"*, {etag}"]):
            r = await get(*lines)
            assert r.status_code == 200 and r.content == full.content, (lines, r.status_code)
        # * says "if any current representation": a file the caller may not see, or none, is still 404
        _, other = await new_person(up_server.services_obj)  # type: ignore[attr-defined]
        stranger = {"Authorization": f"Bearer {(await login(up_server.http, other))['access_token']}"}
        hidden = await c.get(f"{URL}/{digest}", headers={**stranger, "If-None-Match": "*"})
        assert hidden.status_code == 404, hidden.text
        missing = await get("*", url=f"{URL}/{'0' * 64}")
        assert missing.status_code == 404, missing.text


async def test_the_web_clients_files_answer_304_to_star_and_weak_tags(up_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=up_server.http) as c:
        full = await c.get("/web/app.css")
        assert full.status_code == 200 and full.headers["etag"].startswith('"')
        for value in ("*", "W/" + full.headers["etag"], f'"x", {full.headers["etag"]}'):
            r = await c.get("/web/app.css", headers={"If-None-Match": value})
            assert r.status_code == 304, (value, r.status_code)
