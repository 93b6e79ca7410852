"""A gate that holds a build inside its thread until the test releases it (no sleeps as synchronisation)."""

from __future__ import annotations

import asyncio
import threading

WAIT = 60.0  # seconds a thread waits for the test's release at most (a failing test must not hang)


class Gate:
    """Holds what a fixture wraps (a build run outside the event loop's thread) until the test releases it."""

    def __init__(self, loop_thread: threading.Thread) -> None:
        self.loop_thread = loop_thread
        self.entered = threading.Event()
        self.release = threading.Event()
        self.built_in: list[threading.Thread] = []

    def close(self) -> None:
        """Builds from now on wait at the gate."""
        self.entered.clear()
        self.release.clear()

    async def reached(self) -> None:
        """Return once a build's thread waits at the gate."""
        assert await asyncio.to_thread(self.entered.wait, WAIT), "no build reached its thread"
