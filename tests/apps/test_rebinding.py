"""The DNS-rebinding pin (issue 13 item 4, "no requests to arbitrary internal addresses"): the webhook
request connects only to an address that was resolved and checked in the same step, so a name that
answers with a public address for the check and with 127.0.0.1 for the request reaches nothing
internal. Real HTTP to a real local receiver; only the name's answers come from a mapping of the test's
own (the resolver seam of ``AddressPolicy``), since no DNS server is at hand."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.addresses import AddressPolicy
from kernel.errors import Forbidden
from tests.apps.receiver import Behaviour, receiver
from zzd.webhook_http import HttpxSender

PUBLIC = "93.184.215.14"  # a globally routable address (nothing is ever sent to it)


class Rebinder:
    """A name server under an attacker's control: answers in turn from ``answers``, counting the questions."""

    def __init__(self, *answers: list[str]) -> None:
        self._answers: Iterator[list[str]] = iter(answers)
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return next(self._answers)


async def test_a_name_rebound_to_loopback_after_the_check_reaches_nothing() -> None:
    async with receiver() as rec:
        port = int(rec.base.rsplit(":", 1)[1])
        url = f"http://rebind.example:{port}/hook"
        names = Rebinder([PUBLIC], ["127.0.0.1"])
        policy = AddressPolicy([], allow_public=True, resolver=names)
        sender = HttpxSender(5.0, 4, policy)
        try:
            await policy.check(url)  # the check sees the public address and passes
            outcome = await sender.post(url, {"content-type": "application/json"}, b"{}")
        finally:
            await sender.close()
        assert outcome.status is None and outcome.error is not None
        assert "address_not_allowed: rebind.example → 127.0.0.1" in outcome.error
        assert rec.got == []  # the receiver on 127.0.0.1 was never reached
        assert names.asked == ["rebind.example", "rebind.example"]  # once for the check, once for the connection


async def test_every_address_of_the_name_must_be_allowed_not_just_the_first() -> None:
    async with receiver() as rec:
        port = int(rec.base.rsplit(":", 1)[1])
        policy = AddressPolicy(["127.0.0.0/8"], allow_public=False, resolver=Rebinder(["127.0.0.1", "169.254.169.254"]))
        sender = HttpxSender(5.0, 4, policy)
        try:
            outcome = await sender.post(f"http://mixed.example:{port}/hook", {}, b"{}")
        finally:
            await sender.close()
        assert outcome.error is not None and "169.254.169.254" in outcome.error
        assert rec.got == []
        with pytest.raises(Forbidden):
            await AddressPolicy([], allow_public=True, resolver=Rebinder([PUBLIC, "10.0.0.7"])).check(
                "http://x.example/"
            )


async def test_the_request_goes_to_the_checked_address_under_its_own_name() -> None:
    async with receiver() as rec:
        rec.behaviours["/hook"] = Behaviour(status=202)
        port = int(rec.base.rsplit(":", 1)[1])
        # the name exists only in this mapping: the connection can only have used the pinned address
        names = Rebinder(["127.0.0.1"], ["127.0.0.1"])
        policy = AddressPolicy(["127.0.0.0/8"], allow_public=False, resolver=names)
        sender = HttpxSender(5.0, 4, policy)
        try:
            outcome = await sender.post(f"http://hooks.internal.example:{port}/hook", {"x-test": "1"}, b"{}")
            again = await sender.post(f"http://hooks.internal.example:{port}/hook", {"x-test": "2"}, b"{}")
        finally:
            await sender.close()
        assert (outcome.status, again.status) == (202, 202)
        assert [g.headers["host"] for g in rec.got] == [f"hooks.internal.example:{port}"] * 2
        assert names.asked == ["hooks.internal.example"]  # the kept-alive connection was not resolved again
