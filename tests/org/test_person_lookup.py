"""GET /api/v1/org/persons/{id}: one person as 找岗位 shows them, and 找岗位 shows deputies too.

A client is handed person ids everywhere (a group's members, a message's sender, a
position's holders) and had no way to turn one into a name and positions. The
answer is exactly as public as the directory (docs/directory.md "Access"):
"""

from __future__ import annotations

import httpx

from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat

GRID = "990101001001001"
OTHER_GRID = "990102001001001"


async def test_one_person_by_id_is_as_public_as_the_directory(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    worker, _, w_pos, _ = await seat(rs, GRID, "grid_worker")
    _, _, _, stranger = await seat(rs, OTHER_GRID, "grid_worker")  # an ordinary user of another county
    deputy, _ = await new_person(s, "副手")
    await s.org.assign(SYSTEM, w_pos, deputy, kind="deputy")
    loner, loner_login = await new_person(s, "无岗人")  # holds no position: not in the directory
    loner_tok = (await login(rs.http, loner_login))["access_token"]
    tokens = {}
    for name, unit, perms in (("county", "990101", {"assignments"}), ("elsewhere", "990102", {"assignments", "audit"}),
                              ("tree", None, {"audit"})):  # fmt: skip
        pid, lg = await new_person(s, name)
        await s.grants.grant(SYSTEM, pid, unit, frozenset(perms))
        tokens[name] = (await login(rs.http, lg))["access_token"]
    for pid, phone in ((worker, "13800000001"), (loner, "13800000002")):
        await s.org.change_person(SYSTEM, pid, phone=phone)

    async def get(token: str, pid: int | str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
            return await h.get(f"/api/v1/org/persons/{pid}")

    r = await get(stranger, worker)
    assert r.status_code == 200, r.text
    card = r.json()
    assert (card["id"], card["phone"]) == (worker, None)
    [held] = card["positions"]
    assert (held["position_id"], held["role_key"], held["unit_code"], held["kind"]) == (
        w_pos, "grid_worker", GRID, "primary"
    )  # fmt: skip
    assert held["unit_path"][-1] == s.org_index.index.unit_name(s.org_index.index.unit(GRID))
    assert (await get(stranger, deputy)).json()["positions"][0]["kind"] == "deputy"
    # the phone: administrators (assignments or audit) over one of their units, as on a directory hit
    assert (await get(tokens["county"], worker)).json()["phone"] == "13800000001"
    assert (await get(tokens["elsewhere"], worker)).json()["phone"] is None
    assert (await get(tokens["tree"], worker)).json()["phone"] == "13800000001"

    # a person holding nothing: themselves and whole-tree administrators; anyone else the 404 of an unknown id
    unknown = await get(stranger, 999_999_999)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    for token in (stranger, tokens["county"], tokens["elsewhere"]):
        r = await get(token, loner)
        assert (r.status_code, r.json()["error"]["message"]) == (404, unknown.json()["error"]["message"]), r.text
    me = (await get(loner_tok, loner)).json()
    assert (me["name"], me["phone"], me["positions"]) == ("无岗人", None, [])
    assert (await get(tokens["tree"], loner)).json()["phone"] == "13800000002"
    for bad in ("9223372036854775808", "0"):
        assert (await get(stranger, bad)).status_code == 404

    # a holder who hands the position on leaves the directory, and the public card with it
    await s.org.handover(SYSTEM, w_pos, loner)
    assert (await get(stranger, worker)).status_code == 404
    assert [p["position_id"] for p in (await get(stranger, loner)).json()["positions"]] == [w_pos]
    async with httpx.AsyncClient(base_url=rs.http) as h:
        assert (await h.get(f"/api/v1/org/persons/{loner}")).status_code == 401


async def test_search_lists_deputies_and_acting_holders_with_their_kind(org_server: RunningServer) -> None:
    """找岗位 found a position through its deputy's name, but ``holder_details`` listed only the primary
    holder, so the person searched for was nowhere in the hit (docs/api said: primary, deputy, acting)."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    worker, _, w_pos, token = await seat(rs, GRID, "grid_worker")
    deputy, _ = await new_person(s, "韦副手")
    acting, _ = await new_person(s, "韦代理")
    await s.org.assign(SYSTEM, w_pos, deputy, kind="deputy")
    await s.org.assign(SYSTEM, w_pos, acting, kind="acting")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.get("/api/v1/org/search", params={"q": "韦副手"})
    assert r.status_code == 200, r.text
    [hit] = r.json()["hits"]
    assert hit["position_id"] == w_pos and hit["holders"] == [s.org.directory.loaded.person_name(worker)]
    assert [(d["person_id"], d["kind"]) for d in hit["holder_details"]] == [
        (worker, "primary"), (deputy, "deputy"), (acting, "acting")
    ]  # fmt: skip


async def test_seating_someone_in_ones_own_county_does_not_show_their_phone(org_server: RunningServer) -> None:
    """An administrator may seat anyone as a deputy in their own county; that seat must not show them the
    phone of, say, another county's holder (on the card and on 找岗位 hits), as it lets them change nothing
    of that person (PATCH /api/v1/org/persons/{id}: over every unit where they hold a position)."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    other, _, _, _ = await seat(rs, OTHER_GRID, "grid_worker")
    await s.org.change_person(SYSTEM, other, phone="13900000009")
    _, _, w_pos, _ = await seat(rs, GRID, "grid_worker")
    tokens = {}
    for name, unit in (("county", "990101"), ("both", "99")):
        pid, lg = await new_person(s, name)
        await s.grants.grant(SYSTEM, pid, unit, frozenset({"assignments"}))
        tokens[name] = (await login(rs.http, lg))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tokens["county"])) as h:
        seated = await h.post(f"/api/v1/org/positions/{w_pos}/assignments", json={"person_id": other, "kind": "deputy"})
        assert seated.status_code == 201, seated.text
    for name, phone in (("county", None), ("both", "13900000009")):
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(tokens[name])) as h:
            card = (await h.get(f"/api/v1/org/persons/{other}")).json()
            [hit] = [x for x in (await h.get("/api/v1/org/search", params={"q": GRID})).json()["hits"]
                     if x["position_id"] == w_pos]  # fmt: skip
        assert card["phone"] == phone, (name, card)
        assert {d["person_id"]: d["phone"] for d in hit["holder_details"]}[other] == phone, (name, hit)


async def test_seating_an_administrator_of_elsewhere_does_not_show_their_phone(org_server: RunningServer) -> None:
    """The phone followed the person's positions only, so a person holding none there — the whole-tree
    administrator, or one whose grant is over another county — seated as a deputy in one's own county had
    their phone shown to that county's administrator, who still may not change them (PATCH answers 404:
    its rule counts every grant of theirs too; found by the trust audit). Now the phone counts them alike."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, _, w_pos, _ = await seat(rs, GRID, "grid_worker")
    county_admin, lg = await new_person(s, "县管理员")
    await s.grants.grant(SYSTEM, county_admin, "990101", frozenset({"assignments"}))
    tok = (await login(rs.http, lg))["access_token"]
    root, _ = await new_person(s, "总管理员")
    await s.grants.grant(SYSTEM, root, None, frozenset({"assignments", "grants"}))
    neighbour, _ = await new_person(s, "邻县管理员")
    await s.grants.grant(SYSTEM, neighbour, "990102", frozenset({"audit"}))
    for i, pid in enumerate((root, neighbour)):
        await s.org.change_person(SYSTEM, pid, phone=f"1390000001{i}")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        for pid in (root, neighbour):
            r = await h.post(f"/api/v1/org/positions/{w_pos}/assignments", json={"person_id": pid, "kind": "deputy"})
            assert r.status_code == 201, r.text
            patch = await h.patch(f"/api/v1/org/persons/{pid}", json={"name": "改名"})
            assert patch.status_code == 404, patch.text  # may not change them ...
            card = (await h.get(f"/api/v1/org/persons/{pid}")).json()
            assert card["phone"] is None, card  # ... so does not see their phone either
        [hit] = [x for x in (await h.get("/api/v1/org/search", params={"q": GRID})).json()["hits"]
                 if x["position_id"] == w_pos]  # fmt: skip
        assert {d["person_id"]: d["phone"] for d in hit["holder_details"]}.get(root, "absent") is None, hit
        assert {d["person_id"]: d["phone"] for d in hit["holder_details"]}.get(neighbour, "absent") is None, hit
