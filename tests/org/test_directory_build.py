"""找岗位's directory built off the event loop, in the background, and consistent with what changes meanwhile.

A fresh process built its directory on its first search (or person lookup), the units' part in
the event loop: on a province (Hunan) the first user waited 6-8 s and the whole process stalled
under a second of it, the reads' decoding besides. These tests hold the build inside its thread
(a ``threading.Event`` the test releases: no sleeps) and check what must hold meanwhile and after.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest

import org_tree.directory as directory_module
from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.errors import Unavailable
from org_tree.jurisdiction import SYSTEM
from org_tree.name_index import Names
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from tests.conftest import RunningServer
from tests.org.thread_gate import WAIT, Gate
from tests.org_server import auth, seat

VILLAGE = "990101001001"


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    g = Gate(threading.current_thread())
    g.release.set()  # open unless a test closes it

    class GatedNames(Names):
        def __init__(self, names: list[str], **readings: bool) -> None:
            if names:  # ``Directory()`` starts with empty ones, in the loop
                g.built_in.append(threading.current_thread())
                if threading.current_thread() is not g.loop_thread:
                    g.entered.set()
                    g.release.wait(WAIT)
            super().__init__(names, **readings)

    monkeypatch.setattr(directory_module, "Names", GatedNames)
    try:
        yield g
    finally:
        g.release.set()


async def test_no_part_of_the_build_runs_in_the_event_loop(two: tuple[OrgService, OrgService], gate: Gate) -> None:
    """Before: the units' names (``Names``, n-gram postings) were built in the loop, the persons' in a thread."""
    _, b = two
    page = await b.search(SYSTEM, "柯城区")
    assert page.total > 0
    assert len(gate.built_in) == 2  # the units' names and the persons' names
    assert all(t is not gate.loop_thread for t in gate.built_in), gate.built_in


async def test_an_org_change_applied_during_the_build_is_found(
    two: tuple[OrgService, OrgService], gate: Gate, org_db: Database
) -> None:
    a, b = two
    b.directory.wait = WAIT
    gate.close()
    search = asyncio.create_task(b.search(SYSTEM, "金桂社区"))
    await gate.reached()  # b's build copied its index's units and read the holders: it is in its thread
    sec = a.get_unit(SYSTEM, VILLAGE).position_ids[0]
    old_name = a.index.unit_name(a.index.unit(VILLAGE))
    newcomer = await PersonDirectory(org_db, FakeClock()).create("周晓岚")
    await a.handover(SYSTEM, sec, newcomer.id)
    await a.rename_unit(SYSTEM, VILLAGE, "金桂社区")
    assert await b._holder.refresh_if_changed()  # b's index has both now; its directory is still building
    assert not search.done() and b.directory.loaded is None
    gate.release.set()
    page = await search
    assert page.hits and page.hits[0].unit_code == VILLAGE and page.hits[0].unit_path[-1] == "金桂社区"
    assert [h.position_id for h in (await b.search(SYSTEM, "周晓岚")).hits] == [sec]
    assert all(h.unit_code != VILLAGE for h in (await b.search(SYSTEM, old_name, limit=100)).hits)
    assert b._holder.rebuilds == 1 and b.directory.builds == 1  # patched in, not built again


async def test_an_index_rebuild_during_the_build_builds_again(two: tuple[OrgService, OrgService], gate: Gate) -> None:
    """A rebuilt index numbers its units anew: a directory built from the old one named the wrong units."""
    a, b = two
    b.directory.wait = WAIT
    gate.close()
    search = asyncio.create_task(b.search(SYSTEM, "柯城区", limit=100))
    await gate.reached()
    await a.create_unit(SYSTEM, "9901", "新城区", code="990100")  # before 柯城区 (990101) in code order
    assert await b._holder.refresh_if_changed()
    await b._holder.load()  # rebuilt (a division import does this in every process): other unit handles
    gate.release.set()
    page = await search
    assert page.hits and page.hits[0].unit_code == "990101"
    assert all(h.unit_path[2] == "柯城区" for h in page.hits), [h.unit_path for h in page.hits]
    assert (await b.search(SYSTEM, "衢江区")).hits[0].unit_code == "990102"
    assert b.directory.builds == 1  # the first build was dropped, not installed


async def test_warmed_it_builds_without_a_search_and_a_search_meanwhile_waits_bounded(
    two: tuple[OrgService, OrgService], gate: Gate
) -> None:
    _, b = two
    gate.close()
    b.directory.warm()  # a server at start-up
    await gate.reached()  # building, and nobody searched
    b.directory.wait = 0.01  # the build cannot finish: it is held at the gate
    with pytest.raises(Unavailable) as refused:
        await b.search(SYSTEM, "柯城区")
    assert refused.value.data == {"retry_after": 5} and refused.value.retryable
    assert b.directory.building  # the refused search left the build running
    b.directory.wait = WAIT
    gate.release.set()
    assert (await b.search(SYSTEM, "柯城区")).total > 0
    assert b.directory.builds == 1
    await b._holder.load()  # an index rebuild: warmed, the directory is built again at once
    assert b.directory.loaded is None and b.directory.building
    assert (await b.search(SYSTEM, "柯城区")).total > 0 and b.directory.builds == 2


async def test_a_person_lookup_does_not_build_the_directory(
    two: tuple[OrgService, OrgService], org_db: Database
) -> None:
    """Before: a process's first ``GET /api/v1/org/persons/{id}`` built the whole directory (seconds on a province)."""
    a, b = two
    sec, other = a.get_unit(SYSTEM, VILLAGE).position_ids[:2]
    person = b.get_position(SYSTEM, sec).holders[0]
    card = await b.person(SYSTEM, person)
    assert b.directory.loaded is None and not b.directory.building
    assert sec in [p.position_id for p in card.positions]
    await a.assign(SYSTEM, other, person, kind="deputy")
    await a.handover(SYSTEM, sec, (await PersonDirectory(org_db, FakeClock()).create("接班人")).id)
    await b._holder.refresh_if_changed()
    card = await b.person(SYSTEM, person)
    assert [(p.position_id, p.kind) for p in card.positions if p.position_id in (sec, other)] == [(other, "deputy")]
    assert b.directory.loaded is None


async def test_a_server_warms_it_at_start_up_and_a_search_meanwhile_gets_503(
    org_server: RunningServer, gate: Gate
) -> None:
    """Over HTTP: a search that finds the directory still building past ``directory_wait`` is told so, never wrong."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    assert s.org.directory.loaded is not None or s.org.directory.building  # started without any search
    _, _, _, token = await seat(rs, "990101001001001", "grid_worker")
    gate.close()
    await s.org_index.load()  # an index rebuild: the warmed directory is built again, held at the gate here
    await gate.reached()
    s.org.directory.wait = 0.01
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.get("/api/v1/org/search", params={"q": "柯城区"})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "5"
        assert r.json() == {
            "error": {
                "code": "unavailable",
                "message": "the directory is being built; try again shortly",
                "data": {"retry_after": 5},
                "retryable": True,
            }
        }
        s.org.directory.wait = WAIT
        gate.release.set()
        r = await h.get("/api/v1/org/search", params={"q": "柯城区"})
        assert r.status_code == 200 and r.json()["total"] > 0, r.text
