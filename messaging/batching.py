"""Group commit: many concurrent requests share one transaction.

A commit costs an fsync and several round trips; under load, the requests
that arrive while one batch commits form the next batch, so throughput grows
with load instead of latency. A batch that fails as a whole is retried item
by item, so one bad request can never fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from kernel.errors import Unavailable

logger = logging.getLogger(__name__)

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")

#: Handler: items → one result (or exception) per item, in order.
BatchHandler = Callable[[Sequence[T]], Awaitable[list["R | BaseException"]]]


class Batcher(Generic[T, R]):
    def __init__(self, handler: BatchHandler[T, R], *, max_batch: int = 256, name: str = "batcher") -> None:
        self._handler = handler
        self._max = max_batch
        self._name = name
        # ``None`` is the stop sentinel queued by :meth:`close`.
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        return await self.submit_nowait(item)

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; its result arrives on the returned future (for many items: no coroutine each)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        return fut

    async def close(self) -> None:
        """Finish what is queued, then stop (graceful shutdown: nothing accepted is dropped)."""
        if self._task is None or self._task.done():
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if live:
                await self._process(live)

    async def _process(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._handler(items)
        except Unavailable as exc:
            # The database is down: retrying one by one would only multiply the wait.
            for _, fut in batch:
                _settle(fut, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            logger.info("%s: batch of %d failed (%s); retrying one by one", self._name, len(batch), exc)
            for pair in batch:
                await self._process([pair])
            return
        for (_, fut), res in zip(batch, results, strict=True):
            _settle(fut, res)


def _settle(fut: asyncio.Future[R], res: R | BaseException) -> None:
    if fut.done():
        return
    if isinstance(res, BaseException):
        fut.set_exception(res)
    else:
        fut.set_result(res)
