"""A refused token leaves no reference cycle behind (issue 16, S16 (d)).

Why: the refusal used to be built once per call and kept in a local
(``bad = Unauthorized(...)``, then ``raise bad``), so the exception's traceback
held the frame that held the exception. Such a cycle is freed only by the
cyclic collector, and it kept alive everything the traceback's frames
reached: on the WebSocket path the whole connection (protocol, transport,
tasks), about 80 objects per refused hello. Under a flood of bad-token
handshakes (500/s) that was ~20,000 objects for every young-generation
collection and a 110 ms full collection in 20 s, pauses every bystander's
round trip waited through. Freed by reference counting, the refusal and the
connection go as soon as the handler is done.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from datetime import timedelta

import pytest

from kernel.clock import SystemClock
from kernel.errors import Unauthorized
from zzd.auth.tokens import TokenService

SECRET = b"0123456789abcdef0123456789abcdef"


def _refusal_outlives_the_handler(check: Callable[[], object]) -> bool:
    ref: weakref.ReferenceType[Unauthorized] | None = None
    try:
        check()
    except Unauthorized as exc:
        ref = weakref.ref(exc)
    assert ref is not None, "the check did not refuse"
    return ref() is not None


def _tokens(audience: str = "zzd-clients") -> TokenService:
    return TokenService(
        {"k1": SECRET}, issuer="zzd", audience=audience, ttl=timedelta(minutes=5), leeway=0, clock=SystemClock()
    )


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWZvcmdlZA",  # no kid (the S16 flood's)
        "x" * 20_000,  # over the size cap
    ],
)
def test_a_refused_access_token_is_freed_without_the_collector(no_collector: None, token: str) -> None:
    assert not _refusal_outlives_the_handler(lambda: _tokens().verify(token))


def test_a_token_signed_by_another_key_is_freed_without_the_collector(no_collector: None) -> None:
    other = TokenService(
        {"k1": b"another-key-another-key-another-key!"},
        issuer="zzd",
        audience="zzd-clients",
        ttl=timedelta(minutes=5),
        leeway=0,
        clock=SystemClock(),
    )
    forged = other.issue(1, "session")
    assert not _refusal_outlives_the_handler(lambda: _tokens().verify(forged))


def test_a_person_token_refused_as_an_app_token_is_freed_without_the_collector(no_collector: None) -> None:
    person = _tokens().issue(1, "session")
    assert not _refusal_outlives_the_handler(lambda: _tokens().verify_app(person))


def test_the_check_fails_on_a_refusal_kept_in_a_cycle(no_collector: None) -> None:
    """The helper tells the cycle apart (the pattern the fix removed)."""

    def kept_in_a_local() -> None:
        bad = Unauthorized("invalid access token")
        raise bad

    assert _refusal_outlives_the_handler(kept_in_a_local)
