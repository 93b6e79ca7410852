"""A handshake flood with bad tokens, run as its own process (``python -m tests.flood``).

Separate from the test's event loop so that the bystanders' latency the test
measures is the server's, not the flood client's own CPU. Prints one JSON
line: close codes seen (how many of each; ``503`` for a handshake shed before
the upgrade, ``401`` for one refused for its token), handshakes made, seconds
taken, and when the flood started and ended on ``time.monotonic()``
(``started``, ``ended``: the same clock in every process, so a caller can
split other processes' samples by them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from tests.rawws import RawSocket, frame

#: Well-formed JWT shape, signature forged.
FORGED = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWZvcmdlZA"


async def bad_hello(port: int, outcomes: dict[str, int], at_handshake: bool = False) -> None:
    """One handshake plus a hello with a forged token; records the close code (-1: no close frame).

    ``at_handshake``: the forged token travels in the upgrade's ``Authorization`` header instead.
    """
    try:
        raw = await RawSocket.open(port, f"Authorization: Bearer {FORGED}\r\n" if at_handshake else "")
    except AssertionError as exc:  # the handshake was answered, but not with 101
        code = next((c for c in ("401", "503") if f" {c} " in str(exc)), "refused")
        outcomes[code] = outcomes.get(code, 0) + 1
        return
    except OSError:
        outcomes["refused"] = outcomes.get("refused", 0) + 1
        return
    try:
        raw.send(frame(0x1, json.dumps({"type": "hello", "id": "h", "v": 1, "token": FORGED}).encode()))
        code = str(await raw.close_code(timeout=30))
    except (OSError, TimeoutError):
        code = "-1"
    finally:
        raw.abort()
    outcomes[code] = outcomes.get(code, 0) + 1


async def flood(port: int, rate: float, seconds: float, at_handshake: bool = False) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    outcomes: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    t0 = loop.time()
    while (elapsed := loop.time() - t0) < seconds:
        while len(tasks) < elapsed * rate:  # open loop: on schedule, whatever the answers
            tasks.append(asyncio.create_task(bad_hello(port, outcomes, at_handshake)))
        await asyncio.sleep(0.005)
    sent_s = loop.time() - t0
    await asyncio.gather(*tasks)
    return {
        "outcomes": outcomes,
        "handshakes": len(tasks),
        "seconds": round(sent_s, 2),
        "started": started,
        "ended": time.monotonic(),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--at-handshake", action="store_true", help="the token in the upgrade's Authorization header")
    args = p.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is in the dev set
        run = asyncio.run
    print(json.dumps(run(flood(args.port, args.rate, args.seconds, args.at_handshake))))


if __name__ == "__main__":
    main()
