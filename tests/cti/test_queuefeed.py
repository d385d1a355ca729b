"""The AMI queue feed with AMI messages as Asterisk 22 sends them (no AMI connection)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from astcti.cti.acd import AcdService
from astcti.cti.directory import Directory
from astcti.cti.events import QUEUES_TOPIC
from astcti.cti.hub import Hub
from astcti.cti.queuefeed import AmiQueueFeed
from astcti.cti.queuestats import QueueStatsService
from astcti.cti.tracker import Tracker
from astcti.store import Store
from tests.cti.sink import Sink


class FakeAmi:
    name = "acti_amilink_01"
    up = True

    def __init__(self) -> None:
        self.handlers: list[tuple[str, object]] = []
        self.up_hooks: list[object] = []
        self.status: list[dict] = []

    def on(self, pattern, handler):
        entry = (pattern, handler)
        self.handlers.append(entry)
        return lambda: self.handlers.remove(entry)

    def emit(self, **event) -> None:
        for pattern, handler in list(self.handlers):
            if fnmatchcase(event["Event"], pattern):
                handler(self, event)

    async def queue_status(self, queue=None, member=None):
        return self.status


def caller(event: str, uniqueid: str, **extra) -> dict:
    return {"Event": event, "Queue": "support", "Channel": f"PJSIP/trunk-{uniqueid}",
            "Uniqueid": uniqueid, "Linkedid": uniqueid, "CallerIDNum": "0911",
            "CallerIDName": "<unknown>", **extra}


@pytest.fixture
def feed(tmp_path: Path):
    store = Store.open(tmp_path / "f.db", create=True)
    hub, directory = Hub(), Directory()
    stats = QueueStatsService(store, hub, Tracker(directory.resolve),
                              AcdService(store, directory, hub))
    yield AmiQueueFeed(stats), stats
    store.close()


async def test_events_make_the_figures(feed) -> None:
    feed, stats = feed
    ami = FakeAmi()
    feed.attach(ami)
    ami.emit(**caller("QueueCallerJoin", "1.1", Position="1", Count="1",
                      CallerIDName="Alice Example"))
    ami.emit(**caller("QueueCallerJoin", "1.2", Position="2", Count="2"))
    view = stats.snapshot("support")["queues"][0]
    assert [(c["callid"], c["callingname"], c["position"]) for c in view["callers"]] == [
        ("1.1", "Alice Example", 1), ("1.2", "", 2)]
    ami.emit(**caller("AgentConnect", "1.1", HoldTime="25", MemberName="7001",
                      Interface="Local/101@astcti-agent/n"))
    ami.emit(**caller("QueueCallerLeave", "1.1", Position="1", Count="1"))
    ami.emit(**caller("QueueCallerAbandon", "1.2", Position="1", OriginalPosition="2",
                      HoldTime="8"))
    ami.emit(**caller("QueueCallerLeave", "1.2", Position="1", Count="0"))
    view = stats.snapshot("support")["queues"][0]
    assert (view["waiting"], view["answered"], view["abandoned"], view["answeredinsl"]) == \
        (0, 1, 1, 0)  # waited 25 s: outside the 20 s service level
    assert view["averagewait"] == 25.0
    # the ACD service's reads are not needed while AMI tells: they change nothing
    stats.waiting_list("support", [("9.9", "0999")])
    assert stats.snapshot("support")["queues"][0]["waiting"] == 0
    feed.detach(ami.name)
    assert ami.handlers == [] and ami.up_hooks == [] and not stats.event_feed_up()


async def test_a_reconnect_reads_every_queue_and_drops_callers_that_are_gone(feed) -> None:
    feed, stats = feed
    ami = FakeAmi()
    feed.attach(ami)
    ami.emit(**caller("QueueCallerJoin", "1.1", Position="1"))
    ami.emit(**caller("QueueCallerJoin", "1.2", Position="2"))
    ami.status = [
        {"Event": "QueueParams", "Queue": "support", "Calls": "1"},
        {"Event": "QueueParams", "Queue": "sales", "Calls": "0"},
        {"Event": "QueueEntry", "Queue": "support", "Position": "1", "Uniqueid": "1.2",
         "Channel": "PJSIP/trunk-1.2", "CallerIDNum": "0922", "CallerIDName": "Bob",
         "Wait": "42"},
    ]
    await ami.up_hooks[0](ami)
    snap = stats.snapshot()
    assert [q["queue"] for q in snap["queues"]] == ["sales", "support"]
    support = snap["queues"][1]
    assert [(c["callid"], c["position"]) for c in support["callers"]] == [("1.2", 1)]
    assert support["abandoned"] == 0  # 1.1 left while AMI was away: outcome unknown


def member(event: str, **extra) -> dict:
    return {"Event": event, "Queue": "support", "MemberName": "Bob", "Interface":
            "Local/102@from-queue/n", "StateInterface": "hint:102@ext-local", "Status": "1",
            "Paused": "0", "PausedReason": "", "InCall": "0", **extra}


async def test_members_only_asterisk_knows_are_on_the_wallboard(feed) -> None:
    feed, stats = feed
    ami = FakeAmi()
    feed.attach(ami)
    sink = Sink()
    stats.hub.attach(sink, QUEUES_TOPIC)
    ami.emit(**member("QueueMemberAdded"))  # e.g. the phone's *45 on FreePBX
    lines = stats.snapshot()["agents"]
    assert [(a["agentid"], a["extension"], a["state"], a["groups"]) for a in lines] == [
        ("Bob", "102", "ready", ["support"])]
    ami.emit(**member("QueueMemberPause", Paused="1", PausedReason="lunch"))
    assert (stats.snapshot()["agents"][0]["state"], stats.snapshot()["agents"][0]["reasoncode"]) \
        == ("notready", "lunch")
    assert stats.snapshot("support")["queues"][0]["notready"] == 1
    ami.emit(**member("QueueMemberStatus", Paused="0", Status="6"))
    assert stats.snapshot()["agents"][0]["state"] == "ringing"
    ami.emit(**caller("AgentConnect", "1.5", MemberName="Bob", HoldTime="3",
                      Interface="Local/102@from-queue/n"))
    ami.emit(**member("QueueMemberStatus", Status="2", InCall="1"))
    line = stats.snapshot()["agents"][0]
    assert (line["state"], line["handled"]) == ("oncall", 1)
    stats.flush()
    ami.emit(**member("QueueMemberRemoved"))
    assert stats.snapshot()["agents"] == []
    assert [e["state"] for e in sink.events if e["event"] == "agentstatus"][-1] == "loggedoff"


async def test_a_queue_status_refused_at_connect_costs_one_line_and_keeps_the_poller(
        tmp_path: Path, caplog) -> None:
    """Asterisk just started: app_queue is not loaded yet and AMI refuses QueueStatus. The
    ACD's resync says so in one line (no traceback) and does not count that Asterisk as fed by
    AMI, so its poller keeps reading the queues."""
    import logging
    from types import SimpleNamespace

    from astcti.pbx.ami import AmiError

    class RefusingAmi(FakeAmi):
        config = SimpleNamespace(sibling="acti_tlink_01")

        async def queue_status(self, queue=None, member=None):
            raise AmiError("acti_amilink_01: AMI QueueStatus failed: Invalid/unknown command:"
                           " QueueStatus")

    store = Store.open(tmp_path / "a.db", create=True)
    try:
        acd = AcdService(store, Directory(), Hub())
        ami = RefusingAmi()
        acd.attach_ami(ami)  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING):
            for hook in ami.up_hooks:
                await hook(ami)  # type: ignore[operator]
        assert "acti_tlink_01" not in acd._fed
        lines = [r.getMessage() for r in caplog.records]
        assert lines == ["acti_amilink_01: cannot read the waiting callers (the ACD polls the"
                         " queues meanwhile): acti_amilink_01: AMI QueueStatus failed:"
                         " Invalid/unknown command: QueueStatus"], lines
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        store.close()
