"""Line states for the desktop's directory: Asterisk's device states joined with agent states."""

from __future__ import annotations


from astcti.cti.directory import Directory, Extension
from astcti.cti.events import EXTENSIONS_TOPIC, AgentNotReady, AgentReady
from astcti.cti.hub import Hub
from astcti.cti.presence import PresenceService
from tests.cti.sink import Sink


class FakeLink:
    name = "acti_tlink_01"

    async def call(self, resource: str, operation: str, **params):
        assert (resource, operation) == ("deviceStates", "list")
        return [{"name": "PJSIP/101", "state": "INUSE"}, {"name": "PJSIP/102", "state": "UNKNOWN"},
                {"name": "Queue:support_avail", "state": "NOT_INUSE"}]


def _setup():
    directory, hub = Directory(), Hub()
    for number in ("101", "102", "103"):
        ext = Extension(number, "PJSIP")
        directory.extensions[number] = ext
        if number != "103":  # 103 has no endpoint on the connected Asterisk
            directory.serving[number] = FakeLink.name
            directory._by_endpoint[(FakeLink.name, ext.endpoint)] = number
    agents = {"102": ("7002", "notready")}
    presence = PresenceService(directory, hub, lambda ext: agents.get(ext, ("", "")))
    hub.observers.append(presence.on_cti_event)
    sink = Sink()
    hub.attach(sink, EXTENSIONS_TOPIC)
    return presence, hub, sink, agents


async def test_states_seeded_once_then_changed_by_events() -> None:
    presence, hub, sink, agents = _setup()
    await presence.on_link_up(FakeLink())
    assert [(v["extension"], v["state"]) for v in presence.views()] == [
        ("101", "busy"), ("102", "away"), ("103", "unavailable")]
    assert {e["extension"]: e["state"] for e in sink.events} == {"101": "busy", "102": "away"}
    sink.events.clear()
    presence.on_ari_event(FakeLink(), {"type": "DeviceStateChanged",
                                       "device_state": {"name": "PJSIP/101", "state": "RINGING"}})
    presence.on_ari_event(FakeLink(), {"type": "DeviceStateChanged",
                                       "device_state": {"name": "PJSIP/101", "state": "RINGING"}})
    presence.on_ari_event(FakeLink(), {"type": "DeviceStateChanged",  # not an extension
                                       "device_state": {"name": "PJSIP/999", "state": "INUSE"}})
    assert [(e["extension"], e["state"], e["devicestate"]) for e in sink.events] == [
        ("101", "ringing", "RINGING")]


async def test_an_idle_line_is_away_while_its_agent_is_not_ready() -> None:
    presence, hub, sink, agents = _setup()
    await presence.on_link_up(FakeLink())
    sink.events.clear()
    agents["102"] = ("7002", "ready")
    hub.publish(AgentReady("102", "", "t", agentid="7002", groups=["support"]))
    assert [(e["extension"], e["state"], e["agentstate"]) for e in sink.events] == [
        ("102", "idle", "ready")]
    agents["102"] = ("7002", "notready")
    hub.publish(AgentNotReady("102", "", "t", agentid="7002", groups=["support"]))
    assert sink.events[-1]["state"] == "away"
    presence.on_link_down(FakeLink())
    assert {e["extension"]: e["state"] for e in sink.events[-2:]} == {"101": "unavailable",
                                                                      "102": "unavailable"}
