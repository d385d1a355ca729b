"""A bounded, ordered outbox per client connection, shared by the stream transports.

The hub must never wait for a client: events are queued here and written by one task; a client
that lets SLOW_CLIENT_LIMIT messages pile up is disconnected with a reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

SLOW_CLIENT_LIMIT = 2000


class Outbox:
    def __init__(self, write: Callable[[str], Awaitable[None]],
                 on_overflow: Callable[[str], Awaitable[None]], name: str,
                 limit: int = SLOW_CLIENT_LIMIT) -> None:
        self._write = write
        self._on_overflow = on_overflow
        self._name = name
        self._limit = limit
        self._queue: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._task = asyncio.create_task(self._run(), name=f"outbox-{name}")

    def put(self, text: str) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._limit:
            self._closed = True
            self._queue.clear()
            reason = f"client too slow: {self._limit} messages waiting"
            log.warning("%s: disconnected: %s", self._name, reason)
            asyncio.create_task(self._on_overflow(reason))
            self._wakeup.set()
            return
        self._queue.append(text)
        self._wakeup.set()

    async def _run(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue:
                    await self._write(self._queue.popleft())
                if self._closed:
                    return
        except (ConnectionError, asyncio.CancelledError, RuntimeError):
            self._closed = True

    async def close(self) -> None:
        self._closed = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
