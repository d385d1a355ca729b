"""Third-party call control: astcti's calls in Stasis, bridges, hold, transfer, conference.

ARI can only answer, hold, bridge, move or send DTMF to channels inside a Stasis application,
so the dialplan (`asterisk-conf/asterisk/extensions_astcti.conf.j2`, context `astcti-dial`)
hands calls to and from agents to astcti's app. Split the way wazo-calld splits a feature:

- `model`: legs, conversations (mixing bridges), the clean-up rule, per-channel locks (no I/O);
- `pbx`: the ARI operations call control uses (the only part that calls Asterisk);
- `bridging`: the model in motion (bridge, join, leave, hold, retrieve, dial into, settle);
- `services`: the requests (and `converse`, the entry point for calls taken over);
- `stasis`: reactions to the ARI events of astcti's calls;
- `resync`: taking the calls back after astcti or its link restarted;
- `phones`: what a phone honours (auto-answer headers, NOTIFY talk).

The services decide and call ARI; the tracker (pure) turns the resulting ARI events into CTI
events. What ARI does not report (astcti's own hold, a transfer's intent, which line of an
agent's channel a bridge belongs to) is told to the tracker by plain method calls first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from astcti.cti.control.bridging import Bridging
from astcti.cti.control.model import CallState, ControlError, Conversation, Leg
from astcti.cti.control.pbx import ControlPbx
from astcti.cti.control.phones import AUTO_ANSWER_HEADERS, AnswerMode
from astcti.cti.control.resync import Resync
from astcti.cti.control.services import ControlServices
from astcti.cti.control.stasis import StasisReactions
from astcti.cti.model import Connection
from astcti.cti.tracker import Tracker
from astcti.pbx.ari import AriEvent

if TYPE_CHECKING:
    from astcti.cti.directory import Directory
    from astcti.cti.userdata import UserDataService
    from astcti.pbx.link import AsteriskLink

__all__ = ["AUTO_ANSWER_HEADERS", "CallControl", "ControlError", "Conversation", "Leg"]


class CallControl:
    """The call control feature as the daemon sees it: requests, events, link lifecycle."""

    def __init__(self, tracker: Tracker, directory: Directory,
                 dial_context: str = "from-internal", pbx: ControlPbx | None = None) -> None:
        self.tracker = tracker
        self.directory = directory
        self.state = CallState()
        self.pbx = pbx or ControlPbx(directory)
        self.bridging = Bridging(self.state, self.pbx, tracker, directory)
        self.bridging.dial_context = dial_context
        self.services = ControlServices(self.bridging)
        self.reactions = StasisReactions(self.bridging, self.services)
        self._resync = Resync(self.bridging, self.reactions)

    # -- settings -------------------------------------------------------------------------------
    @property
    def dial_context(self) -> str:
        return self.bridging.dial_context

    @dial_context.setter
    def dial_context(self, value: str) -> None:
        self.bridging.dial_context = value

    @property
    def userdata(self) -> UserDataService | None:
        return self.services.userdata

    @userdata.setter
    def userdata(self, value: UserDataService | None) -> None:
        self.services.userdata = value

    @property
    def default_answer(self) -> str:
        return self.services.default_answer

    @default_answer.setter
    def default_answer(self, value: str) -> None:
        self.services.default_answer = value if value in {m.value for m in AnswerMode} \
            else AnswerMode.REOFFER.value

    # -- requests -------------------------------------------------------------------------------
    def connection(self, extension: str, callid: str) -> Connection:
        return self.services.connection(extension, callid)

    async def makecall(self, extension: str, destination: str,
                       userdata: dict[str, Any] | None = None) -> str:
        return await self.services.makecall(extension, destination, userdata)

    async def answer(self, extension: str, callid: str) -> None:
        await self.services.answer(extension, callid)

    async def hangup(self, extension: str, callid: str) -> None:
        await self.services.hangup(extension, callid)

    async def hold(self, extension: str, callid: str) -> None:
        await self.services.hold(extension, callid)

    async def retrieve(self, extension: str, callid: str) -> None:
        await self.services.retrieve(extension, callid)

    async def consultation(self, extension: str, callid: str, destination: str,
                           userdata: dict[str, Any] | None = None) -> str:
        return await self.services.consultation(extension, callid, destination, userdata)

    async def reconnect(self, extension: str, activecallid: str, heldcallid: str) -> None:
        await self.services.reconnect(extension, activecallid, heldcallid)

    async def alternate(self, extension: str, activecallid: str, heldcallid: str) -> None:
        await self.services.alternate(extension, activecallid, heldcallid)

    async def transfer(self, extension: str, activecallid: str, heldcallid: str) -> None:
        await self.services.transfer(extension, activecallid, heldcallid)

    async def transfer_blind(self, extension: str, callid: str, destination: str) -> None:
        await self.services.transfer_blind(extension, callid, destination)

    async def conference(self, extension: str, activecallid: str, heldcallid: str) -> None:
        await self.services.conference(extension, activecallid, heldcallid)

    async def conference_add(self, extension: str, callid: str, destination: str) -> None:
        await self.services.conference_add(extension, callid, destination)

    async def dtmf(self, extension: str, callid: str, digits: str) -> None:
        await self.services.dtmf(extension, callid, digits)

    async def drop_party(self, extension: str, callid: str, party: str) -> None:
        await self.services.drop_party(extension, callid, party)

    def party_number(self, link: str, channel_id: str) -> str:
        """Who a channel of astcti's calls is (the tracker names a party that leaves)."""
        return self.bridging.number(link, channel_id)

    async def converse(self, link: str, channels: list[dict[str, Any]]) -> Conversation:
        """Make channels already in astcti's Stasis app one of its conversations."""
        return await self.services.converse(link, channels)

    # -- events and link lifecycle ----------------------------------------------------------------
    def on_event(self, link: AsteriskLink, event: AriEvent) -> None:
        """Called for every ARI event (after the tracker)."""
        self.reactions.on_event(link.name, event)

    async def resync(self, link: AsteriskLink) -> None:
        await self._resync.run(link.name, link.config.app)

    def forget_link(self, link: str) -> None:
        """The link went down: what astcti knew of its Stasis channels is stale."""
        self.state.forget_link(link)
