"""Live trace lines for `trace on asc|ari|client` in astcti-shell.

Three taps feed it: raw ARI events (`ari`), the CTI events astcti sends to clients (`asc`, as
in the seed: "astcti client events"), client requests and responses (`client`). Each tap checks
whether anybody listens before formatting anything, so an untraced daemon pays one dict lookup
per event. Secrets (login passwords, tokens) never reach a trace line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

CHANNELS = ("asc", "ari", "client")
CHANNEL_DOCS = {
    "asc": "CTI events as astcti sends them to clients (delivered, established, ...)",
    "ari": "raw ARI events from each Asterisk link (one summary line per event)",
    "client": "client requests and astcti's responses (passwords and tokens masked)",
}
SECRET_KEYS = ("password", "token", "secret", "passwd")
MASK = "***"

Sink = Callable[[str, str], None]  # (channel, line)


def mask(value: Any) -> Any:
    """A copy of a request/response with every secret-looking field masked."""
    if isinstance(value, dict):
        return {k: (MASK if any(s in str(k).lower() for s in SECRET_KEYS) and v not in ("", None)
                    else mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]


def summarize_ari(event: dict[str, Any]) -> str:
    """One readable line for an ARI event: type, channel, state and the fields that matter."""
    parts = [str(event.get("type", "?"))]
    channel = event.get("channel") or {}
    if channel:
        parts.append(f"{channel.get('name', '?')} state={channel.get('state', '?')}")
        caller = (channel.get("caller") or {}).get("number")
        if caller:
            parts.append(f"caller={caller}")
        dialplan = channel.get("dialplan") or {}
        if event.get("type") == "ChannelDialplan":
            parts.append(f"app={dialplan.get('app_name', '')}({dialplan.get('app_data', '')})")
    peer = event.get("peer") or {}
    if peer:
        parts.append(f"peer={peer.get('name', '?')}")
    for key in ("dialstatus", "cause", "cause_txt"):
        if event.get(key) not in (None, ""):
            parts.append(f"{key}={event[key]}")
    endpoint = event.get("endpoint") or {}
    if endpoint:
        parts.append(f"endpoint={endpoint.get('technology')}/{endpoint.get('resource')}"
                     f" state={endpoint.get('state')}")
    device = event.get("device_state") or {}
    if device:
        parts.append(f"device={device.get('name')} state={device.get('state')}")
    return " ".join(parts)


class TraceBus:
    """Who traces what; taps call :meth:`wants` first and format only when it is true."""

    def __init__(self) -> None:
        self._sinks: dict[str, set[Sink]] = {c: set() for c in CHANNELS}

    def wants(self, channel: str) -> bool:
        return bool(self._sinks[channel])

    def subscribe(self, channel: str, sink: Sink) -> bool:
        """False if that sink already traces the channel."""
        if sink in self._sinks[channel]:
            return False
        self._sinks[channel].add(sink)
        return True

    def unsubscribe(self, channel: str, sink: Sink) -> bool:
        if sink not in self._sinks[channel]:
            return False
        self._sinks[channel].discard(sink)
        return True

    def unsubscribe_all(self, sink: Sink) -> list[str]:
        gone = [c for c, sinks in self._sinks.items() if sink in sinks]
        for channel in gone:
            self._sinks[channel].discard(sink)
        return gone

    def tracing(self, sink: Sink) -> list[str]:
        return [c for c, sinks in self._sinks.items() if sink in sinks]

    def emit(self, channel: str, text: str) -> None:
        line = f"{_clock()} {channel} {text}"
        for sink in tuple(self._sinks[channel]):
            try:
                sink(channel, line)
            except Exception:  # a broken admin connection must not break the event flow
                log.exception("trace sink failed")
                self._sinks[channel].discard(sink)

    # -- taps (wired by app.py) ---------------------------------------------------------------
    def on_ari(self, link: str, event: dict[str, Any]) -> None:
        if self._sinks["ari"]:
            self.emit("ari", f"{link} {summarize_ari(event)}")

    def on_cti(self, text: str) -> None:
        """The hub's serialised event, exactly as clients receive it."""
        if self._sinks["asc"]:
            self.emit("asc", text)

    def on_client(self, session: Any, raw: Any, reply: dict[str, Any]) -> None:
        if not self._sinks["client"]:
            return
        if isinstance(raw, (str, bytes)):
            try:
                request: Any = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                request = {"unparsable": f"{len(raw)} bytes"}
        else:
            request = raw
        who = f"#{getattr(session, 'id', '?')} {getattr(session, 'transport', '?')}" \
              f" {getattr(session, 'peer', '?')}"
        identity = getattr(session, "identity", None)
        if identity is not None:
            who += f" {identity.username}"
        compact = (",", ":")
        self.emit("client", f"{who} -> {json.dumps(mask(request), separators=compact)}")
        self.emit("client", f"{who} <- {json.dumps(mask(reply), separators=compact)}")
