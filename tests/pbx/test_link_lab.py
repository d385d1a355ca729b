"""AsteriskLink against the lab's real Asterisk: events of a real SIPp call, bad credentials."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from astcti.pbx.link import AsteriskLink, LinkDownError
from astcti.pbx.linkconfig import LinkConfig
from tests.lab import Lab
from tests.lab.ari import ari
from tests.pbx.helpers import until

import pytest

pytestmark = pytest.mark.lab


def _config(lab: Lab, *, password: str | None = None, port: int | None = None,
            app: str = "astcti-test") -> LinkConfig:
    c = lab.config
    return LinkConfig("acti_tlink_99", "127.0.0.1", port or c.ari_port, app, c.ari_user,
                      c.ari_password if password is None else password)


async def _call_102(lab: Lab, events: list[dict]) -> None:
    """A real half-second call to the phone on 102, until the link saw 102's channel end."""
    lab.start_phone("102")
    caller = lab.call("102", talk_ms=500)
    assert await asyncio.to_thread(caller.wait, 30) == 0
    await until(lambda: any(e["type"] == "ChannelDestroyed"
                            and e["channel"]["name"].startswith("PJSIP/102-") for e in events))


async def test_link_receives_the_events_of_a_real_call(lab: Lab) -> None:
    events: list[dict] = []
    link = AsteriskLink(_config(lab), heartbeat=2, on_event=lambda _l, e: events.append(e))
    link.start()
    try:
        assert await link.wait_up(20), link.last_error
        assert link.version and link.version.startswith("22.")
        assert "PJSIP/102" in link.endpoints
        await link.subscribe(["endpoint:PJSIP/102", "deviceState:PJSIP/102"])
        lab.start_phone("102")
        caller = lab.call("102", talk_ms=1000)
        assert await asyncio.to_thread(caller.wait, 30) == 0
        await until(lambda: any(e["type"] == "ChannelDestroyed" for e in events))
        types = [e["type"] for e in events]
        for expected in ("ChannelCreated", "ChannelStateChange", "DeviceStateChanged",
                         "ChannelDestroyed"):
            assert expected in types, types
        states = [e["channel"]["state"] for e in events if e["type"] == "ChannelStateChange"]
        assert "Up" in states
        assert lab.phones["102"].received("INVITE")
    finally:
        lab.stop_phone("102")
        await link.stop()


async def test_unknown_source_costs_only_itself_when_the_link_comes_up(lab: Lab, caplog) -> None:
    """Asterisk refuses a whole subscription request for one endpoint it does not have: the
    sources kept across a (re)connect are subscribed anyway, the unknown one named in the log."""
    events: list[dict] = []
    link = AsteriskLink(_config(lab), heartbeat=2, on_event=lambda _l, e: events.append(e))
    kept = ["endpoint:PJSIP/102", "deviceState:PJSIP/102"]
    kept += [f"endpoint:PJSIP/gone{i}" for i in range(3)]
    await link.subscribe(kept)  # kept while down, subscribed by the connect
    link.start()
    try:
        assert await link.wait_up(20), link.last_error
        for i in range(3):
            assert f"cannot subscribe endpoint:PJSIP/gone{i}" in caplog.text
        await _call_102(lab, events)
        assert any(e["type"] == "DeviceStateChanged"
                   and e["device_state"]["name"] == "PJSIP/102" for e in events)
    finally:
        lab.stop_phone("102")
        await link.stop()


async def test_thousands_of_sources_in_one_subscribe(lab: Lab) -> None:
    """More sources than one request body may carry (Asterisk's HTTP server answers 413 over
    40,960 bytes): split into requests it takes, the link stays up and the events come."""
    events: list[dict] = []
    link = AsteriskLink(_config(lab), heartbeat=2, on_event=lambda _l, e: events.append(e))
    link.start()
    try:
        assert await link.wait_up(20), link.last_error
        many = [f"deviceState:PJSIP/x{i:05d}" for i in range(3000)]
        many += ["endpoint:PJSIP/102", "deviceState:PJSIP/102"]
        assert len(json.dumps({"eventSource": many})) > 40960
        await link.subscribe(many)
        assert link.up
        await _call_102(lab, events)
        assert link.up
    finally:
        lab.stop_phone("102")
        await link.stop()


async def test_a_clean_stop_releases_the_device_states_before_the_websocket_closes(
        lab: Lab) -> None:
    """asterisk/asterisk#2170: closing an app's websocket while it holds device-state
    subscriptions can deadlock ARI for that app (seen in this lab). A clean stop unsubscribes
    them first, while the link is still up: what Asterisk holds for the app just before the
    close is read here, after the release and before the socket goes."""
    app = "astcti-release"
    link = AsteriskLink(_config(lab, app=app), heartbeat=2)
    before_close: list[dict] = []
    close = link._stop_supervising

    async def read_then_close() -> None:
        before_close.append(await asyncio.to_thread(ari, lab, "GET", f"applications/{app}"))
        await close()

    link._stop_supervising = read_then_close  # type: ignore[method-assign]
    link.start()
    try:
        assert await link.wait_up(20), link.last_error
        await link.subscribe(["endpoint:PJSIP/102", "deviceState:PJSIP/102",
                              "deviceState:PJSIP/103"])
        held = await asyncio.to_thread(ari, lab, "GET", f"applications/{app}")
        assert sorted(held["device_names"]) == ["PJSIP/102", "PJSIP/103"]
    finally:
        await link.stop()
    assert before_close[0]["device_names"] == []
    assert "PJSIP/102" in before_close[0]["endpoint_ids"]  # only the device states went


async def test_wrong_password_is_reported_not_raised(lab: Lab) -> None:
    link = AsteriskLink(_config(lab, password="wrong"), heartbeat=2)
    link.start()
    try:
        assert not await link.wait_up(3)
        assert "rejected ARI user 'astcti'" in (link.last_error or "")
        assert "wrong" not in (link.last_error or "")
        with pytest.raises(LinkDownError, match="link is down"):
            await link.call("asterisk", "getInfo")
    finally:
        await link.stop()


async def test_unreachable_asterisk_is_retried_and_reported(lab: Lab) -> None:
    link = AsteriskLink(_config(lab, port=1), heartbeat=2)
    link.start()
    try:
        assert not await link.wait_up(2)
        assert "cannot reach Asterisk ARI at http://127.0.0.1:1" in (link.last_error or "")
    finally:
        await link.stop()


def test_lab_daemon_connected_to_asterisk(lab: Lab) -> None:
    text = Path(lab.config.astcti_log).read_text()
    assert "acti_tlink_01: connected to Asterisk 22." in text
    assert lab.config.ari_password not in text
