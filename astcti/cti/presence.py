"""The line state of every configured extension, for desktops' transfer directories.

Asterisk's device state of each watched endpoint (the directory subscribes `deviceState:` for
every extension) is the truth; an idle line whose ACD agent is not ready or in after-call work
shows as `away`. One `GET /deviceStates` per link (re)connect seeds the states; after that only
`DeviceStateChanged` events change them, and a change is published on the `@extensions` topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from astcti.cti.directory import Directory
from astcti.cti.events import (
    EXTENSIONS_TOPIC, AgentEvent, AgentLoggedOff, AgentNotReady, AgentReady, AgentWorkNotReady,
    CtiEvent, ExtensionState,
)
from astcti.cti.hub import Hub
from astcti.errors import AstctiError
from astcti.pbx.ari import AriError, AriEvent
from astcti.pbx.link import AsteriskLink

log = logging.getLogger(__name__)

#: Asterisk device states -> the words a desktop shows. UNKNOWN is what an endpoint without
#: qualify reports while idle, so it counts as idle.
LINE_STATES: dict[str, str] = {
    "NOT_INUSE": "idle", "UNKNOWN": "idle", "INUSE": "busy", "BUSY": "busy",
    "RINGING": "ringing", "RINGINUSE": "ringing", "ONHOLD": "onhold",
    "UNAVAILABLE": "unavailable", "INVALID": "unavailable",
}
AGENT_STATES: dict[type[AgentEvent], str] = {
    AgentReady: "ready", AgentNotReady: "notready", AgentWorkNotReady: "acw", AgentLoggedOff: "",
}

AgentLookup = Callable[[str], tuple[str, str]]  # extension -> (agentid, agent state) or ("", "")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class PresenceService:
    """Device state per extension, joined with its agent's state."""

    def __init__(self, directory: Directory, hub: Hub, agent_of: AgentLookup) -> None:
        self.directory = directory
        self.hub = hub
        self.agent_of = agent_of
        self.device: dict[str, str] = {}  # extension -> Asterisk device state word
        self._shown: dict[str, tuple[str, str, str]] = {}  # what was last published

    def view(self, extension: str) -> dict[str, str]:
        device = self.device.get(extension, "UNKNOWN")
        agentid, agentstate = self.agent_of(extension)
        line = LINE_STATES.get(device, "idle")
        if line == "idle" and agentstate in ("notready", "acw"):
            line = "away"
        if extension not in self.directory.serving:
            line = "unavailable"
        return {"extension": extension, "state": line, "devicestate": device,
                "agentid": agentid, "agentstate": agentstate}

    def views(self) -> list[dict[str, str]]:
        return [self.view(ext) for ext in sorted(self.directory.extensions, key=_number_key)]

    def _publish_if_changed(self, extension: str) -> None:
        view = self.view(extension)
        shown = (view["state"], view["devicestate"], view["agentstate"])
        if self._shown.get(extension) == shown:
            return
        self._shown[extension] = shown
        self.hub.publish(ExtensionState(extension, "", _now(), state=view["state"],
                                        devicestate=view["devicestate"],
                                        agentid=view["agentid"], agentstate=view["agentstate"]),
                         EXTENSIONS_TOPIC)

    # -- inputs ---------------------------------------------------------------------------------
    def on_ari_event(self, link: AsteriskLink, event: AriEvent) -> None:
        if event.get("type") != "DeviceStateChanged":
            return
        device = event.get("device_state") or {}
        extension = self.directory.resolve(link.name, device.get("name", ""))
        if extension is None:
            return
        self.device[extension] = str(device.get("state", "UNKNOWN"))
        self._publish_if_changed(extension)

    def on_cti_event(self, event: CtiEvent) -> None:
        """The hub's observer: an agent state change can turn an idle line `away` and back."""
        if type(event) in AGENT_STATES and event.extension in self.directory.extensions:
            self._publish_if_changed(event.extension)

    async def on_link_up(self, link: AsteriskLink) -> None:
        """Seed the states of the extensions this link serves (one request, no channel)."""
        try:
            states = await link.call("deviceStates", "list") or []
        except (AriError, AstctiError) as exc:  # AstctiError: the link went down meanwhile
            log.info("%s: cannot read device states: %s", link.name,
                     getattr(exc, "message", exc))
            return
        for item in states:
            extension = self.directory.resolve(link.name, item.get("name", ""))
            if extension is not None:
                self.device[extension] = str(item.get("state", "UNKNOWN"))
        for extension, name in self.directory.serving.items():
            if name == link.name:
                self._publish_if_changed(extension)

    def on_link_down(self, link: AsteriskLink) -> None:
        for extension, name in list(self.directory.serving.items()):
            if name == link.name:
                self.device[extension] = "UNAVAILABLE"
                self._publish_if_changed(extension)


def _number_key(number: str) -> tuple[int, int | str]:
    return (0, int(number)) if number.isdigit() else (1, number)
