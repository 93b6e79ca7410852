"""The chat client of ``bench/apps_fanout.py``, in a process of its own.

Run by the orchestrator: ``python bench/apps_chat_client.py --url WS --token T --to PERSON --rate R --seconds S``;
prints one JSON object: send→ack latencies in ms (``Infinity`` for a lost reply), the replies by kind, and
this process's own event-loop lag. Why a process of its own: in the orchestrator the chat client shared an
event loop with the report filing and the two stream apps, whose lag (p99 657 ms in a run at load 10) was
counted as chat latency in the phase with app traffic and not in the phase without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def loop_lag(into: list[float]) -> None:
    """Event-loop lag in ms past a 10 ms sleep: a late reply may be the client's own."""
    while True:
        t = time.monotonic()
        await asyncio.sleep(0.01)
        into.append((time.monotonic() - t - 0.01) * 1000)


async def chat(ws_url: str, token: str, to: int, rate: float, seconds: float) -> dict[str, object]:
    """Send to ``to`` at ``rate``/s for ``seconds`` (open loop) on one socket.

    The replies are counted by kind (``ok``, an error code, ``no reply``, ``socket closed: <code>``), so a run
    whose chat is lost says how.
    """
    from tests.client import Client

    outcomes: Counter[str] = Counter()
    lag: list[float] = []
    ca = await Client.connect(ws_url, token)
    lat: list[float] = []
    lagger = asyncio.create_task(loop_lag(lag))
    try:
        t0, n = time.monotonic(), int(rate * seconds)

        async def one(i: int) -> None:
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            ok = False
            try:
                reply = await ca.request({"type": "send", "to": to, "client_msg_id": f"c{secrets.token_hex(6)}",
                                          "body": f"消息 {i}"}, timeout=60)  # fmt: skip
                ok = reply["type"] == "ok"
                outcomes["ok" if ok else f"error {reply.get('code')}"] += 1
            except TimeoutError:
                outcomes["no reply within 60 s"] += 1
            except (ConnectionError, ConnectionClosed):  # the server dropped the socket: counted as lost
                outcomes[f"socket closed: {ca.closed}"] += 1
            lat.append((time.monotonic() - due) * 1000 if ok else float("inf"))

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        lagger.cancel()
        await ca.close()
    return {"lat": lat, "outcomes": dict(outcomes), "lag": lag}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--to", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(chat(a.url, a.token, a.to, a.rate, a.seconds))))


if __name__ == "__main__":
    main()
