"""S23 as a property: across handovers, nobody reads outside their membership, on any path.

A Hypothesis state machine hands positions over (as the operator, as an
administrator whose grant covers part of the tree, and — always refused — as
an ordinary holder), writes to position threads (as a person and as a
position) and to an ad-hoc group with a position member, edits and recalls
messages as various persons, and then reads history, read lists and the
event stream as various persons, and guesses ids. A reference model of
assignment periods says what each person may read and change; the service
must agree exactly (history, edit, recall) or stay within it (sync), and
answer a guess outside it like a missing id. Issue 10: a former holder can
no longer edit or recall what they wrote as the position.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import select

from kernel.errors import Conflict, Forbidden, NotFound
from messaging.conversations.model import PostRequest
from messaging.schema import messages
from org_tree.grant_service import GrantService
from org_tree.grants import Perm, holds_grant
from org_tree.jurisdiction import SYSTEM
from tests.conftest import temp_pg_database
from tests.conversations.conftest import World, make_world
from tests.profiles import examples
from tests.services import pg_url


@dataclass
class Assignment:
    person: int
    start: datetime
    end: datetime | None = None


@dataclass
class Thread:
    sides: tuple[int, ...]
    peer_person: int | None
    messages: list[tuple[int, datetime]] = field(default_factory=list)


class Model:
    def __init__(self) -> None:
        self.assignments: dict[int, list[Assignment]] = {}
        #: message id → (sender person, position written as or None); recalled ids.
        self.meta: dict[int, tuple[int, int | None]] = {}
        self.recalled: set[int] = set()
        self.threads: dict[int, Thread] = {}
        self.group_id = 0
        self.group_explicit: set[int] = set()
        self.group_position = 0
        self.group_messages: list[int] = []

    def current(self, pos: int) -> set[int]:
        return {a.person for a in self.assignments[pos] if a.end is None}

    def full_reader(self, person: int, t: Thread) -> bool:
        return person == t.peer_person or any(person in self.current(p) for p in t.sides)

    def sees(self, person: int, t: Thread, at: datetime) -> bool:
        if self.full_reader(person, t):
            return True
        return any(
            a.person == person and a.end is not None and a.start <= at < a.end
            for p in t.sides
            for a in self.assignments[p]
        )

    def group_members(self) -> set[int]:
        return self.group_explicit | self.current(self.group_position)

    def visible(self, person: int, cid: int) -> set[int] | None:
        """Message ids the person reads in ``cid``; None when the conversation is not theirs at all."""
        if cid == self.group_id:
            return set(self.group_messages) if person in self.group_members() else None
        t = self.threads.get(cid)
        if t is None:
            return None
        if self.full_reader(person, t):
            return {m for m, _ in t.messages}
        periods = [
            a
            for p in t.sides
            for a in self.assignments[p]
            if a.person == person and a.end is not None and a.start < a.end
        ]
        if not periods:
            return None
        return {m for m, at in t.messages if self.sees(person, t, at)}


TEMPLATE: dict[str, Any] = {}


class Membership(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.cleanup = contextlib.ExitStack()
        self.cleanup.callback(self.loop.close)
        self.world: World = self.loop.run_until_complete(make_world(self._fresh_url()))
        self.cleanup.callback(lambda: self.loop.run_until_complete(self.world.db.dispose()))
        self.model = Model()
        self.n = 0
        self.seen: dict[int, int] = {}

    def _fresh_url(self) -> str:
        if TEMPLATE["kind"] == "sqlite":
            folder = Path(self.cleanup.enter_context(tempfile.TemporaryDirectory()))
            shutil.copy(TEMPLATE["path"], folder / "t.db")
            return f"sqlite+aiosqlite:///{folder / 't.db'}"
        name = self.cleanup.enter_context(temp_pg_database("zzd_s23", template=TEMPLATE["pg"]))
        return pg_url(name)

    def teardown(self) -> None:
        self.cleanup.close()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    @initialize()
    def setup(self) -> None:
        w = self.world
        self.positions = [*w.single_positions(3), w.pool_position()]
        for p in self.positions:
            self.model.assignments[p] = [Assignment(h, w.clock.now()) for h in w.holders(p)]
        self.outsiders = [self.run(w.person(f"外{i}")) for i in range(3)]
        self.people = sorted(
            {a.person for p in self.positions for a in self.model.assignments[p]} | set(self.outsiders)
        )
        # An administrator whose grant covers the unit of the first position (and whatever lies below it).
        self.admin_person = self.run(w.person("管理员"))
        idx = w.holder.index
        unit = idx.unit_id(idx.position_unit(idx.slot(self.positions[0])))
        self.run(GrantService(w.db, w.clock, w.holder, w.org).grant(SYSTEM, self.admin_person, unit,
                                                                    frozenset({"assignments"})))  # fmt: skip
        g = self.run(w.groups.create(self.outsiders[0], "专班", [self.outsiders[1]], [self.positions[0]]))
        self.model.group_id = g["id"]
        self.model.group_explicit = {self.outsiders[0], self.outsiders[1]}
        self.model.group_position = self.positions[0]

    @rule(pos=st.integers(0, 3), who=st.integers(0, 50), by=st.sampled_from(["operator", "admin", "holder"]))
    def handover(self, pos: int, who: int, by: str) -> None:
        w = self.world
        p = self.positions[pos]
        to = self.people[who % len(self.people)]
        actor = SYSTEM
        if by != "operator":
            person = self.admin_person if by == "admin" else self.people[(who + pos) % len(self.people)]
            actor = self.run(w.org.actor(person))
            idx = w.holder.index
            if not holds_grant(idx, actor, Perm.ASSIGNMENTS, idx.position_unit(idx.slot(p))):
                with pytest.raises(Forbidden):  # holding a position gives no right to hand one over
                    self.run(w.handover(p, to, actor))
                return
        if {a.person for a in self.model.assignments[p] if a.end is None} == {to}:
            with pytest.raises(Conflict):  # to its one holder: refused, nothing written (f672256)
                self.run(w.handover(p, to, actor))
            return
        self.run(w.handover(p, to, actor))
        self.run(w.members.run())
        end = self._handover_time
        for a in self.model.assignments[p]:
            if a.end is None:
                a.end = end
        self.model.assignments[p].append(Assignment(to, end))

    @property
    def _handover_time(self) -> datetime:
        # World.handover advances the clock by one second before and after the handover.
        from datetime import timedelta

        return self.world.clock.now() - timedelta(seconds=1)

    @rule(sender=st.integers(0, 50), pos=st.integers(0, 3), as_pos=st.none() | st.integers(0, 3))
    def write_to_position(self, sender: int, pos: int, as_pos: int | None) -> None:
        w, m = self.world, self.model
        target = self.positions[pos]
        if as_pos is None or as_pos == pos:
            person = self.people[sender % len(self.people)]
            as_id = None
        else:
            as_id = self.positions[as_pos]
            holders = sorted(m.current(as_id))
            person = holders[sender % len(holders)]
        w.clock.advance(0.25)
        r = self.run(w.conv.post(PostRequest(person, self.key(), "x", to_position_id=target, as_position_id=as_id)))
        self._remember(r.message_id, person)
        sides = (target,) if as_id is None else tuple(sorted((target, as_id)))
        t = m.threads.setdefault(r.conversation_id, Thread(sides, None if as_id else person))
        assert t.sides == sides
        t.messages.append((r.message_id, r.created_at))

    @rule(who=st.integers(0, 50), pick=st.integers(0, 50))
    def reply(self, who: int, pick: int) -> None:
        w, m = self.world, self.model
        if not m.threads:
            return
        cid = sorted(m.threads)[pick % len(m.threads)]
        person = self.people[who % len(self.people)]
        t = m.threads[cid]
        w.clock.advance(0.25)
        req = PostRequest(person, self.key(), "re", conversation_id=cid)
        if m.full_reader(person, t):
            r = self.run(w.conv.post(req))
            self._remember(r.message_id, person)
            t.messages.append((r.message_id, r.created_at))
        else:
            expected = Forbidden if m.visible(person, cid) is not None else NotFound
            with pytest.raises(expected):
                self.run(w.conv.post(req))

    def _remember(self, message_id: int, sender: int) -> None:
        """The model keeps who wrote a message and as which position (the service decides that for replies)."""
        q = select(messages.c.sender_position_id).where(messages.c.id == message_id)

        async def read() -> int | None:
            async with self.world.db.read() as conn:
                v = (await conn.execute(q)).scalar_one()
            return None if v is None else int(v)

        self.model.meta[message_id] = (sender, self.run(read()))

    @rule(who=st.integers(0, 50), pick=st.integers(0, 50), recall=st.booleans())
    def edit_or_recall(self, who: int, pick: int, recall: bool) -> None:
        w, m = self.world, self.model
        if not m.threads:
            return
        cid = sorted(m.threads)[pick % len(m.threads)]
        t = m.threads[cid]
        if not t.messages:
            return
        mid, at = t.messages[pick % len(t.messages)]
        person = self.people[who % len(self.people)]
        sender, as_pos = m.meta[mid]
        w.clock.advance(0.25)
        call = w.conv.recall(person, mid) if recall else w.conv.edit(person, mid, "改")
        visible = m.visible(person, cid)
        if visible is None or mid not in visible:
            expected: type[Exception] | None = NotFound
        elif person != sender or (as_pos is not None and person not in m.current(as_pos)):
            expected = Forbidden  # not the writer, or a former holder of the position it was written as
        elif mid in m.recalled and not recall:
            expected = Conflict
        else:
            expected = None
        if expected is None:
            self.run(call)
            if recall:
                m.recalled.add(mid)
        else:
            with pytest.raises(expected):
                self.run(call)

    @rule(who=st.integers(0, 50))
    def write_to_group(self, who: int) -> None:
        w, m = self.world, self.model
        person = self.people[who % len(self.people)]
        req = PostRequest(person, self.key(), "群", conversation_id=m.group_id)
        if person in m.group_members():
            m.group_messages.append(self.run(w.conv.post(req)).message_id)
        else:
            with pytest.raises(NotFound):
                self.run(w.conv.post(req))

    def _history(self, person: int, cid: int) -> set[int]:
        """Ids of the text messages (system notes left out) over every page."""
        out: set[int] = set()
        before = None
        while True:
            items, before = self.run(self.world.conv.history(person, cid, before=before, limit=7))
            out |= {i["id"] for i in items if i["kind"] == "text"}
            if before is None:
                return out

    @rule(who=st.integers(0, 50), pick=st.integers(0, 50), guess=st.booleans())
    def read_history(self, who: int, pick: int, guess: bool) -> None:
        m = self.model
        person = self.people[who % len(self.people)]
        ids = sorted(m.threads) + [m.group_id]
        cid = ids[pick % len(ids)] + (pick if guess else 0)
        expected = m.visible(person, cid)
        if expected is None:
            with pytest.raises(NotFound):
                self._history(person, cid)
            return
        got = self._history(person, cid)
        assert got == expected, (person, cid, got ^ expected)

    @rule(who=st.integers(0, 50), pick=st.integers(0, 50))
    def read_list(self, who: int, pick: int) -> None:
        m = self.model
        if not m.threads:
            return
        cid = sorted(m.threads)[pick % len(m.threads)]
        person = self.people[who % len(self.people)]
        t = m.threads[cid]
        if not t.messages:
            return
        mid, at = t.messages[pick % len(t.messages)]
        if m.visible(person, cid) is not None and m.sees(person, t, at):
            self.run(self.world.conv.read_by(person, cid, mid))
        else:
            with pytest.raises(NotFound):
                self.run(self.world.conv.read_by(person, cid, mid))

    @invariant()
    def new_events_stay_within_membership(self) -> None:
        """Events appended by the last step reach only persons who may read them now.

        Checked step by step: a group member who later loses the position keeps
        the events they got while a member.
        """
        if not hasattr(self, "people"):
            return
        for person in self.people:
            page = self.run(self.world.events.read(person, epoch=None, since=self.seen.get(person, 0)))
            for seq, kind, payload in page.events:
                self.seen[person] = seq
                if kind in ("message.edited", "message.recalled"):
                    data = json.loads(payload)
                    visible = self.model.visible(person, int(data["conversation_id"]))
                    assert visible is not None and int(data["message_id"]) in visible, (person, kind, data)
                if kind != "message.new":
                    continue
                data = json.loads(payload)
                cid = int(data["conversation_id"])
                visible = self.model.visible(person, cid)
                assert visible is not None, (person, data)
                if data["kind"] == "text":
                    assert int(data["id"]) in visible, (person, data)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def template(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.param == "sqlite":
        TEMPLATE.update(kind="sqlite", path=request.getfixturevalue("conv_sqlite_template"))
    else:
        TEMPLATE.update(kind="postgres", pg=request.getfixturevalue("conv_pg_template"))
    yield
    TEMPLATE.clear()


@pytest.mark.slow  # 35 fresh databases of 20 steps each: the quick lane's longest test by far (40-50 s)
@pytest.mark.timeout(900)  # bounded examples, but each is a fresh database; a loaded CI machine is slow
def test_s23_no_reads_outside_membership_across_handovers(template: None) -> None:
    budget = examples(25 if TEMPLATE["kind"] == "sqlite" else 10)
    run_state_machine_as_test(
        Membership,
        settings=settings(
            max_examples=budget,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
