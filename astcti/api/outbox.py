"""A client connection's way out, shared by the stream transports (WebSocket, TCP).

The hub must never wait for a client, and fan-out to hundreds of clients must cost no more than
one write each: frames (serialised once for everyone, :mod:`astcti.wire`) are written straight
into the connection's transport, which sends at once or keeps the bytes until the socket takes
them. No task, queue or wake-up per client. A client that lets more than `limit` bytes pile up
unsent is too slow: it is disconnected with a reason, and the others carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from astcti.wire import Frame

log = logging.getLogger(__name__)

SLOW_CLIENT_BYTES = 1 << 20  # unsent bytes (a few thousand events) before a client is dropped


class Outbox:
    """Writes a connection's frames; `encode` picks the transport's encoding of a frame."""

    __slots__ = ("_transport", "_encode", "_on_overflow", "_name", "_limit", "_closed",
                 "_overflow")

    def __init__(self, transport: asyncio.WriteTransport, encode: Callable[[Frame], bytes],
                 on_overflow: Callable[[str], Awaitable[None]], name: str,
                 limit: int = SLOW_CLIENT_BYTES) -> None:
        self._transport = transport
        self._encode = encode
        self._on_overflow = on_overflow
        self._name = name
        self._limit = limit
        self._closed = False
        self._overflow: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, frame: Frame) -> None:
        """One event."""
        self.write(self._encode(frame))

    def put_many(self, frames: list[Frame]) -> None:
        """Events of one moment, in one write."""
        encode = self._encode
        self.write(b"".join([encode(f) for f in frames]))

    def write(self, data: bytes) -> None:
        """Bytes already in the transport's encoding (a reply, an error line)."""
        if self._closed:
            return
        transport = self._transport
        if transport.is_closing():
            self._closed = True
            return
        if transport.get_write_buffer_size() > self._limit:
            self._closed = True
            reason = f"client too slow: more than {self._limit // 1024} KiB of events unsent"
            log.warning("%s: disconnected: %s", self._name, reason)
            self._overflow = asyncio.get_running_loop().create_task(self._on_overflow(reason))
            self._overflow.add_done_callback(self._overflow_done)
            return
        transport.write(data)

    def _overflow_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: closing a too slow client failed", self._name,
                      exc_info=task.exception())

    def close(self) -> None:
        """Write nothing more (the connection is ending)."""
        self._closed = True
