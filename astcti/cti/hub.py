"""Who monitors what, per-extension sequence numbers and the resume buffer, fan-out.

Each event is serialised once (a :class:`~astcti.wire.Frame`) and the same frame is handed to
every subscriber of its extension: per client there is only the write. Subscribers never block
the hub: a transport writes the frame's prepared bytes and drops a client that falls too far
behind.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

from astcti.cti.events import CtiEvent
from astcti.wire import Frame

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """A client connection as the hub sees it."""

    def deliver(self, frame: Frame) -> None:
        """Send or queue one serialised event (must not block)."""

    def deliver_many(self, frames: list[Frame]) -> None:
        """Several events of one moment, in order (one write where the transport can)."""


class Buffered(NamedTuple):
    seq: int
    at: float
    frame: Frame


class Hub:
    """Monitors and event fan-out."""

    def __init__(self, buffer_size: int = 1000, buffer_age: float = 300.0) -> None:
        self.buffer_size = buffer_size
        self.buffer_age = buffer_age
        self.monitors: dict[str, set[Subscriber]] = {}
        self.seq: dict[str, int] = {}
        self.buffers: dict[str, deque[Buffered]] = {}
        self.published = 0
        self.tap: Callable[[str], None] | None = None  # admin trace (astcti-shell `trace on asc`)
        # services that derive state from the events (presence, queue statistics)
        self.observers: list[Callable[[CtiEvent], None]] = []

    # -- monitors -------------------------------------------------------------------------------
    def attach(self, subscriber: Subscriber, extension: str) -> bool:
        """False if it already monitors the extension."""
        subs = self.monitors.setdefault(extension, set())
        if subscriber in subs:
            return False
        subs.add(subscriber)
        return True

    def detach(self, subscriber: Subscriber, extension: str) -> bool:
        subs = self.monitors.get(extension)
        if not subs or subscriber not in subs:
            return False
        subs.discard(subscriber)
        if not subs:
            del self.monitors[extension]
        return True

    def detach_all(self, subscriber: Subscriber) -> list[str]:
        gone = [ext for ext, subs in self.monitors.items() if subscriber in subs]
        for ext in gone:
            self.detach(subscriber, ext)
        return gone

    def monitored_by(self, subscriber: Subscriber) -> list[str]:
        return sorted(ext for ext, subs in self.monitors.items() if subscriber in subs)

    def monitor_counts(self) -> dict[str, int]:
        return {ext: len(subs) for ext, subs in sorted(self.monitors.items())}

    def resize_buffers(self, size: int) -> None:
        """A new resume buffer size, applied to every extension's buffer now."""
        self.buffer_size = size
        for ext, buf in list(self.buffers.items()):
            self.buffers[ext] = deque(buf, maxlen=size)

    # -- events ---------------------------------------------------------------------------------
    def _frame(self, event: CtiEvent, key: str, now: float) -> Frame:
        """Number, serialise and buffer one event under `key` (its extension or a topic)."""
        seq = self.seq.get(key, 0) + 1
        self.seq[key] = seq
        wire = event.to_wire()
        wire["seq"] = seq
        frame = Frame.of(wire)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = deque(maxlen=self.buffer_size)
        buf.append(Buffered(seq, now, frame))
        while now - buf[0].at > self.buffer_age:
            buf.popleft()
            if not buf:
                break
        self.published += 1
        if self.tap is not None:
            self.tap(frame.text)
        return frame

    def publish(self, event: CtiEvent, topic: str | None = None) -> None:
        """To the monitors of the event's extension, or of `topic` (e.g. `@queues`): each key
        has its own seq and resume buffer."""
        key = event.extension if topic is None else topic
        frame = self._frame(event, key, time.monotonic())
        subs = self.monitors.get(key)
        if subs:
            for sub in tuple(subs):
                sub.deliver(frame)
        if self.observers:
            self._observe(event)

    def publish_all(self, events: Iterable[CtiEvent]) -> None:
        """Events of one moment (e.g. from one ARI event): a client monitoring several of them
        gets them in one delivery."""
        events = list(events)
        if len(events) == 1:
            self.publish(events[0])
            return
        now = time.monotonic()
        batches: dict[Subscriber, list[Frame]] = {}
        for event in events:
            frame = self._frame(event, event.extension, now)
            for sub in tuple(self.monitors.get(event.extension, ())):
                batch = batches.get(sub)
                if batch is None:
                    batches[sub] = [frame]
                else:
                    batch.append(frame)
        for sub, frames in batches.items():
            if len(frames) == 1:
                sub.deliver(frames[0])
            else:
                sub.deliver_many(frames)
        if self.observers:
            for event in events:
                self._observe(event)

    def _observe(self, event: CtiEvent) -> None:
        for observe in self.observers:
            try:  # one observer's bug must not cost the others (or the next events) this event
                observe(event)
            except Exception:
                log.exception("hub observer %s failed on %s", getattr(observe, "__qualname__",
                                                                      observe), event.NAME)

    def missed(self, extension: str, lastseq: int) -> list[Frame] | None:
        """Events after `lastseq`, or None if some of them are no longer buffered."""
        current = self.seq.get(extension, 0)
        if lastseq > current:
            return None
        if lastseq == current:
            return []
        buf = self.buffers.get(extension)
        now = time.monotonic()
        if not buf:
            return None
        items = [b for b in buf if now - b.at <= self.buffer_age]
        if not items or items[0].seq > lastseq + 1:
            return None
        return [b.frame for b in items if b.seq > lastseq]

    def last_seq(self, extension: str) -> int:
        return self.seq.get(extension, 0)
