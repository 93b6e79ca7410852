"""What an administration console written from the docs sends, and the answers it must get.

Found by driving the org endpoints as a client that knows only docs/ (an audit on a
province nobody had tuned on): a unit named ``"#id"`` in a body, the field a bad body
names, and role names that would make one word mean two roles.
"""

from __future__ import annotations

from typing import Any

import httpx

from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat, unit_id_at

COUNTY = "990101"
TOWN, OTHER_TOWN = "990101001", "990101002"
VILLAGE, OTHER_VILLAGE = "990101001001", "990101001002"


async def _admin(rs: RunningServer, unit: str | None, perms: set[str]) -> str:
    s = rs.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s, "管理员")
    await s.grants.grant(SYSTEM, pid, unit, frozenset(perms))
    return str((await login(rs.http, lg))["access_token"])


def _org_state(rs: RunningServer) -> tuple[Any, ...]:
    idx = rs.services_obj.org_index.index  # type: ignore[attr-defined]
    return idx.version, idx.unit_count(), idx.position_count()


async def test_a_body_names_a_unit_by_hash_id_as_the_docs_say(org_server: RunningServer) -> None:
    """``"#17"`` names unit 17 in every body field that takes a unit (before: looked up as a code, 404)."""
    rs = org_server
    town, other_town = unit_id_at(rs, TOWN), unit_id_at(rs, OTHER_TOWN)
    token = await _admin(rs, COUNTY, {"org"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.post("/api/v1/org/units", json={"parent": f"#{town}", "name": "井号村"})
        assert r.status_code == 201, r.text
        made = r.json()
        assert (made["parent_id"], made["path"][-1]) == (town, "井号村")
        r = await h.post("/api/v1/org/positions", json={"unit": f"#{made['id']}", "role": "village_secretary"})
        assert r.status_code == 201, r.text
        assert r.json()["unit_id"] == made["id"]
        ref = made["code"]
        r = await h.post(f"/api/v1/org/units/{ref}/preview", json={"action": "move", "target": f"#{other_town}"})
        assert r.status_code == 200, r.text
        assert r.json()["target"]["id"] == other_town
        r = await h.post(f"/api/v1/org/units/{ref}/move", json={"parent": f"#{other_town}"})
        assert r.status_code == 200, r.text
        assert r.json()["parent_id"] == other_town
        into = unit_id_at(rs, "990101002001")
        r = await h.post(f"/api/v1/org/units/{ref}/merge", json={"into": f"#{into}"})
        assert r.status_code == 200, r.text
        assert r.json()["into_id"] == into
        # an id no unit has is an unknown unit: 404; "#" with no id, or one no id column holds, names no
        # unit in any form: 400 naming the field (docs/selectors.md); nothing changes
        before = _org_state(rs)
        r = await h.post("/api/v1/org/units", json={"parent": "#99999999", "name": "无"})
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), r.text
        for body in ({"parent": "#", "name": "无"}, {"parent": "#99999999999999999999", "name": "无"}):
            r = await h.post("/api/v1/org/units", json=body)
            assert (r.status_code, r.json()["error"]["data"]["field"]) == (400, "parent"), (body, r.text)
        r = await h.post("/api/v1/org/positions", json={"unit": "#99999999", "role": "village_secretary"})
        assert r.status_code == 404, r.text
        assert _org_state(rs) == before


async def test_a_bad_body_names_the_field_the_client_sent(org_server: RunningServer) -> None:
    """``data.field`` is a field of the body, never pydantic's name for one form of a union (``parent.int``)."""
    rs = org_server
    token = await _admin(rs, None, {"org", "roles"})
    head = await _seat_head(rs)
    calls: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/api/v1/org/units", {"parent": "", "name": "x"}, "parent"),
        ("POST", "/api/v1/org/units", {"parent": True, "name": "x"}, "parent"),
        ("POST", f"/api/v1/org/units/{VILLAGE}/move", {"parent": 1.5}, "parent"),
        ("POST", f"/api/v1/org/units/{VILLAGE}/merge", {"into": ""}, "into"),
        ("POST", f"/api/v1/org/units/{VILLAGE}/preview", {"action": "move", "target": []}, "target"),
        ("POST", "/api/v1/org/positions", {"unit": "", "role": "village_secretary"}, "unit"),
        ("POST", "/api/v1/org/preview", {"as_position": head, "selector": ""}, "selector"),
        ("POST", "/api/v1/org/preview", {"as_position": head, "selector": "x" * 4001}, "selector"),
        ("POST", "/api/v1/org/preview", {"as_position": head, "selector": "*@990101", "under": ""}, "under"),
        ("POST", "/api/v1/org/roles", {"key": "oa_a", "name": "甲", "levels": [True]}, "levels.0"),
    ]
    before = _org_state(rs)
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        for method, path, body, field in calls:
            r = await h.request(method, path, json=body)
            assert r.status_code == 400, (path, body, r.text)
            err = r.json()["error"]
            assert err["code"] == "invalid_body", (path, body, err)
            assert err["data"]["field"] == field, (path, body, err)
            assert [e["field"] for e in err["data"]["errors"]] == [field], err  # one entry per field
            assert f"invalid request body: {field}: " in err["message"], err
    assert _org_state(rs) == before


async def _seat_head(rs: RunningServer) -> int:
    _pid, _lg, position, _token = await seat(rs, COUNTY, "county_head")
    return position


async def test_role_keys_and_names_never_name_two_roles(org_server: RunningServer) -> None:
    """A role is named by key or name alike: a new name may not be another role's key, nor a key another's name.

    Before, ``{"name": "grid_worker"}`` made a second role answering to ``grid_worker`` (which one a
    selector meant depended on load order); a NUL in a new role's name was stored (SQLite) or
    answered 500 (PostgreSQL); an unknown level named no field.
    """
    rs = org_server
    token = await _admin(rs, None, {"roles"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        catalog = (await h.get("/api/v1/org/roles")).json()["roles"]
        r = await h.post("/api/v1/org/roles", json={"key": "oa_patrol", "name": "patrol", "levels": ["village"]})
        assert r.status_code == 201, r.text
        catalog = (await h.get("/api/v1/org/roles")).json()["roles"]
        version = _org_state(rs)
        refused = [
            ({"key": "oa_clash", "name": "grid_worker", "levels": [5]}, 409, "already_exists", "name"),
            ({"key": "patrol", "name": "巡逻员", "levels": [5]}, 409, "already_exists", "key"),
            ({"key": "grid_worker", "name": "巡逻员", "levels": [5]}, 409, "already_exists", "key"),
            ({"key": "oa_clash", "name": "专职网格员", "levels": [5]}, 409, "already_exists", "name"),
            ({"key": "oa_nul", "name": "巡\x00逻", "levels": [5]}, 400, "invalid_text", "name"),
            ({"key": "oa_blank", "name": "   ", "levels": [5]}, 400, "invalid_text", "name"),
            ({"key": "oa_lvl", "name": "巡逻员", "levels": ["planet"]}, 400, "bad_request", "levels"),
        ]
        for body, status, code, field in refused:
            r = await h.post("/api/v1/org/roles", json=body)
            assert r.status_code == status, (body, r.text)
            err = r.json()["error"]
            assert (err["code"], err["data"]["field"]) == (code, field), (body, err)
        for ref, body in (("oa_patrol", {"name": "grid_worker"}), ("patrol", {"name": "village_secretary"})):
            r = await h.patch(f"/api/v1/org/roles/{ref}", json=body)
            assert r.status_code == 409, (ref, body, r.text)
            assert r.json()["error"]["data"]["field"] == "name"
        r = await h.patch("/api/v1/org/roles/oa_patrol", json={"name": "巡\x00逻"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_text", r.text
        assert (await h.get("/api/v1/org/roles")).json()["roles"] == catalog
        assert _org_state(rs) == version
        # the words still name the roles they named: grid_worker is the grid worker
        r = await h.get("/api/v1/org/search", params={"q": "grid_worker", "limit": 100})
        assert {hit["role_key"] for hit in r.json()["hits"]} == {"grid_worker"}


async def test_a_place_is_found_by_the_pinyin_it_is_spoken_with(org_server: RunningServer) -> None:
    """找岗位 finds 长沙 by "changsha" (and still by the characters' "zhangsha"), 重庆 by "chongqing".

    Before, each character was read alone, so a polyphone took its commonest reading and a
    place typed as it is spoken was not found: "changsha", "chongqing", "xiamen", "huangpi".
    """
    rs = org_server
    token = await _admin(rs, COUNTY, {"org"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        made = {}
        for name in ("长沙村", "重庆村"):
            r = await h.post("/api/v1/org/units", json={"parent": TOWN, "name": name})
            assert r.status_code == 201, r.text
            r = await h.post("/api/v1/org/positions", json={"unit": r.json()["code"], "role": "village_secretary"})
            assert r.status_code == 201, r.text
            made[name] = r.json()["id"]

        async def found(q: str) -> set[int]:
            r = await h.get("/api/v1/org/search", params={"q": q, "limit": 100})
            assert r.status_code == 200, r.text
            return {hit["position_id"] for hit in r.json()["hits"]}

        for q in ("changshacun", "changsha", "zhangsha", "csc", "zsc", "长沙村"):
            assert made["长沙村"] in await found(q), q
        for q in ("chongqing", "zhongqing", "cqc"):
            assert made["重庆村"] in await found(q), q
        assert made["长沙村"] not in await found("chongqing")
        # a rename is read the same way at once
        r = await h.get(f"/api/v1/org/positions/{made['重庆村']}")
        unit = r.json()["unit_id"]
        r = await h.patch(f"/api/v1/org/units/%23{unit}", json={"name": "厦门村"})
        assert r.status_code == 200, r.text
        assert made["重庆村"] in await found("xiamencun")
        assert made["重庆村"] not in await found("chongqing")


async def test_an_administrator_removes_a_phone_with_an_empty_string(org_server: RunningServer) -> None:
    """``{"phone": ""}`` removes a phone (before: 400, so a wrong number could only be replaced)."""
    rs = org_server
    pid, _lg, _position, _token = await seat(rs, VILLAGE, "village_secretary")
    token = await _admin(rs, COUNTY, {"assignments"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.patch(f"/api/v1/org/persons/{pid}", json={"phone": "13800000009"})
        assert r.status_code == 200 and r.json()["phone"] == "13800000009", r.text
        r = await h.patch(f"/api/v1/org/persons/{pid}", json={"name": "改名不改号"})
        assert r.json()["phone"] == "13800000009", r.text  # absent: left as it is
        r = await h.patch(f"/api/v1/org/persons/{pid}", json={"phone": None})
        assert r.json()["phone"] == "13800000009", r.text  # null: left as it is
        r = await h.patch(f"/api/v1/org/persons/{pid}", json={"phone": ""})
        assert r.status_code == 200, r.text
        assert r.json()["phone"] is None
        r = await h.get(f"/api/v1/org/persons/{pid}")
        assert (r.json()["name"], r.json()["phone"]) == ("改名不改号", None)
        r = await h.patch(f"/api/v1/org/persons/{pid}", json={"phone": "1" * 33})
        assert r.status_code == 400 and r.json()["error"]["data"]["field"] == "phone", r.text


async def test_a_unit_made_without_a_code_never_gets_a_taken_one(org_server: RunningServer) -> None:
    """After a child moves away, merges away or retires, a new child without ``code`` still gets a free one.

    The default ``<parent code>x<NNN>`` counted the parent's children, which drops when one
    leaves while its code stays taken: every create under that parent answered
    ``409 already_exists`` for a code the client never sent.
    """
    rs = org_server
    token = await _admin(rs, COUNTY, {"org"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:

        async def create(name: str) -> dict[str, Any]:
            r = await h.post("/api/v1/org/units", json={"parent": TOWN, "name": name})
            assert r.status_code == 201, r.text
            return dict(r.json())

        first, second = await create("先建村"), await create("再建村")
        r = await h.post(f"/api/v1/org/units/{first['code']}/move", json={"parent": OTHER_TOWN})
        assert r.status_code == 200, r.text
        third = await create("三建村")  # the count is back to what it was when `second` was made
        r = await h.post(f"/api/v1/org/units/{third['code']}/retire", json={})
        assert r.status_code == 200, r.text
        fourth = await create("四建村")
        codes = [u["code"] for u in (first, second, third, fourth)]
        assert len(set(codes)) == 4, codes
        assert all(c.startswith(f"{TOWN}x") for c in codes), codes
        r = await h.get(f"/api/v1/org/units/{fourth['code']}")
        assert (r.status_code, r.json()["name"]) == (200, "四建村")


async def test_a_preview_refuses_what_the_edit_would_refuse(org_server: RunningServer) -> None:
    """``…/preview`` answers the edit's own 400/409 (before: 200 and counts for an edit that then failed)."""
    rs = org_server
    token = await _admin(rs, None, {"org"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        cases = [
            ({"action": "move", "target": TOWN}, 409, "conflict", None),  # already there
            ({"action": "move", "target": COUNTY}, 400, "bad_request", "target"),  # not one level above
            ({"action": "merge", "target": VILLAGE}, 400, "bad_request", "target"),  # into itself
            ({"action": "merge", "target": OTHER_TOWN}, 400, "bad_request", "target"),  # another level
        ]
        for body, status, code, field in cases:
            edit = {"move": "move", "merge": "merge"}[str(body["action"])]
            key = "parent" if edit == "move" else "into"
            r = await h.post(f"/api/v1/org/units/{VILLAGE}/{edit}", json={key: body["target"]})
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text  # the edit refuses
            r = await h.post(f"/api/v1/org/units/{VILLAGE}/preview", json=body)
            assert r.status_code == status, (body, r.text)
            err = r.json()["error"]
            assert err["code"] == code and err.get("data", {}).get("field") == field, (body, err)
        r = await h.post("/api/v1/org/units/99/preview", json={"action": "retire"})
        assert r.status_code == 400 and r.json()["error"]["data"]["field"] == "unit", r.text  # the root
        r = await h.post(f"/api/v1/org/units/{VILLAGE}/preview", json={"action": "move", "target": OTHER_TOWN})
        assert r.status_code == 200 and r.json()["target"]["code"] == OTHER_TOWN, r.text


async def test_a_holder_is_found_by_the_reading_of_their_surname(org_server: RunningServer) -> None:
    """曾 is "ceng" alone but "zeng" as a surname: 曾小伟 is found by "zengxiaowei" and "zxw" (and as before).

    Before, a holder's name was read character by character only, so the common polyphonic
    surnames (曾, 单, 仇, 区, 查, 翟 …) were found only under a reading nobody types.
    """
    from org_tree.name_index import Names

    built = Names(["曾小伟", "单雄信", "张三"], surnames=True)  # the build, as the live add below
    assert [nid for nid, _ in built.find("shanxiongxin", 5)] == [1]
    assert [nid for nid, _ in built.find("danxiongxin", 5)] == [1]
    rs = org_server
    pid, _lg, position, _token = await seat(rs, VILLAGE, "village_secretary")
    token = await _admin(rs, COUNTY, {"assignments"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.patch(f"/api/v1/org/persons/{pid}", json={"name": "曾小伟"})
        assert r.status_code == 200, r.text
        for q in ("zengxiaowei", "zxw", "cengxiaowei", "曾小伟"):
            r = await h.get("/api/v1/org/search", params={"q": q, "limit": 100})
            assert position in {hit["position_id"] for hit in r.json()["hits"]}, q
        r = await h.get("/api/v1/org/search", params={"q": "zengxiaowei"})
        hit = next(hit for hit in r.json()["hits"] if hit["position_id"] == position)
        assert hit["holders"] == ["曾小伟"]
        assert r.json()["hits"][0]["position_id"] == position  # the surname reading is exact


async def test_a_role_is_named_with_a_word_selectors_can_name_it_by(org_server: RunningServer) -> None:
    """Until 2026-12-05 (广西 audit) ``POST /api/v1/org/roles`` took ``"安全 员"``, ``"a@b"`` or ``"河长:副"``
    (201), and no selector could then name the role by its name — the text and JSON forms both refuse a
    role word with a space or an operator character. Now the name is refused (400 naming ``name``), on a
    create and a rename alike, and nothing changes."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, _, head, head_tok = await seat(rs, COUNTY, "county_head")
    token = await _admin(rs, None, {"roles", "org"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        catalog = (await h.get("/api/v1/org/roles")).json()["roles"]
        version = _org_state(rs)
        for name in ("安全 员", "a@b", "河长:副", "巡-逻", "(巡逻)", "巡逻/员"):
            r = await h.post("/api/v1/org/roles", json={"key": "oa_word", "name": name, "levels": ["village"]})
            assert r.status_code == 400, (name, r.text)
            assert (r.json()["error"]["code"], r.json()["error"]["data"]["field"]) == ("bad_request", "name")
            r = await h.patch("/api/v1/org/roles/village_secretary", json={"name": name})
            assert r.status_code == 400 and r.json()["error"]["data"]["field"] == "name", (name, r.text)
        assert (await h.get("/api/v1/org/roles")).json()["roles"] == catalog
        assert _org_state(rs) == version
        # A one-word name is taken, and a selector names the role by it.
        r = await h.post("/api/v1/org/roles", json={"key": "oa_word", "name": "安全员", "levels": ["village"]})
        assert r.status_code == 201, r.text
        r = await h.post("/api/v1/org/positions", json={"unit": VILLAGE, "role": "安全员"})
        assert r.status_code == 201, r.text
    assert s.org_index.index.version > version[0]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(head_tok)) as h:
        for selector in ("安全员@990101/**", {"role": "安全员", "under": COUNTY}):
            r = await h.post("/api/v1/org/preview", json={"as_position": head, "selector": selector})
            assert r.status_code == 200 and r.json()["positions"] == 1, r.text


async def test_a_retirement_preview_with_a_target_is_refused(org_server: RunningServer) -> None:
    """The retirement's own body takes no unit besides the one retired; until 2026-12-05 (广西 audit) a
    preview's ``target`` was dropped for ``retire`` and the answer was 200 as if none had been sent."""
    rs = org_server
    token = await _admin(rs, None, {"org"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.post(f"/api/v1/org/units/{VILLAGE}/preview", json={"action": "retire", "target": OTHER_TOWN})
        assert r.status_code == 400, r.text
        assert (r.json()["error"]["code"], r.json()["error"]["data"]["field"]) == ("bad_request", "target")
        r = await h.post(f"/api/v1/org/units/{VILLAGE}/preview", json={"action": "retire"})
        assert r.status_code == 200 and r.json()["target"] is None, r.text
