"""The tracker on astcti's own Stasis streams (recorded with ASTCTI_ARI_TRACE, tests/lab/record.py),
told what astcti's call control told it in the lab (plans, dialled legs, hold)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from astcti.cti.tracker import Intent, Plan, Tracker

RECORDINGS = Path(__file__).with_name("recordings")
WATCHED = {"PJSIP/101": "101", "PJSIP/102": "102", "PJSIP/103": "103", "PJSIP/104": "104"}
LINK = "l1"


def _events(name: str) -> list[dict]:
    return [json.loads(line) for line in (RECORDINGS / f"{name}.jsonl").read_text().splitlines()]


def _channel_ids(events: list[dict], endpoint: str) -> list[str]:
    out: list[str] = []
    for e in events:
        if e["type"] == "ChannelCreated" and e["channel"]["name"].startswith(endpoint + "-"):
            if e["channel"]["id"] not in out:
                out.append(e["channel"]["id"])
    return out


def replay(events: list[dict], before: Callable[[Tracker, dict], None] = lambda t, e: None
           ) -> list[dict]:
    t = Tracker(lambda link, endpoint: WATCHED.get(endpoint))
    out = []
    for event in events:
        before(t, event)
        out += [e.to_wire() for e in t.handle(LINK, event)]
    return out


def names(events: list[dict], ext: str) -> list[str]:
    return [e["event"] for e in events if e["extension"] == ext]


def test_stasis_internal_call_reads_like_a_dialplan_call() -> None:
    events = _events("stasis_internal_101_to_102")
    caller, = _channel_ids(events, "PJSIP/101")
    callee, = _channel_ids(events, "PJSIP/102")
    out = replay(events,
                 lambda t, e: t.dialling(LINK, callee, caller) if e is events[0] else None)
    assert names(out, "101") == ["serviceinitiated", "originated", "delivered", "established",
                                 "connectioncleared", "idle", "callcleared"]
    # 101 hung up first: 102 hears that party leave (its bridge), then its own connection clears
    assert names(out, "102") == ["delivered", "established", "partycleared", "connectioncleared",
                                 "callcleared", "idle"]
    left = next(e for e in out if e["event"] == "partycleared")
    assert (left["eventtype"], left["releasing"], left["calling"]) == ("disconnect", "101", "101")
    assert len({e["callid"] for e in out}) == 1
    delivered = [e for e in out if e["event"] == "delivered"]
    assert all(e["calling"] == "101" and e["alerting"] == "102" for e in delivered)


def test_the_party_that_hung_up_is_reported_whatever_asterisk_tells_first() -> None:
    """astcti reacts to the caller's StasisEnd (hangs up the callee, destroys the bridge): on a
    busy host the BridgeDestroyed can reach astcti before the caller's own ChannelDestroyed
    (seen in a full lab run). The callee still hears the caller leave, before its own
    connection clears."""
    events = _events("stasis_internal_101_to_102")
    caller, = _channel_ids(events, "PJSIP/101")
    callee, = _channel_ids(events, "PJSIP/102")
    late = next(e for e in events if e["type"] == "ChannelDestroyed"
                and e["channel"]["id"] == caller)
    reordered = [e for e in events if e is not late]
    gone = next(i for i, e in enumerate(reordered) if e["type"] == "BridgeDestroyed")
    reordered.insert(gone + 1, late)
    out = replay(reordered,
                 lambda t, e: t.dialling(LINK, callee, caller) if e is events[0] else None)
    assert names(out, "102") == ["delivered", "established", "partycleared", "connectioncleared",
                                 "callcleared", "idle"]
    left = next(e for e in out if e["event"] == "partycleared")
    assert left["releasing"] == "101"


def test_makecall_then_hold_and_retrieve() -> None:
    events = _events("makecall_101_to_102")
    agent, = _channel_ids(events, "PJSIP/101")
    far, = _channel_ids(events, "PJSIP/102")
    far_bridged = False

    def control(t: Tracker, e: dict) -> None:
        nonlocal far_bridged
        if e is events[0]:
            t.plan(LINK, agent, Plan(outgoing=True, called="102", userdata={"crm": "T-1"}))
            t.dialling(LINK, far, agent)
        if e["type"] == "ChannelEnteredBridge" and e["channel"]["id"] == far:
            far_bridged = True
        if e["type"] == "ChannelLeftBridge" and e["channel"]["id"] == agent and far_bridged \
                and not any(c.held_by_astcti for c in t.connections.values()):
            t.mark_hold(LINK, agent)
            far_bridged = False  # only the first leave is the hold; the last is the hangup

    out = replay(events, control)
    assert names(out, "101") == ["serviceinitiated", "originated", "delivered", "established",
                                 "held", "retrieved", "connectioncleared", "idle", "callcleared"]
    assert names(out, "102") == ["delivered", "established", "held", "retrieved",
                                 "partycleared", "connectioncleared", "callcleared", "idle"]
    assert [e.get("eventtype") for e in out if e["extension"] == "101"][3:7] == [
        "connect", "hold", "retrieve", "disconnect"]
    assert all(e["calling"] == "101" and e["called"] == "102" for e in out
               if e["event"] in ("held", "retrieved"))
    assert {e["callid"] for e in out} == {agent}  # the agent leg's linkedid is its own id
    est = next(e for e in out if e["event"] == "established" and e["extension"] == "101")
    assert est["answering"] == "102" and est["userdata"] == {"crm": "T-1"}
    held = [e for e in out if e["event"] == "held"]
    assert all(e["holding"] == "101" for e in held)


def test_without_plan_an_ari_created_agent_leg_is_an_incoming_call() -> None:
    out = replay(_events("makecall_101_to_102"))
    assert names(out, "101")[:2] == ["delivered", "established"]


def test_transfer_intent_fires_when_the_agent_leg_goes() -> None:
    events = _events("makecall_101_to_102")
    agent, = _channel_ids(events, "PJSIP/101")
    far, = _channel_ids(events, "PJSIP/102")

    def control(t: Tracker, e: dict) -> None:
        if e is events[0]:
            t.plan(LINK, agent, Plan(outgoing=True, called="102"))
            t.dialling(LINK, far, agent)
        if e["type"] == "ChannelDestroyed" and e["channel"]["id"] == agent and \
                (LINK, agent) not in t.intents and (LINK, agent) in t.connections:
            t.expect(LINK, agent, Intent("transferred", "101", [agent, far], ["0912345678", "102"]))

    out = replay(events, control)
    transferred = [e for e in out if e["event"] == "transferred"]
    assert [e["extension"] for e in transferred] == ["101", "102"]
    assert transferred[0]["transferring"] == "101"
    assert transferred[0]["parties"] == ["0912345678", "102"]
    # the party the call was transferred to learns who called originally, from then on
    assert transferred[1]["origcalling"] == "0912345678" and transferred[1]["eventtype"] == \
        "transfer"
    later = [e for e in out if e["extension"] == "102" and e["event"] == "connectioncleared"]
    assert later and later[0]["origcalling"] == "0912345678"
    cleared = next(e for e in out if e["event"] == "connectioncleared" and e["extension"] == "101")
    assert cleared["cause"] == "transferred"


def test_phone_blind_transfer_event() -> None:
    """A phone's own REFER, as Asterisk reports it (BridgeBlindTransfer)."""
    t = Tracker(lambda link, endpoint: WATCHED.get(endpoint))
    created = {"type": "ChannelCreated", "timestamp": "2026-01-01T00:00:00.000+0000",
               "channel": {"id": "c1", "name": "PJSIP/101-00000001", "state": "Up",
                           "channelvars": {"CHANNEL(linkedid)": "L1"},
                           "dialplan": {"app_name": "AppDial"}, "connected": {"number": "555"}}}
    t.handle(LINK, created)
    out = t.handle(LINK, {
        "type": "BridgeBlindTransfer", "timestamp": "2026-01-01T00:00:01.000+0000",
        "result": "Success", "exten": "102", "context": "from-internal",
        "channel": created["channel"],
        "transferee": {"id": "c0", "name": "PJSIP/trunk-1", "caller": {"number": "555"}}})
    assert [e.NAME for e in out] == ["transferred"]
    assert out[0].parties == ["555"] and out[0].transferring == "101"
    cleared = t.handle(LINK, {"type": "ChannelDestroyed", "cause": 16,
                              "timestamp": "2026-01-01T00:00:02.000+0000",
                              "channel": created["channel"]})
    assert cleared[0].cause == "transferred"
