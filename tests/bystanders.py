"""Established clients pinging a server, run as a process of their own (``python -m tests.bystanders``).

S16 (d) asks whether a flood of bad handshakes leaves *established clients'*
p99 within 2× of its baseline. Measured from the test's own process, the
round trips also held that process's pauses: pytest's heap is large, and a
full collection in it stopped every bystander's loop for milliseconds, in
the baseline and in the flood alike, so the ratio moved by 2× between two
runs of the same code. Here the bystanders live in a small process whose
collector is frozen and off while it measures (as ``tests/loadmix.py`` does
for S1), so what the round trips hold is the network and the server.

Protocol on stdin/stdout: one JSON line in, ``{"url": ..., "tokens": [...]}``;
once every client has said hello the process prints ``ready``; each client
then pings every 50 ms until a line arrives on stdin; the process prints one
JSON line, ``{"samples": [[sent_at, rtt], ...], "closed": [...]}``, with
``sent_at`` on ``time.monotonic()`` (the system's monotonic clock, the same
in every process, so the caller can split the samples by another process's
timestamps) and the close codes of any client the server closed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time

from tests.client import Client

#: An ordinary client's pacing between pings (not synchronisation).
PACE_S = 0.05


async def _ping(client: Client, stop: asyncio.Event, out: list[tuple[float, float]]) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        reply = await client.request({"type": "ping"})
        if reply["type"] != "ok":
            raise AssertionError(reply)
        out.append((t0, time.monotonic() - t0))
        await asyncio.sleep(PACE_S)


async def run(url: str, tokens: list[str]) -> dict[str, object]:
    clients = [await Client.connect(url, tok) for tok in tokens]
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        pingers = [asyncio.create_task(_ping(c, stop, samples)) for c in clients]
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        stop.set()
        await asyncio.gather(*pingers)
    finally:
        gc.enable()
        gc.unfreeze()
    closed = [c.closed for c in clients if c.closed is not None]
    for c in clients:
        await c.close()
    return {"samples": samples, "closed": closed}


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(run(spec["url"], spec["tokens"]))), flush=True)


if __name__ == "__main__":
    main()
