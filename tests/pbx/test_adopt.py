"""Which channels a takeover moves, from ARI's channel and bridge lists as Asterisk 22 gave them
in the FreePBX-flavour lab (the lab tests move them for real: tests/e2e/test_takeover_lab.py)."""

from __future__ import annotations

import pytest

from astcti.pbx.adopt import NotSettled, TakeoverError, locate, locate_caller, read_parties


def chan(cid: str, name: str, app: str, state: str = "Up", linkedid: str = "") -> dict:
    snap = {"id": cid, "name": name, "state": state,
            "dialplan": {"context": "x", "exten": "", "priority": 1, "app_name": app,
                         "app_data": ""}}
    if linkedid:
        snap["channelvars"] = {"CHANNEL(linkedid)": linkedid}
    return snap


def bridge(*ids: str, cls: str = "basic", name: str = "") -> dict:
    return {"id": "-".join(ids), "bridge_class": cls, "name": name, "channels": list(ids)}


DIRECT = [chan("1.1", "PJSIP/101-00000001", "AppDial"), chan("1.0", "PJSIP/trunk-00000000", "Dial")]
QUEUE = [chan("2.5", "PJSIP/102-00000003", "AppDial"),
         chan("2.4", "Local/102@from-queue-00000000;2", "Dial"),
         chan("2.3", "Local/102@from-queue-00000000;1", "AppQueue"),
         chan("2.2", "PJSIP/trunk-00000002", "Queue")]


def test_a_dial_call_moves_the_agent_and_the_caller() -> None:
    parties = locate("1.1", DIRECT, [bridge("1.0", "1.1")])
    assert (parties.agent["name"], parties.far["name"]) == ("PJSIP/101-00000001",
                                                             "PJSIP/trunk-00000000")


def test_a_freepbx_queue_member_call_moves_the_real_caller_not_the_local_pair() -> None:
    parties = locate("2.5", QUEUE, [bridge("2.4", "2.5"), bridge("2.2", "2.3")])
    assert parties.far["name"] == "PJSIP/trunk-00000002"


def test_optimised_local_channels_are_not_needed() -> None:
    chans = [QUEUE[0], QUEUE[3]]
    assert locate("2.5", chans, [bridge("2.2", "2.5")]).far["id"] == "2.2"


def test_a_ringing_agent_has_no_far_party_and_its_caller_is_found() -> None:
    agent = chan("3.1", "PJSIP/101-00000005", "AppDial", state="Ringing", linkedid="3.0")
    chans = [agent, chan("3.0", "PJSIP/trunk-00000004", "Dial", state="Ring", linkedid="3.0"),
             chan("4.0", "PJSIP/trunk-00000006", "Dial", linkedid="4.0")]
    parties = locate("3.1", chans, [])
    assert parties.far is None
    assert locate_caller(agent, chans, "3.0")["id"] == "3.0"
    assert locate_caller(agent, chans, "9.9") is None


@pytest.mark.parametrize("channels, bridges, words", [
    ([chan("5.1", "PJSIP/101-1", "VoiceMailMain")], [], "runs VoiceMailMain"),
    ([chan("5.1", "PJSIP/101-1", "Stasis")], [], "another ARI application"),
    ([chan("5.1", "PJSIP/101-1", "ConfBridge"), chan("5.2", "PJSIP/102-2", "ConfBridge"),
      chan("5.3", "PJSIP/103-3", "ConfBridge")],
     [bridge("5.1", "5.2", "5.3", cls="base", name="ConfBridge")], "ConfBridge"),
    ([chan("5.1", "PJSIP/101-1", "AppDial"), chan("5.2", "PJSIP/102-2", "Dial"),
      chan("5.3", "PJSIP/103-3", "AppDial")], [bridge("5.1", "5.2", "5.3")], "3 parties"),
    ([chan("5.1", "PJSIP/101-1", "Wait")], [], "is in no call"),
    ([], [], "the call ended"),
])
def test_what_cannot_be_taken_over_says_why(channels, bridges, words: str) -> None:
    with pytest.raises(TakeoverError) as info:
        locate("5.1", channels, bridges)
    assert str(info.value).startswith("call not controllable") and words in str(info.value)


def test_an_answered_call_not_bridged_yet_is_not_settled() -> None:
    """Dial() answers the agent's channel, then bridges it: a request in between reads again."""
    with pytest.raises(NotSettled):
        locate("1.1", DIRECT, [])
    with pytest.raises(NotSettled):
        locate("1.1", DIRECT, [bridge("1.1")])
    with pytest.raises(TakeoverError) as refused:  # three parties: settled, and refused
        locate("1.1", [*DIRECT, chan("1.2", "PJSIP/102-00000002", "AppDial")],
               [bridge("1.0", "1.1", "1.2")])
    assert not isinstance(refused.value, NotSettled)


class ListingLink:
    """A link whose channel and bridge lists change from one read to the next."""

    def __init__(self, bridge_lists: list[list[dict]]) -> None:
        self.bridge_lists = bridge_lists
        self.reads = 0

    async def call(self, resource: str, operation: str, **params) -> list[dict]:
        if resource == "channels":
            return DIRECT
        self.reads += 1
        return self.bridge_lists[min(self.reads, len(self.bridge_lists)) - 1]


async def test_read_parties_waits_for_the_bridge_to_fill() -> None:
    link = ListingLink([[bridge("1.1")], [bridge("1.1")], [bridge("1.0", "1.1")]])
    parties, _channels = await read_parties(link, "1.1")  # type: ignore[arg-type]
    assert parties.far["name"] == "PJSIP/trunk-00000000" and link.reads == 3


async def test_read_parties_gives_up_on_a_call_that_never_settles(monkeypatch) -> None:
    monkeypatch.setattr("astcti.pbx.adopt.SETTLE_SECONDS", 0.3)
    link = ListingLink([[bridge("1.1")]])
    with pytest.raises(NotSettled, match="cannot take over"):
        await read_parties(link, "1.1")  # type: ignore[arg-type]
