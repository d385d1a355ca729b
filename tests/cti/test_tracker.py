"""The tracker on ARI streams recorded in the lab (tests/lab/record.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astcti.cti.tracker import Tracker, endpoint_of, parse_userdata

RECORDINGS = Path(__file__).with_name("recordings")
WATCHED = {"PJSIP/101": "101", "PJSIP/102": "102", "PJSIP/103": "103", "PJSIP/104": "104"}


def tracker() -> Tracker:
    return Tracker(lambda link, endpoint: WATCHED.get(endpoint))


def replay(t: Tracker, name: str, link: str = "l1") -> list[dict]:
    out = []
    for line in (RECORDINGS / f"{name}.jsonl").read_text().splitlines():
        for event in t.handle(link, json.loads(line)):
            wire = event.to_wire()
            out.append(wire)
    return out


def names(events: list[dict], ext: str) -> list[str]:
    return [e["event"] for e in events if e["extension"] == ext]


def test_inbound_answered() -> None:
    events = replay(tracker(), "inbound_answered")
    assert names(events, "101") == ["delivered", "established", "connectioncleared", "callcleared",
                                    "idle"]
    # the astCTI author's words: offer with the caller's number, connect, disconnect, idle
    assert [e.get("eventtype") for e in events] == ["offer", "connect", "disconnect", None,
                                                    "idle"]
    assert all(e["calling"] == "0912345678" and e["called"] == "101" for e in events[:3])
    assert events[2]["releasing"] == "101" and events[0]["origcalling"] == ""
    delivered = events[0]
    assert (delivered["calling"], delivered["called"], delivered["alerting"]) == (
        "0912345678", "101", "101")
    assert len({e["callid"] for e in events}) == 1
    assert delivered["timestamp"].endswith("+00:00")


def test_internal_call_same_callid_both_sides() -> None:
    events = replay(tracker(), "internal_101_to_102")
    assert names(events, "101") == ["serviceinitiated", "originated", "delivered", "established",
                                    "connectioncleared", "callcleared", "idle"]
    # 102 hung up first: it is idle at once; the call clears when 101 leaves too
    assert names(events, "102") == ["delivered", "established", "connectioncleared", "idle",
                                    "callcleared"]
    kinds = {(e["extension"], e["event"]): e.get("eventtype") for e in events}
    assert kinds[("101", "delivered")] == "alert" and kinds[("102", "delivered")] == "offer"
    assert kinds[("101", "serviceinitiated")] is None
    assert len({e["callid"] for e in events}) == 1
    est = [e for e in events if e["event"] == "established"]
    assert all(e["answering"] == "102" and e["calling"] == "101" for e in est)


@pytest.mark.parametrize("name, callee, cause", [
    ("internal_101_to_103_busy", "103", "busy"),
    ("internal_101_to_104_noanswer", "104", "noanswer"),
])
def test_failed_calls(name: str, callee: str, cause: str) -> None:
    events = replay(tracker(), name)
    failed = [e for e in events if e["event"] == "failed" and e["extension"] == "101"]
    assert [(f["failing"], f["called"], f["cause"]) for f in failed] == [(callee, callee, cause)]
    cleared = [e for e in events if e["event"] == "connectioncleared"]
    assert {e["cause"] for e in cleared} == {cause}


def test_inbound_busy_and_noanswer_on_the_callee() -> None:
    busy = replay(tracker(), "inbound_busy")
    assert names(busy, "103") == ["failed", "connectioncleared", "callcleared", "idle"]
    assert busy[0]["eventtype"] == "fail" and busy[0]["calling"] == "0912345678"
    noanswer = replay(tracker(), "inbound_noanswer")
    assert names(noanswer, "104") == ["delivered", "connectioncleared", "callcleared", "idle"]
    assert noanswer[1]["cause"] == "noanswer"


def test_unwatched_extensions_are_ignored() -> None:
    t = Tracker(lambda link, endpoint: "102" if endpoint == "PJSIP/102" else None)
    events = replay(t, "internal_101_to_102")
    assert {e["extension"] for e in events} == {"102"}


def _channels_mid_call(name: str, upto_type: str) -> list[dict]:
    """The channels as GET /channels would list them at the first `upto_type` event."""
    channels: dict[str, dict] = {}
    for line in (RECORDINGS / f"{name}.jsonl").read_text().splitlines():
        event = json.loads(line)
        ch = event.get("channel")
        if ch:
            if event["type"] == "ChannelDestroyed":
                channels.pop(ch["id"], None)
            else:
                channels[ch["id"]] = ch
        if event["type"] == upto_type and (ch or {}).get("state") == "Up":
            break
    return list(channels.values())


def test_resync_after_restart_rebuilds_calls_without_duplicates() -> None:
    channels = _channels_mid_call("inbound_answered", "ChannelStateChange")
    t = tracker()
    first = [e.to_wire() for e in t.resync("l1", channels, "2026-01-01T00:00:00+00:00")]
    assert [e["event"] for e in first] == ["established"]
    assert t.snapshot("101")[0]["state"] == "connected"
    again = t.resync("l1", channels, "2026-01-01T00:00:01+00:00")
    assert again == []  # nothing changed: no duplicate events
    gone = [e.to_wire() for e in t.resync("l1", [], "2026-01-01T00:00:02+00:00")]
    assert [e["event"] for e in gone] == ["connectioncleared", "callcleared", "idle"]
    assert gone[0]["calling"] == "0912345678"  # the cleared connection still names its parties
    assert gone[0]["resync"] is True and t.snapshot("101") == []


def test_resync_sees_an_answer_that_happened_during_the_gap() -> None:
    ringing = [dict(c, state="Ringing") for c in
               _channels_mid_call("inbound_answered", "ChannelStateChange")]
    t = tracker()
    assert [e.NAME for e in t.resync("l1", ringing, "t0")] == ["delivered"]
    up = [dict(c, state="Up") for c in ringing]
    assert [e.NAME for e in t.resync("l1", up, "t1")] == ["established"]


def test_resync_only_touches_its_own_link() -> None:
    channels = _channels_mid_call("inbound_answered", "ChannelStateChange")
    t = tracker()
    t.resync("l1", channels, "t0")
    assert t.resync("l2", [], "t1") == []
    assert len(t.snapshot("101")) == 1


def test_helpers() -> None:
    assert endpoint_of("PJSIP/101-0000000a") == "PJSIP/101"
    assert endpoint_of("PJSIP/trunk-a-00000001") == "PJSIP/trunk-a"
    assert parse_userdata('{"order": "A12", "n": 3, "nested": {"x": 1}}') == {"order": "A12",
                                                                              "n": 3}
    assert parse_userdata("not json") == {} and parse_userdata("[1]") == {}
