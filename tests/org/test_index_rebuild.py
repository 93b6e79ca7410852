"""An org index rebuild while serving: built off the event loop, caught up with what changed meanwhile.

A rebuild (a division import, a gap in the change log, more than ``PATCH_LIMIT`` entries at once)
built the whole index in the event loop: 4 s on a province (Hunan), every socket of the process
stalled. These tests hold the build inside its thread (a ``threading.Event`` the test releases: no
sleeps), change the org meanwhile from another service, and check the index swapped in afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from kernel.clock import FakeClock
from kernel.db.database import Database
from org_tree.index import OrgIndex
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from org_tree.resolution import Audience, resolve
from org_tree.selectors import parse_text
from tests.org.thread_gate import WAIT, Gate

VILLAGE = "990101001001"
SELECTORS = (
    "村书记@990101001001",
    "村书记@990101/**",
    "专职网格员@990101001001/**",
    "*@990101001001001",
    "*@990101001001 | 村书记@990102/**",
    "专职网格员@99/** - 专职网格员@990102/**",
)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    g = Gate(threading.current_thread())
    g.release.set()  # open unless a test closes it
    build = OrgIndex.build.__func__  # type: ignore[attr-defined]

    def gated(cls: type[OrgIndex], *rows: Any) -> OrgIndex:
        g.built_in.append(threading.current_thread())
        if threading.current_thread() is not g.loop_thread:
            g.entered.set()
            g.release.wait(WAIT)
        return build(cls, *rows)  # type: ignore[no-any-return]

    monkeypatch.setattr(OrgIndex, "build", classmethod(gated))
    try:
        yield g
    finally:
        g.release.set()


def _same(audience: Audience) -> tuple[Any, ...]:
    """An audience without slot order (a rebuilt index numbers its slots anew)."""
    rows = zip(audience.person_ids, audience.position_ids, audience.via_position_ids, audience.reasons, strict=True)
    return sorted(audience.positions), sorted(rows), sorted(audience.fallbacks, key=repr)


def _resolved(index: OrgIndex, selectors: Sequence[str] = SELECTORS) -> list[tuple[Any, ...]]:
    return [_same(resolve(index, parse_text(text))) for text in selectors]


async def test_the_rebuild_is_built_in_a_thread_while_the_old_index_serves(
    two: tuple[OrgService, OrgService], gate: Gate
) -> None:
    """Before: ``OrgIndex.build`` ran in the event loop, the process stalled for all of it."""
    _, b = two
    old = b.index
    before = _resolved(old)
    gate.built_in.clear()
    gate.close()
    rebuild = asyncio.create_task(b._holder.load())
    await gate.reached()  # the loop runs this test while the build waits in its thread
    assert b.index is old and _resolved(b.index) == before  # the old index serves meanwhile
    gate.release.set()
    new = await rebuild
    assert b.index is new and new is not old
    assert gate.built_in and all(t is not gate.loop_thread for t in gate.built_in), gate.built_in


async def test_org_changes_during_the_rebuild_are_in_the_index_swapped_in(
    two: tuple[OrgService, OrgService], gate: Gate, org_db: Database
) -> None:
    a, b = two
    rebuilds = b._holder.rebuilds
    gate.close()
    rebuild = asyncio.create_task(b._holder.load())
    await gate.reached()  # b's rows were read: what follows is after the new index's version
    sec = a.get_unit(SYSTEM, VILLAGE).position_ids[0]
    newcomer = await PersonDirectory(org_db, FakeClock()).create("周晓岚")
    await a.handover(SYSTEM, sec, newcomer.id)
    await a.rename_unit(SYSTEM, VILLAGE, "金桂社区")
    made = await a.create_unit(SYSTEM, "990101001", "新网格")
    refresh = asyncio.create_task(b._holder.refresh_if_changed())  # a poll meanwhile waits for the rebuild
    gate.release.set()
    new = await rebuild
    assert new.version == a.index.version
    assert b.get_position(SYSTEM, sec).holders == (newcomer.id,)
    assert b.index.unit_name(b.index.unit(VILLAGE)) == "金桂社区"
    assert b.index.unit_name(b.index.unit(made.code)) == "新网格"
    assert not await refresh  # nothing left to apply
    assert b._holder.rebuilds == rebuilds + 1  # caught up by patching, not built again
    assert _resolved(b.index) == _resolved(a.index)  # a patched in place, b rebuilt: the same answers


async def test_selectors_resolve_identically_after_a_rebuild(two: tuple[OrgService, OrgService]) -> None:
    a, b = two
    sec = a.get_unit(SYSTEM, VILLAGE).position_ids[0]
    await a.create_unit(SYSTEM, "9901", "新城区", code="990100")  # before 柯城区 in code order: handles shift
    await a.assign(SYSTEM, a.get_unit(SYSTEM, "990102").position_ids[0], a.get_position(SYSTEM, sec).holders[0],
                   kind="deputy")  # fmt: skip
    assert await b._holder.refresh_if_changed()  # b patched in place, as a is
    patched = _resolved(b.index)
    assert patched == _resolved(a.index)
    await b._holder.load()
    assert _resolved(b.index) == patched
    fresh = await OrgIndex.load(b._holder._db)
    assert _resolved(fresh) == patched
