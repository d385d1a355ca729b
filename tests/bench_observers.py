"""What the desktop and wallboard services add to each published event (CPU time, one core).

`python -m tests.bench_observers`: 80,000 call events of 500 extensions, timed through the hub's
publish, then through the presence and queue statistics observers alone (their coalesced flush
left out: it runs at most five times a second); with no agent, then with an agent on every
fifth extension. Best of 7 runs each, CPU time (the machine is shared).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from astcti.cti.acd import AcdService, Agent
from astcti.cti.directory import Directory, Extension
from astcti.cti.events import ConnectionCleared, Delivered, Established, Held
from astcti.cti.hub import Hub
from astcti.cti.presence import PresenceService
from astcti.cti.queuestats import QueueStatsService
from astcti.cti.tracker import Tracker
from astcti.store import Store

store = Store.open(Path(tempfile.mkdtemp(prefix="astcti-bench-")) / "b.db", create=True)


def build(agents: bool):
    """A hub, the two observers and the events (no I/O: the store is only read)."""
    hub, d = Hub(), Directory()
    for i in range(500):
        d.extensions[str(1000 + i)] = Extension(str(1000 + i), "PJSIP")
    acd = AcdService(store, d, hub)
    if agents:
        for i in range(0, 500, 5):
            acd.agents[str(1000 + i)] = Agent(str(1000 + i), f"a{i}", ["support"], state="ready")
    tracker = Tracker(d.resolve)
    presence = PresenceService(d, hub, lambda e: ("", ""))
    stats = QueueStatsService(store, hub, tracker, acd)
    stats._schedule = lambda: None  # count the observer's work, not the coalesced flush
    events = []
    for i in range(20000):
        ext, cid = str(1000 + i % 500), f"c{i}"
        queue = "support" if i % 2 else ""
        events += [Delivered(ext, cid, "2026-12-01T00:00:00+00:00", alerting=ext,
                             calling="0911", lastredirection=queue),
                   Established(ext, cid, "2026-12-01T00:00:01+00:00", calling="0911",
                               lastredirection=queue),
                   Held(ext, cid, "t"), ConnectionCleared(ext, cid, "t")]
    return hub, [presence.on_cti_event, stats.on_cti_event], events


def per_event(agents: bool, observe: bool) -> float:
    """Microseconds of CPU per event: the hub's publish alone, or the observers alone."""
    hub, observers, events = build(agents)
    start = time.process_time()
    if observe:
        for event in events:
            for observer in observers:
                observer(event)
    else:
        for event in events:
            hub.publish(event)
    return (time.process_time() - start) / len(events) * 1e6


if __name__ == "__main__":
    for agents in (False, True):
        hub = min(per_event(agents, False) for _ in range(7))
        added = min(per_event(agents, True) for _ in range(7))
        print(f"agents on every 5th extension: {agents}: hub.publish {hub:.2f} us per event,"
              f" the observers add {added:.2f} us")
