"""A stand-in for a client connection: what the hub and the observers deliver to it."""

from __future__ import annotations

import json
from typing import Any

from astcti.wire import Frame


class Sink:
    """Keeps every frame delivered: its text, and the event decoded from it."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.events: list[dict[str, Any]] = []

    def deliver(self, frame: Frame) -> None:
        self.texts.append(frame.text)
        self.events.append(json.loads(frame.data))

    def deliver_many(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.deliver(frame)
