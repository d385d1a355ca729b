"""What the desktop and wallboard services add to each published event (CPU time, one core).

`python -m tests.bench_observers`: 80,000 call events of 500 extensions through the hub, without
and with the presence and queue statistics observers (the coalesced flush left out: it runs at
most five times a second); once with an agent on every fifth extension, once with none.
"""
import time, tempfile, pathlib
from astcti.cti.hub import Hub
from astcti.cti.directory import Directory, Extension
from astcti.cti.acd import AcdService, Agent
from astcti.cti.tracker import Tracker
from astcti.cti.presence import PresenceService
from astcti.cti.queuestats import QueueStatsService
from astcti.cti.events import Delivered, Established, ConnectionCleared, Held
from astcti.store import Store
tmp = pathlib.Path(tempfile.mkdtemp(prefix="astcti-bench-"))
store = Store.open(tmp/"b.db", create=True)
AGENTS = True
def run(observe):
    hub, d = Hub(), Directory()
    for i in range(500):
        d.extensions[str(1000+i)] = Extension(str(1000+i), "PJSIP")
    acd = AcdService(store, d, hub)
    for i in range(0, 500, 5 if AGENTS else 10**9):
        acd.agents[str(1000+i)] = Agent(str(1000+i), f"a{i}", ["support"], state="ready")
    tr = Tracker(d.resolve)
    if observe:
        pres = PresenceService(d, hub, lambda e: ("", ""))
        qs = QueueStatsService(store, hub, tr, acd)
        qs._schedule = lambda: None  # count the observer work, not the coalesced flush
        hub.observers += [pres.on_cti_event, qs.on_cti_event]
    evs = []
    for i in range(20000):
        ext = str(1000 + i % 500); cid = f"c{i}"
        evs += [Delivered(ext, cid, "2026-12-01T00:00:00+00:00", alerting=ext, calling="0911", lastredirection="support" if i % 2 else ""),
                Established(ext, cid, "2026-12-01T00:00:01+00:00", calling="0911", lastredirection="support" if i % 2 else ""),
                Held(ext, cid, "t"), ConnectionCleared(ext, cid, "t")]
    t = time.process_time()
    for e in evs: hub.publish(e)
    return (time.process_time() - t) / len(evs) * 1e6
for AGENTS in (True, False):
  base = min(run(False) for _ in range(3)); obs = min(run(True) for _ in range(3))
  print(AGENTS, f"hub.publish per event: {base:.2f} us without observers, {obs:.2f} us with presence+queuestats ({obs-base:.2f} us added)")
