"""Call ids without ari.conf `channelvars`: astcti asks for them before the tracker sees a channel.

The tracker's callid is the Asterisk linkedid (one id for every leg of a call), and dialplan
user data is ASTCTI_USERDATA; ARI puts both in channel snapshots only through ari.conf
`channelvars` (on FreePBX: ari_general_custom.conf). Where an admin cannot set that, each leg
would get its own callid. :class:`ChannelVarsFiller` notices the missing variables on the first
snapshot of a link and from then on reads them (`GET /channels/{id}/variable`, which works on
any channel) for each new channel of a watched extension, holding that link's events, in order,
until the answers are in: one round trip per tracked channel, and nothing at all on a PBX whose
ari.conf has the channelvars.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from astcti.pbx.ari import AriError, AriEvent
from astcti.pbx.dialplan import CALLID_VAR, LINKEDID_VAR, USERDATA_VAR
from astcti.pbx.link import AsteriskLink

log = logging.getLogger(__name__)

Deliver = Callable[[AsteriskLink, AriEvent], None]
Wanted = Callable[[str, dict[str, Any]], bool]  # (link name, channel snapshot) -> track it?
VARIABLES = (LINKEDID_VAR, USERDATA_VAR, CALLID_VAR)


def snapshots(event: AriEvent) -> Iterator[dict[str, Any]]:
    """The channel snapshots of an event (channel, peer, caller, transfer legs...)."""
    for value in event.values():
        if isinstance(value, dict) and "id" in value and "name" in value and "state" in value:
            yield value


class _LinkState:
    def __init__(self) -> None:
        self.mode: str | None = None  # None: not known yet; "configured"; "lookup"
        self.values: dict[str, dict[str, str]] = {}  # channel id -> looked-up channelvars
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.queue: deque[AriEvent] = deque()


class ChannelVarsFiller:
    """Sits between a link and the daemon's event handler (see the module docstring)."""

    def __init__(self, deliver: Deliver, wanted: Wanted) -> None:
        self.deliver = deliver
        self.wanted = wanted
        self._links: dict[str, _LinkState] = {}

    def reset(self, link_name: str) -> None:
        """A (re)connect: Asterisk's ari.conf may have changed meanwhile."""
        state = self._links.pop(link_name, None)
        if state is not None:
            for task in state.pending.values():
                task.cancel()

    def feed(self, link: AsteriskLink, event: AriEvent) -> None:
        state = self._links.get(link.name)
        if state is None:  # (not setdefault: that would build a state per event)
            state = self._links[link.name] = _LinkState()
        if state.mode == "configured":
            self.deliver(link, event)
            return
        if state.mode is None:
            first = next(snapshots(event), None)
            if first is None:
                self.deliver(link, event)
                return
            if LINKEDID_VAR in (first.get("channelvars") or {}):
                state.mode = "configured"
                self.deliver(link, event)
                return
            state.mode = "lookup"
            log.warning("%s: Asterisk sends no %s in channel snapshots (ari.conf [general]"
                        " channelvars = %s is missing): astcti reads them per tracked channel",
                        link.name, LINKEDID_VAR, ",".join(VARIABLES))
        for snap in snapshots(event):
            if LINKEDID_VAR in (snap.get("channelvars") or {}):
                continue
            cid = snap["id"]
            if cid not in state.values and cid not in state.pending \
                    and self.wanted(link.name, snap):
                state.pending[cid] = asyncio.ensure_future(self._lookup(link, state, cid))
        state.queue.append(event)
        self._drain(link, state)

    async def _lookup(self, link: AsteriskLink, state: _LinkState, channel_id: str) -> None:
        values: dict[str, str] = {}
        try:
            for variable in VARIABLES:
                try:
                    reply = await link.rest.call("channels", "getChannelVar",
                                                 channelId=channel_id, variable=variable)
                except AriError as exc:  # gone already, or the variable is unset
                    log.debug("%s: %s of %s: %s", link.name, variable, channel_id, exc.message)
                    continue
                value = (reply or {}).get("value")
                if value:
                    values[variable] = str(value)
        finally:
            state.values[channel_id] = values
            state.pending.pop(channel_id, None)
            self._drain(link, state)

    def _drain(self, link: AsteriskLink, state: _LinkState) -> None:
        """Deliver queued events in order, up to the first one still waiting for a lookup."""
        while state.queue:
            event = state.queue[0]
            snaps = list(snapshots(event))
            if any(s["id"] in state.pending for s in snaps):
                return
            state.queue.popleft()
            for snap in snaps:
                known = state.values.get(snap["id"])
                if known:
                    snap["channelvars"] = {**known, **(snap.get("channelvars") or {})}
            try:
                self.deliver(link, event)
            finally:
                if event.get("type") == "ChannelDestroyed":
                    state.values.pop(event["channel"]["id"], None)

    async def fill(self, link: AsteriskLink, channels: list[dict[str, Any]]) -> None:
        """Fill a `channels list` (the resync after a connect) the same way."""
        state = self._links.setdefault(link.name, _LinkState())
        missing = [c for c in channels if LINKEDID_VAR not in (c.get("channelvars") or {})]
        if not channels or not missing:
            return
        state.mode = "lookup"
        wanted = [c for c in missing if self.wanted(link.name, c)]
        for snap in wanted:
            if snap["id"] not in state.values:
                await self._lookup(link, state, snap["id"])
            snap["channelvars"] = {**state.values.get(snap["id"], {}),
                                   **(snap.get("channelvars") or {})}
