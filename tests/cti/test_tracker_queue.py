"""The tracker on a recorded queue call: app_queue's agent leg is delivered via the queue."""

from __future__ import annotations

import json
from pathlib import Path

from astcti.cti.events import ConnectionCleared, Delivered, Established
from astcti.cti.tracker import Tracker

RECORDINGS = Path(__file__).with_name("recordings")


def replay(name: str, tracker: Tracker) -> list:
    out = []
    for line in (RECORDINGS / f"{name}.jsonl").read_text().splitlines():
        out += tracker.handle("l1", json.loads(line))
    return out


def resolve(link: str, endpoint: str) -> str | None:
    return {"PJSIP/101": "101"}.get(endpoint)


def test_queue_call_is_delivered_with_the_queue_and_ivr_data() -> None:
    tracker = Tracker(resolve)
    asked: list[tuple[str, str]] = []

    def queue_of(ext: str, callid: str) -> str:
        asked.append((ext, callid))
        return "support"

    tracker.queue_of = queue_of
    events = replay("queue_ivr_answered", tracker)
    delivered = [e for e in events if isinstance(e, Delivered)]
    assert len(delivered) == 1
    d = delivered[0]
    assert (d.extension, d.lastredirection, d.calling) == ("101", "support", "0912345678")
    assert d.origcalling == "0912345678"  # queued to the agent: the original caller is named
    assert d.userdata == {"account": "4711", "ivr": "billing"}
    assert asked == [("101", d.callid)]
    est = next(e for e in events if isinstance(e, Established))
    assert est.lastredirection == "support"
    assert any(isinstance(e, ConnectionCleared) and e.userdata == d.userdata for e in events)


def test_direct_calls_never_ask_for_a_queue() -> None:
    tracker = Tracker(resolve)
    tracker.queue_of = lambda ext, callid: "support"
    events = replay("inbound_answered", tracker)
    assert [e.lastredirection for e in events if isinstance(e, Delivered)] == [""]


def test_a_queue_offer_seen_on_ami_marks_a_plain_dial_as_the_queue_call() -> None:
    """FreePBX-form members: the phone is rung by the member's Local channel with Dial(),
    which ARI shows like a direct call; AMI's AgentCalled (the ACD service) names the queue."""
    from astcti.cti.acd import AcdService

    tracker = Tracker(resolve)
    acd = AcdService.__new__(AcdService)  # only its offer book-keeping is used here
    acd.offers = {}
    lines = (RECORDINGS / "inbound_answered.jsonl").read_text().splitlines()
    first = next(e for e in map(json.loads, lines) if "channel" in e)
    callid = first["channel"]["channelvars"]["CHANNEL(linkedid)"]
    acd.on_agent_called(None, {"Event": "AgentCalled", "Queue": "600", "Linkedid": callid,
                               "Interface": "Local/101@from-queue/n"})
    acd.on_agent_called(None, {"Event": "AgentCalled", "Queue": "600", "Linkedid": callid,
                               "Interface": "PJSIP/102"})  # not a Local member: not needed
    assert acd.offers == {("101", callid): "600"}
    tracker.queue_offer = acd.queue_offered
    events = replay("inbound_answered", tracker)
    assert [(e.callid, e.lastredirection) for e in events if isinstance(e, Delivered)] == [
        (callid, "600")]
    assert [e.lastredirection for e in events if isinstance(e, Established)] == ["600"]
