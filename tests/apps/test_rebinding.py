"""The DNS-rebinding pin (issue 13 item 4, "no requests to arbitrary internal addresses"): the webhook
request connects only to an address that was resolved and checked in the same step, so a name that
answers with a public address for the check and with 127.0.0.1 for the request reaches nothing
internal. Real HTTP to a real local receiver; only the name's answers come from a mapping of the test's
own (the resolver seam of ``AddressPolicy``), since no DNS server is at hand."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.addresses import AddressPolicy
from kernel.errors import Forbidden
from tests.apps.receiver import Behaviour, receiver
from tests.waiting import scaled
from zzd.webhook_http import MAX_EXCERPT_READ, AiohttpSender

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
        sender = AiohttpSender(5.0, 4, policy)
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
        sender = AiohttpSender(5.0, 4, policy)
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
        sender = AiohttpSender(5.0, 4, policy)
        try:
            outcome = await sender.post(f"http://hooks.internal.example:{port}/hook", {"x-test": "1"}, b"{}")
            again = await sender.post(f"http://hooks.internal.example:{port}/hook", {"x-test": "2"}, b"{}")
        finally:
            await sender.close()
        assert (outcome.status, again.status) == (202, 202)
        assert [g.headers["host"] for g in rec.got] == [f"hooks.internal.example:{port}"] * 2
        assert names.asked == ["hooks.internal.example"]  # the kept-alive connection was not resolved again


async def test_an_address_literal_outside_the_allowlist_is_refused_by_the_sender_itself() -> None:
    # No name to resolve, so no resolver is asked: the sender's socket factory checks the address.
    async with receiver() as rec:
        port = int(rec.base.rsplit(":", 1)[1])
        sender = AiohttpSender(5.0, 4, AddressPolicy([], allow_public=True))
        try:
            outcome = await sender.post(f"http://127.0.0.1:{port}/hook", {}, b"{}")
        finally:
            await sender.close()
        assert outcome.status is None and outcome.error is not None
        assert "address_not_allowed: 127.0.0.1" in outcome.error
        assert rec.got == []


def _certificate(tmp: Path, name: str) -> Path:
    """A self-signed certificate for ``name`` (its own authority), made by the openssl command."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    both = tmp / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    return both


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A bare HTTP/1.1 server's handler: read one request, answer ``200 ok``, close."""
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        await reader.readexactly(int(head.split(b"content-length:")[1].split(b"\r\n")[0]))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def test_tls_is_verified_against_the_urls_name_while_connecting_to_the_pinned_address(tmp_path: Path) -> None:
    # A TLS server on 127.0.0.1 whose certificate names hooks.test only; both names below resolve (in the
    # test's mapping) to that address. The request under hooks.test is answered; under other.test the
    # certificate check fails: SNI and verification used the URL's name, not the address connected to.
    pem = _certificate(tmp_path, "hooks.test")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pem)
    seen_sni: list[str | None] = []

    def note_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen_sni.append(name)

    server_tls.sni_callback = note_sni

    server = await asyncio.start_server(_answer_ok, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    client_tls = ssl.create_default_context(cafile=str(pem))
    names = Rebinder(["127.0.0.1"], ["127.0.0.1"])
    policy = AddressPolicy(["127.0.0.0/8"], allow_public=False, resolver=names)
    sender = AiohttpSender(5.0, 4, policy, tls=client_tls)
    try:
        good = await sender.post(f"https://hooks.test:{port}/hook", {}, b"{}")
        bad = await sender.post(f"https://other.test:{port}/hook", {}, b"{}")
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()
    assert (good.status, good.excerpt, good.error) == (200, "ok", None)
    assert bad.status is None and bad.error is not None and "certificate" in bad.error.lower()
    assert seen_sni == ["hooks.test", "other.test"]
    assert names.asked == ["hooks.test", "other.test"]


async def test_an_endless_answer_is_read_only_up_to_the_cap_and_the_connection_dropped() -> None:
    # A receiver that streams a body without end: a sender reading it all would never return (data keeps
    # coming, so no read timeout fires). The attempt ends after MAX_EXCERPT_READ bytes and the connection
    # is closed rather than kept alive for a body nobody will read.
    written = 0
    closed = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()
                written += 65536
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            closed.set()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = AiohttpSender(5.0, 4, AddressPolicy(["127.0.0.0/8"], allow_public=False))
    try:
        async with asyncio.timeout(scaled(10)):
            outcome = await sender.post(f"http://127.0.0.1:{port}/hook", {}, b"{}")
            await closed.wait()  # the sender hung up: the server's writes failed
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()
    assert (outcome.status, outcome.error) == (200, None)
    assert outcome.excerpt == "x" * 500
    assert written > MAX_EXCERPT_READ  # more was on offer than the sender took


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_names_and_literals_are_pinned_and_checked_like_ipv4() -> None:
    server = await asyncio.start_server(_answer_ok, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    allowed = AiohttpSender(5.0, 4, AddressPolicy(["::1/128"], allow_public=False, resolver=Rebinder(["::1"])))
    # Loopback is refused whichever way it is spelt: ::1, and 127.0.0.1 mapped into IPv6.
    refused = AiohttpSender(5.0, 4, AddressPolicy([], allow_public=True, resolver=Rebinder(["::1"])))
    try:
        by_name = await allowed.post(f"http://six.example:{port}/hook", {}, b"{}")
        literal = await allowed.post(f"http://[::1]:{port}/hook", {}, b"{}")
        name_refused = await refused.post(f"http://six.example:{port}/hook", {}, b"{}")
        literal_refused = await refused.post(f"http://[::1]:{port}/hook", {}, b"{}")
        mapped_refused = await refused.post(f"http://[::ffff:127.0.0.1]:{port}/hook", {}, b"{}")
    finally:
        await allowed.close()
        await refused.close()
        server.close()
        await server.wait_closed()
    assert (by_name.status, literal.status) == (200, 200)
    assert name_refused.error is not None and "address_not_allowed: six.example → ::1" in name_refused.error
    assert literal_refused.error is not None and "address_not_allowed: ::1" in literal_refused.error
    assert mapped_refused.error is not None and "address_not_allowed: ::ffff:7f00:1" in mapped_refused.error


@pytest.mark.parametrize(
    "literal",
    [
        "[64:ff9b::a00:7]",  # NAT64 (RFC 6052): a gateway on the path forwards it to 10.0.0.7
        "[64:ff9b::a9fe:a9fe]",  # … to the metadata service 169.254.169.254
        "[64:ff9b:1::a00:7]",  # local-use NAT64 (RFC 8215)
        "[2002:a00:7::]",  # 6to4 of 10.0.0.7
        "[::ffff:0:a00:7]",  # IPv4-translated (SIIT)
        "[::a00:7]",  # IPv4-compatible
        "[::7f00:1]",  # … of 127.0.0.1
        "224.0.0.1",  # multicast, which ipaddress counts as global
    ],
)
async def test_ipv6_forms_of_internal_ipv4_addresses_and_multicast_are_refused(literal: str) -> None:
    """Python's ``is_global`` judges these by their IPv6 prefix alone and calls them global; the policy
    judges them by the IPv4 address they carry (the apps audit of 2026-12-04 made subscriptions to each)."""
    policy = AddressPolicy([], allow_public=True, resolver=Rebinder())
    with pytest.raises(Forbidden):
        await policy.check(f"http://{literal}/hook")
    for public in ("[64:ff9b::5db8:d70e]", "[2002:5db8:d70e::]", "93.184.215.14"):  # 93.184.215.14 itself
        await policy.check(f"http://{public}/hook")
