"""One client connection as every layer sees it: the hub's subscriber and the handlers' caller.

Transports create a `Session` per connection (per token or address on REST) and hand it to the
dispatcher with each request; its `identity` is set by `login` (or by an `auth=none` listener).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from astcti.api.auth import Identity
    from astcti.wire import Frame

_ids = itertools.count(1)


class Session:
    """One client connection, whatever its transport. It is the hub's subscriber: events
    arrive as frames serialised once for everyone (`astcti.wire.Frame`), and the transport's
    sink writes the encoding it needs."""

    def __init__(self, transport: str, peer: str, sink: Callable[[Frame], None],
                 sink_many: Callable[[list[Frame]], None] | None = None) -> None:
        self.id = next(_ids)
        self.transport = transport
        self.peer = peer
        self.identity: Identity | None = None
        self.tokens: set[str] = set()  # tokens this connection logged in with or was given
        self._sink = sink
        self._sink_many = sink_many

    def deliver(self, frame: Frame) -> None:
        self._sink(frame)

    def deliver_many(self, frames: list[Frame]) -> None:
        """Several events of one moment (one write where the transport can)."""
        if self._sink_many is not None:
            self._sink_many(frames)
        else:
            for frame in frames:
                self._sink(frame)

    def __repr__(self) -> str:
        user = self.identity.username if self.identity else "-"
        return f"<session {self.id} {self.transport} {self.peer} {user}>"
