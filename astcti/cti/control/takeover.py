"""Stasis on demand: a call astcti was asked to control but does not own becomes astcti's.

FreePBX rings agents with its own Dial() (and queues, ring groups, follow-me...); a plain
dialplan may too. Those calls are monitored but not in astcti's Stasis app, where ARI can hold,
bridge and transfer them. When a request names such a call, `Takeover.take` moves it there first:
`astcti.pbx.adopt` finds the agent's channel and the far party (across Local pairs) and sends both
with ONE AMI Redirect to `astcti-adopt,<token>` (`Stasis(app,adopt,token)`); when both have
arrived they become one of astcti's conversations (`ControlServices.converse`) and the request
goes on as on any call of astcti's: same channels, same callid, restart-proof like the others.

A call still ringing at the agent (`answer`): NOTIFY talk where the phone supports it needs no
takeover (the phone answers FreePBX's own Dial); otherwise the caller alone is taken over and
the phone is rung again with auto-answer headers, as `answer` does for astcti's own calls.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from astcti.cti.control.model import ControlError, Conversation, Leg
from astcti.cti.control.phones import auto_answer_variables
from astcti.cti.model import Connection, ConnectionState
from astcti.cti.tracker import Plan
from astcti.pbx import adopt
from astcti.pbx.ari import AriError

if TYPE_CHECKING:
    from astcti.cti.control.bridging import Bridging
    from astcti.cti.control.services import ControlServices
    from astcti.cti.directory import Extension

log = logging.getLogger(__name__)

ARRIVAL_SECONDS = 5.0  # the Redirect answers at once; Stasis follows within milliseconds
AGENT_RING_SECONDS = 30


@dataclass
class _Arrival:
    """The channels a takeover waits for in astcti's app (one Redirect, one token)."""

    expected: set[str]
    arrived: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, channel: dict[str, Any]) -> None:
        if channel["id"] in self.expected:
            self.arrived[channel["id"]] = channel
            if set(self.arrived) >= self.expected:
                self.done.set()


class Takeover:
    """Takes calls astcti does not own into its app (see the module docstring)."""

    def __init__(self, bridging: Bridging, services: ControlServices) -> None:
        self.b = bridging
        self.state = bridging.state
        self.pbx = bridging.pbx
        self.tracker = bridging.tracker
        self.services = services
        self._waiting: dict[tuple[str, str], _Arrival] = {}  # (link, token) -> arrival
        self._running: dict[tuple[str, str], asyncio.Future[None]] = {}  # (link, channel)

    def owns(self, conn: Connection) -> bool:
        return self.state.leg(conn.link, conn.channel_id) is not None

    # -- Stasis side ----------------------------------------------------------------------------
    def arrived(self, link: str, channel: dict[str, Any], token: str) -> None:
        """StasisStart(adopt, token): a redirected channel is in astcti's app. Known as a leg at
        once, so a hangup before the takeover completes is seen."""
        if self.state.leg(link, channel["id"]) is None:
            self.state.add_leg(Leg(link, channel["id"], channel.get("name", ""),
                                   number=(channel.get("caller") or {}).get("number", ""),
                                   up=channel.get("state") == "Up"))
        arrival = self._waiting.get((link, token))
        if arrival is None:  # nobody waits (astcti restarted between Redirect and arrival)
            asyncio.get_running_loop().call_later(
                ARRIVAL_SECONDS, lambda: asyncio.ensure_future(self._orphan(link, channel)))
            return
        arrival.add(channel)

    async def _orphan(self, link: str, channel: dict[str, Any]) -> None:
        """A channel that came to take over with nobody waiting, and that no conversation took
        meanwhile, has no call any more: hang it up (Asterisk stays clean)."""
        leg = self.state.leg(link, channel["id"])
        if leg is not None and not leg.gone and (link, leg.id) not in self.state.member_of:
            log.info("%s came into astcti's app to be taken over, nobody took it: hanging up",
                     channel.get("name"))
            await self.pbx.hangup(link, leg.id)

    async def _move(self, link: str, channels: list[dict[str, Any]]) -> dict[str, Any]:
        """Redirect the channels to the adopt context and wait until all are in the app."""
        token = adopt.new_token()
        arrival = _Arrival({c["id"] for c in channels})
        self._waiting[(link, token)] = arrival
        try:
            await adopt.redirect(self.pbx.link(link), channels, token)
            try:
                await asyncio.wait_for(arrival.done.wait(), ARRIVAL_SECONDS)
            except TimeoutError:
                for channel_id in arrival.arrived:  # what came alone has no call any more
                    await self.pbx.hangup(link, channel_id)
                raise ControlError("call not controllable now: its channels did not reach"
                                   " astcti's application (one hung up?)", 409) from None
        except adopt.TakeoverError as exc:
            raise ControlError(str(exc), 409) from None
        finally:
            self._waiting.pop((link, token), None)
        return arrival.arrived

    # -- an answered call -----------------------------------------------------------------------
    async def take(self, conn: Connection) -> Conversation | None:
        """Make the connection's call astcti's (once, whoever asks first); its conversation."""
        key = (conn.link, conn.channel_id)
        running = self._running.get(key)
        if running is not None:
            await asyncio.shield(running)
            return self.b.conv_for(conn)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            conv = await self._take(conn)
            future.set_result(None)
            return conv
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a concurrent request re-raises it itself
            raise
        finally:
            self._running.pop(key, None)

    async def _take(self, conn: Connection) -> Conversation:
        link = conn.link
        try:
            adopt.require_ami(self.pbx.link(link))
            parties, _channels = await adopt.read_parties(self.pbx.link(link), conn.channel_id)
        except adopt.TakeoverError as exc:
            raise ControlError(str(exc), 409) from None
        if parties.far is None:
            raise ControlError("no active call", 409)
        log.info("taking over %s <-> %s (not in astcti's app) for %s", parties.agent["name"],
                 parties.far["name"], conn.extension)
        arrived = await self._move(link, parties.channels)
        if any(self.state.gone(link, cid) for cid in arrived):
            for cid in arrived:
                await self.pbx.hangup(link, cid)
            raise ControlError("no active call", 409)
        return await self.services.converse(link, [arrived[parties.agent["id"]],
                                                   arrived[parties.far["id"]]])

    # -- a call ringing at the agent ------------------------------------------------------------
    async def reoffer(self, conn: Connection, ext: Extension) -> None:
        """Take the caller of a ringing call into astcti's app and ring the agent's phone again
        with auto-answer headers (the phone did not answer NOTIFY talk, or cannot)."""
        link = conn.link
        try:
            adopt.require_ami(self.pbx.link(link))  # before anything moves
            channels = await self.pbx.call(link, "channels", "list") or []
        except adopt.TakeoverError as exc:
            raise ControlError(str(exc), 409) from None
        except AriError as exc:
            raise ControlError(f"call not controllable now: {exc.message}", 409) from None
        agent = next((c for c in channels if c["id"] == conn.channel_id), None)
        if agent is None or conn.state is not ConnectionState.ALERTING:
            raise ControlError("no alerting call", 409)
        caller = adopt.locate_caller(agent, channels, conn.callid)
        if caller is None:
            raise ControlError("call not controllable: nobody dials this phone through"
                               " Dial() or Queue() (astcti cannot take that caller over)", 409)
        variables = auto_answer_variables(ext)
        variables["CONNECTEDLINE(num,i)"] = (caller.get("caller") or {}).get("number", "")
        variables["CONNECTEDLINE(name,i)"] = (caller.get("caller") or {}).get("name", "")
        # the new leg first: the tracker moves the connection to it (same callid), so the old
        # ringing channel ending when the caller leaves its Dial() clears nothing
        leg = await self.b.create(link, ext.endpoint, originator=caller["id"],
                                  variables=variables, plan=Plan(replaces=conn.channel_id),
                                  peer=caller["id"], dialled_for=caller["id"])
        try:
            await self._move(link, [caller])
        except BaseException:
            await self.pbx.hangup(link, leg.id)
            raise
        try:
            await self.pbx.dial(link, leg.id, caller["id"], AGENT_RING_SECONDS)
        except BaseException:
            await self.pbx.hangup(link, leg.id)
            await self.pbx.hangup(link, caller["id"])
            raise
