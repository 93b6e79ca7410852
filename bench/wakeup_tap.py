"""Timestamps every wake-up and notice announcement the zzd processes publish on Redis (S2's tail).

    python bench/wakeup_tap.py REDIS_URL PREFIX OUTFILE

A process of its own (not the load generator's loop, which lags under load)
subscribed to ``PREFIX:events`` and ``PREFIX:control``; one line per message:
``<time.time()> w <origin> <person> <seq> <person> <seq> …`` for a wake-up,
``<time.time()> n <notice_id>`` for a notice's ``notice_committed``. The
benchmark then splits each cross-process delivery at the moment its wake-up
was on Redis: before (the sending process: queue, commit, publish) and after
(the receiving process: subscriber, hub, reorder buffer or gap repair, socket).
Stopped with SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import time

import redis


def main() -> None:
    url, prefix, out = sys.argv[1:4]
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    events, control = f"{prefix}:events", f"{prefix}:control"
    pubsub.subscribe(events, control)
    with open(out, "w") as f:
        print("ready", flush=True)
        while not stop:
            msg = pubsub.get_message(timeout=0.5)
            if msg is None:
                continue
            now = time.time()
            data: bytes = msg["data"]
            if msg["channel"].decode() == events:
                head = json.loads(data.partition(b"\n")[0])
                flat = head["r"]
                pairs = " ".join(f"{flat[i]} {flat[i + 1]}" for i in range(0, len(flat), 3))
                f.write(f"{now:.6f} w {head['o']} {pairs}\n")
            else:
                ctl = json.loads(data)
                if ctl.get("t") == "notice_committed":
                    f.write(f"{now:.6f} n {ctl['notice_id']}\n")
    pubsub.close()
    client.close()


if __name__ == "__main__":
    main()
