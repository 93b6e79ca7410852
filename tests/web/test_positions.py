"""The header follows one's seats live: ``positions.changed`` after an assignment starts or ends.

Before, the header kept a position its holder had lost until a reload (a send as it then failed
with 无权执行此操作), and did not offer one just gained.
"""

from __future__ import annotations

import secrets

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web
from tests.web.world import add_admin, token

OTHER_GRID = "990101002002002"  # a grid of the second township: no seated test person works there


def test_the_header_gains_and_loses_a_position_without_a_reload(pages: Pages, web: Web) -> None:
    admin = f"admin-{secrets.token_hex(3)}"
    add_admin(web.world, admin)
    h = {"authorization": f"Bearer {token(web.base, admin)}"}
    unit = httpx.get(f"{web.base}/api/v1/org/units/{OTHER_GRID}", headers=h).json()
    views = [httpx.get(f"{web.base}/api/v1/org/positions/{p}", headers=h).json() for p in unit["position_ids"]]
    spare = next(v["id"] for v in views if v["role_key"] == "grid_worker")
    label = "专职网格员 · 002村2" + unit["name"]  # a grid is named with its village
    river = web.world.positions["zhao"][0]

    zhao = pages.open("zhao")
    acting = zhao.get_by_label("当前岗位")
    expect(acting.locator("option")).to_have_count(1)
    expect(acting).to_have_value(str(river))

    r = httpx.post(
        f"{web.base}/api/v1/org/positions/{spare}/assignments",
        headers=h,
        json={"person_id": web.world.person_ids["zhao"], "kind": "acting"},
    )
    assert r.status_code == 201, r.text
    assignment = r.json()["id"]
    # Live: the new seat is offered, after the own one (兼职), and the page says what changed.
    expect(acting.locator("option")).to_have_count(2)
    expect(acting.locator("option").nth(1)).to_have_text(label + "（兼职）")
    expect(zhao.get_by_role("alert")).to_contain_text("岗位变动：新任" + label)
    acting.select_option(str(spare))
    expect(acting).to_have_value(str(spare))

    r = httpx.post(f"{web.base}/api/v1/org/assignments/{assignment}/end", headers=h)
    assert r.status_code == 200, r.text
    # The lost seat goes, and the choice falls back to one still held.
    expect(acting.locator("option")).to_have_count(1)
    expect(acting).to_have_value(str(river))
    expect(zhao.get_by_role("alert")).to_contain_text("岗位变动：不再担任" + label)
