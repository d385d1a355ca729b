"""The floor app sends astcti's Stasis-path requests, in astcti's order, and a frame per step
to the agent's clients: else its CPU per call would not be the floor under astcti's."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from astcti.wsproto import FrameParser
from tests.perf.floor import Calls, Client


class FakeAri:
    """Answers every request at once (409 for the first dial: the race astcti also meets)."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def request(self, method: str, uri: str, body: Any = None) -> asyncio.Future[Any]:
        self.requests.append(f"{method} {uri.split('?', 1)[0]}")
        future = asyncio.get_running_loop().create_future()
        refused = uri.endswith("timeout=60") and self.requests.count(self.requests[-1]) == 1
        future.set_result(409 if refused else 204)
        return future


class FakeTransport:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.frames.append(data)


def _event(kind: str, channel: str = "", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "timestamp": "2026-12-02T02:00:00.000+0000", **fields}
    if channel:
        event["channel"] = {"id": channel, "name": f"PJSIP/{channel}", "state": "Up",
                            "caller": {"number": "0912345678", "name": ""}}
    return event


async def _settle(calls: Calls) -> None:
    while calls.tasks:
        await asyncio.gather(*list(calls.tasks))


async def test_a_call_costs_the_requests_astcti_sends_and_a_frame_per_step_per_client() -> None:
    monitors: dict[str, set[Client]] = {}
    calls = Calls("astcti", monitors)
    calls.ari = ari = FakeAri()  # type: ignore[assignment]
    client = Client(monitors)
    client.transport = transport = FakeTransport()  # type: ignore[assignment]
    monitors["101"] = {client}

    calls.on_event(_event("StasisStart", "trunk-1", args=["dial", "PJSIP/101", "60"]))
    await asyncio.sleep(0)  # the create is answered: the dial is refused, not in Stasis yet
    calls.on_event(_event("StasisStart", "floor-1", args=["leg"]))
    await _settle(calls)
    calls.on_event(_event("Dial", peer={"id": "floor-1"}, dialstatus="RINGING"))
    up = _event("ChannelStateChange", "floor-1")
    calls.on_event(up)
    calls.on_event(up)  # told twice: bridged once
    await _settle(calls)
    calls.on_event(_event("StasisEnd", "trunk-1"))
    calls.on_event(_event("ChannelDestroyed", "floor-1"))
    await _settle(calls)

    assert ari.requests == [
        "POST channels/create", "POST channels/floor-1/dial", "POST channels/floor-1/dial",
        "POST channels/trunk-1/ring", "POST channels/trunk-1/answer", "POST bridges",
        "POST bridges/floor-bridge-2/addChannel", "DELETE channels/floor-1",
        "DELETE bridges/floor-bridge-2"]
    parser = FrameParser(1 << 20, masked=False)
    events = [orjson.loads(m.data)["event"] for f in transport.frames for m in parser.feed(f)]
    assert events == ["delivered", "established", "connectioncleared", "callcleared", "idle"]
    assert len(transport.frames) == 4  # callcleared and idle in one write, as astcti's hub
    assert not calls.peer and not calls.bridge and not calls.agent
