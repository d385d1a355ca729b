"""ChannelVarsFiller's bookkeeping (the lab test proves it on Asterisk: tests/e2e/
test_freepbx_lab.py, no-channelvars): events held in order while a lookup runs, nothing held
on a PBX that sends channelvars."""

from __future__ import annotations

import asyncio
from typing import Any

from astcti.pbx.ari import AriError
from astcti.pbx.channelvars import ChannelVarsFiller


class FakeRest:
    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        self.values = values
        self.calls: list[tuple[str, str]] = []
        self.gate = asyncio.Event()

    async def call(self, resource: str, operation: str, **params: Any) -> Any:
        await self.gate.wait()
        key = (params["channelId"], params["variable"])
        self.calls.append(key)
        if key not in self.values:
            raise AriError(404, "Provided variable was not found")
        return {"value": self.values[key]}


class FakeLink:
    name = "acti_tlink_01"

    def __init__(self, rest: FakeRest) -> None:
        self.rest = rest


def _chan(cid: str, name: str, **channelvars: str) -> dict[str, Any]:
    snap: dict[str, Any] = {"id": cid, "name": name, "state": "Ring"}
    if channelvars:
        snap["channelvars"] = channelvars
    return snap


async def test_events_wait_for_the_lookup_and_keep_their_order() -> None:
    rest = FakeRest({("A.2", "CHANNEL(linkedid)"): "A.1", ("A.2", "ASTCTI_USERDATA"): '{"k":"v"}'})
    seen: list[tuple[str, dict]] = []
    filler = ChannelVarsFiller(lambda _l, e: seen.append((e["type"], e)),
                               lambda _link, snap: snap["name"].startswith("PJSIP/101-"))
    link = FakeLink(rest)
    filler.feed(link, {"type": "ChannelCreated", "channel": _chan("A.1", "PJSIP/trunk-1")})
    filler.feed(link, {"type": "ChannelCreated", "channel": _chan("A.2", "PJSIP/101-2")})
    filler.feed(link, {"type": "ChannelStateChange", "channel": _chan("A.1", "PJSIP/trunk-1")})
    assert [t for t, _ in seen] == ["ChannelCreated"]  # the trunk's: not tracked, not held
    rest.gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert [t for t, _ in seen] == ["ChannelCreated", "ChannelCreated", "ChannelStateChange"]
    assert seen[1][1]["channel"]["channelvars"] == {"CHANNEL(linkedid)": "A.1",
                                                    "ASTCTI_USERDATA": '{"k":"v"}'}
    # known from now on: filled at once, asked once
    filler.feed(link, {"type": "ChannelStateChange", "channel": _chan("A.2", "PJSIP/101-2")})
    assert seen[-1][1]["channel"]["channelvars"]["CHANNEL(linkedid)"] == "A.1"
    filler.feed(link, {"type": "ChannelDestroyed", "channel": _chan("A.2", "PJSIP/101-2")})
    assert len(rest.calls) == 2 and len(seen) == 5


async def test_a_pbx_with_channelvars_costs_nothing() -> None:
    rest = FakeRest({})
    rest.gate.set()
    seen: list[dict] = []
    filler = ChannelVarsFiller(lambda _l, e: seen.append(e), lambda _link, _snap: True)
    link = FakeLink(rest)
    for i in range(3):
        filler.feed(link, {"type": "ChannelCreated",
                           "channel": _chan(f"B.{i}", "PJSIP/101-9",
                                            **{"CHANNEL(linkedid)": "B.0"})})
    filler.feed(link, {"type": "ChannelCreated", "channel": _chan("C.1", "PJSIP/101-10")})
    assert len(seen) == 4 and rest.calls == []  # one snapshot with it: no lookups ever


async def test_a_channel_gone_before_the_lookup_is_delivered_unfilled() -> None:
    rest = FakeRest({})
    rest.gate.set()
    seen: list[dict] = []
    filler = ChannelVarsFiller(lambda _l, e: seen.append(e), lambda _link, _snap: True)
    filler.feed(FakeLink(rest), {"type": "ChannelCreated", "channel": _chan("D.1", "PJSIP/101-1")})
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(seen) == 1 and "channelvars" not in seen[0]["channel"]
