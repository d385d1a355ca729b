"""Queue statistics without Asterisk: the board's figures, agents' lines, the events sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from astcti.cti.acd import Agent, AcdService
from astcti.cti.directory import Directory
from astcti.cti.events import (
    QUEUES_TOPIC, AgentLoggedOff, AgentNotReady, Delivered, Established,
)
from astcti.cti.hub import Hub
from astcti.cti.queuestats import QueueBoard, QueueStatsService, agent_line, count_agents
from astcti.cti.tracker import Tracker
from astcti.store import Store
from tests.cti.sink import Sink


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.day = "2027-01-15"

    def __call__(self) -> float:
        return self.now


def test_waiting_answered_abandoned_and_service_level() -> None:
    clock = Clock()
    board = QueueBoard(today=lambda: clock.day, service_level=20)
    assert board.view("support")["servicelevel"] == -1  # no call yet: no figure, not 0 or 100
    assert board.joined("support", "c1", "0911", "Ann", clock.now)
    assert board.joined("support", "c2", "0922", "", clock.now + 5)
    assert not board.joined("support", "c1", "0911", "Ann", clock.now + 9)  # seen again
    view = board.view("support")
    assert view["waiting"] == 2 and [c["callid"] for c in view["callers"]] == ["c1", "c2"]
    assert view["longestsince"].startswith("2027-01-15T")  # the page counts up from it
    assert board.answered("support", "c1", clock.now + 12)  # waited 12 s: within 20
    assert not board.left("support", "c1", clock.now + 13)  # leaving after the answer: no abandon
    assert board.view("support")["callers"][0] == {**board.view("support")["callers"][0],
                                                   "callid": "c2", "position": 1}
    assert board.left("support", "c2", clock.now + 40)  # hung up waiting
    assert board.joined("support", "c3", "0933", "", clock.now + 50)
    assert board.answered("support", "c3", clock.now + 80)  # waited 30 s: outside
    assert not board.answered("support", "c3", clock.now + 81)  # counted once
    view = board.view("support")
    assert (view["waiting"], view["answered"], view["abandoned"], view["answeredinsl"]) == \
        (0, 2, 1, 1)
    assert view["servicelevel"] == pytest.approx(33.3)  # 1 of 3 ended calls within 20 s
    assert view["averagewait"] == 21.0
    assert view["longestsince"] == ""


def test_counters_start_again_each_day_but_waiting_callers_stay() -> None:
    clock = Clock()
    board = QueueBoard(today=lambda: clock.day)
    board.joined("support", "c1", "0911", "", clock.now)
    board.answered("support", "c1", clock.now + 3)
    board.joined("support", "c2", "0922", "", clock.now + 4)
    clock.day = "2027-01-16"
    assert board.roll_all() == ["support"]
    view = board.view("support")
    assert (view["answered"], view["waiting"], view["day"]) == (0, 1, "2027-01-16")


def test_order_follows_asterisk_positions() -> None:
    board = QueueBoard()
    for i, callid in enumerate(["a", "b", "c"]):
        board.joined("q", callid, "", "", 100.0 + i)
    assert board.order("q", ["c", "a", "b"])
    assert [c["callid"] for c in board.view("q")["callers"]] == ["c", "a", "b"]
    assert not board.order("q", ["c", "a", "b"])


def test_an_agent_line_shows_the_call_before_the_acd_state() -> None:
    agent = Agent("101", "7001", ["support"], state="ready", since="2027-01-15T08:00:00+00:00")
    idle = agent_line(agent, [], handled=4)
    assert (idle["state"], idle["since"], idle["handled"], idle["callid"]) == \
        ("ready", "2027-01-15T08:00:00+00:00", 4, "")
    ringing = agent_line(agent, [{"callid": "c1", "state": "alerting", "direction": "incoming",
                                  "calling": "0911", "called": "101",
                                  "since": "2027-01-15T09:00:00+00:00"}], 4)
    assert (ringing["state"], ringing["calling"], ringing["callid"]) == ("ringing", "0911", "c1")
    talking = agent_line(agent, [{"callid": "c2", "state": "held", "direction": "outgoing",
                                  "calling": "101", "called": "102",
                                  "since": "2027-01-15T09:05:00+00:00"}], 4)
    assert (talking["state"], talking["calling"], talking["direction"]) == \
        ("oncall", "102", "outgoing")
    paused = agent_line(Agent("102", "7002", ["support", "sales"], state="notready",
                              reason="lunch"), [], 0)
    assert paused["reasoncode"] == "lunch"
    counts = count_agents([idle, talking, ringing, paused], "support")
    assert counts == {"ready": 1, "notready": 1, "acw": 0, "oncall": 2, "loggedin": 4}
    assert count_agents([idle, paused], "sales")["loggedin"] == 1


@pytest.fixture
def service(tmp_path: Path):
    store = Store.open(tmp_path / "s.db", create=True)
    hub, directory = Hub(), Directory()
    acd = AcdService(store, directory, hub)
    stats = QueueStatsService(store, hub, Tracker(directory.resolve), acd, clock=Clock())
    hub.observers.append(stats.on_cti_event)
    sink = Sink()
    hub.attach(sink, QUEUES_TOPIC)
    yield stats, acd, hub, sink
    store.close()


def test_the_service_publishes_what_changed_once(service) -> None:
    stats, acd, hub, sink = service
    acd.agents["101"] = Agent("101", "7001", ["support"], state="notready", since="t0")
    hub.publish(AgentNotReady("101", "", "t1", agentid="7001", groups=["support"]))
    stats.waiting_list("support", [("c1", "0911")])  # no loop here: flushed at once
    stats.waiting_list("support", [("c1", "0911")])  # nothing new: nothing sent
    kinds = [(e["event"], e.get("waiting"), e.get("state")) for e in sink.events]
    assert kinds == [("agentstatus", None, "notready"), ("queuestatus", 0, None),
                     ("queuestatus", 1, None)]
    assert sink.events[-1]["callers"][0]["calling"] == "0911"
    assert sink.events[-1]["notready"] == 1

    # the agent answers the queue call: the queue counts it, the agent handled one today
    sink.events.clear()
    hub.publish(Delivered("101", "c1", "2027-01-15T10:00:05+00:00", alerting="101",
                          calling="0911", lastredirection="support"))
    hub.publish(Established("101", "c1", "2027-01-15T10:00:09+00:00", answering="101",
                            calling="0911", lastredirection="support"))
    queue = [e for e in sink.events if e["event"] == "queuestatus"][-1]
    assert (queue["waiting"], queue["answered"]) == (0, 1)
    assert stats.snapshot()["agents"][0]["handled"] == 1
    # on a call since the answer, not since it rang
    stats.tracker.snapshot = lambda ext: [{  # type: ignore[method-assign]
        "callid": "c1", "state": "connected", "direction": "incoming", "calling": "0911",
        "called": "101", "since": "2027-01-15T10:00:05+00:00"}]
    line = stats.snapshot()["agents"][0]
    assert (line["state"], line["since"]) == ("oncall", "2027-01-15T10:00:09+00:00")

    # logged off: its last line says so and the queue no longer counts it
    sink.events.clear()
    acd.agents["101"].groups = []
    hub.publish(AgentLoggedOff("101", "", "t3", agentid="7001", groups=["support"]))
    assert sink.events[0]["event"] == "agentstatus" and sink.events[0]["state"] == "loggedoff"
    assert [e["loggedin"] for e in sink.events if e["event"] == "queuestatus"] == [0]


def test_snapshot_lists_configured_queues_and_the_service_level_parameter(service) -> None:
    stats, acd, hub, sink = service
    stats.store.set_parameter("acti_wallboard_queues", "sales, support")
    stats.store.set_parameter("acti_servicelevel", "30")
    stats.apply_parameter("acti_servicelevel", "30")
    snap = stats.snapshot()
    assert [q["queue"] for q in snap["queues"]] == ["sales", "support"]
    assert snap["servicelevelseconds"] == 30
    assert stats.snapshot("sales")["queues"][0]["servicelevelseconds"] == 30
