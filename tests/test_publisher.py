"""Wake-ups are cut into bounded broker messages, in order, losing no recipient."""

from __future__ import annotations

import asyncio

import pytest

from messaging.broker.memory import MemoryBroker
from messaging.publisher import EVENTS_CHANNEL, MAX_MESSAGE_BYTES, WakeupPublisher, split_groups
from messaging.wakeup import EventGroup, Wakeup


def _province_notice() -> list[EventGroup]:
    """200,000 recipients, each with a labelled payload of its own (the notice fan-out shape)."""
    return [
        EventGroup("notice.new", f'{{"notice_id":1,"positions":[{{"position_id":{i}}}]}}', [(i, 7)])
        for i in range(200_000)
    ]


def test_a_huge_fanout_is_split_below_the_limit_in_order() -> None:
    groups = _province_notice()
    chunks = split_groups(groups, MAX_MESSAGE_BYTES)
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(Wakeup("n", chunk).encode()) <= 2 * MAX_MESSAGE_BYTES  # estimate vs JSON overhead
    flat = [r for chunk in chunks for g in chunk for r in g.recipients]
    assert flat == [(i, 7) for i in range(200_000)]


def test_one_payload_to_many_people_is_split_by_recipients() -> None:
    g = EventGroup("message.new", '{"x":1}', [(i, 1) for i in range(100_000)])
    chunks = split_groups([g], 64 * 1024)
    assert len(chunks) > 1
    assert [r for c in chunks for part in c for r in part.recipients] == g.recipients
    assert all(part.payload == g.payload for c in chunks for part in c)


async def test_publisher_sends_every_recipient_through_bounded_messages() -> None:
    broker = MemoryBroker()
    seen: list[tuple[int, int]] = []
    sizes: list[int] = []
    done = asyncio.Event()

    def on_message(data: bytes) -> None:
        sizes.append(len(data))
        for g in Wakeup.decode(data).groups:
            seen.extend(g.recipients)
        if len(seen) == 200_000:
            done.set()

    broker.subscribe(EVENTS_CHANNEL, on_message)
    pub = WakeupPublisher(broker, "node-a")
    pub.start()
    pub.publish_soon(_province_notice())
    await asyncio.wait_for(done.wait(), 30)
    await pub.close()
    assert seen == [(i, 7) for i in range(200_000)]
    assert max(sizes) <= 2 * MAX_MESSAGE_BYTES and pub.published == len(sizes) > 1


def test_a_wakeup_decoded_for_some_people_keeps_only_theirs_in_order() -> None:
    groups = [
        EventGroup("message.new", '{"text":"大家好"}', [(1, 5), (2, 9), (3, 4)]),
        EventGroup("notice.new", '{"notice_id":1,"positions":[{"unit":"柯城区"}]}', [(2, 10)]),
        EventGroup("notice.new", '{"notice_id":1,"positions":[{"unit":"衢江区"}]}', [(4, 1)]),
    ]
    data = Wakeup("node-a", groups).encode()
    full = Wakeup.decode(data)
    assert full.origin == "node-a" and full.groups == groups
    mine = Wakeup.decode(data, only={2, 9})
    assert [(g.kind, g.payload, g.recipients) for g in mine.groups] == [
        ("message.new", '{"text":"大家好"}', [(2, 9)]),
        ("notice.new", '{"notice_id":1,"positions":[{"unit":"柯城区"}]}', [(2, 10)]),
    ]
    assert Wakeup.decode(data, only=set()).groups == []
    assert Wakeup.decode(data, skip_origin="node-a").groups == []
    assert Wakeup.decode(data, skip_origin="node-b").groups == groups


def test_a_truncated_wakeup_is_rejected() -> None:
    data = Wakeup("node-a", [EventGroup("message.new", '{"x":1}', [(1, 1)])]).encode()
    with pytest.raises(ValueError):
        Wakeup.decode(data[:-2])
