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

_ids = itertools.count(1)


class Session:
    """One client connection, whatever its transport. It is the hub's subscriber."""

    def __init__(self, transport: str, peer: str, sink: Callable[[str], None]) -> None:
        self.id = next(_ids)
        self.transport = transport
        self.peer = peer
        self.identity: Identity | None = None
        self.tokens: set[str] = set()  # tokens this connection logged in with or was given
        self._sink = sink

    def deliver(self, text: str) -> None:
        self._sink(text)

    def __repr__(self) -> str:
        user = self.identity.username if self.identity else "-"
        return f"<session {self.id} {self.transport} {self.peer} {user}>"
