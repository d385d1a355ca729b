"""After a (re)connect: take back the calls astcti left in Asterisk.

astcti may have restarted in the middle of calls: bridges and channels live on in Asterisk.
Its bridges (named `astcti`) become conversations again; the agent channels say which calls
they hold (ASTCTI_HOLDING, the bridge ids); a channel talking in a bridge whose parties belong
to another call than its own (a consultation on the agent's one leg) gets that line back in the
tracker; legs left outside any bridge are tied to the leg they were dialled for (same linkedid)
and bridged if answered meanwhile; parties left alone are released.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from astcti.cti.control.model import Conversation, Leg
from astcti.cti.tracker import endpoint_of
from astcti.pbx.ari import AriError
from astcti.pbx.dialplan import CALLID_VAR, HOLDING_VAR, LINKEDID_VAR

if TYPE_CHECKING:
    from astcti.cti.control.bridging import Bridging
    from astcti.cti.control.stasis import StasisReactions

log = logging.getLogger(__name__)


class Resync:
    def __init__(self, bridging: Bridging, reactions: StasisReactions) -> None:
        self.b = bridging
        self.state = bridging.state
        self.pbx = bridging.pbx
        self.tracker = bridging.tracker
        self.reactions = reactions

    async def run(self, link: str, app: str) -> None:
        try:
            bridges, channels = await self.pbx.list(link)
        except AriError as exc:
            log.warning("%s: cannot resync call control: %s", link, exc.message)
            return
        self.state.forget_link(link)
        linkedid_of: dict[str, str] = {}
        linked: dict[str, list[Leg]] = {}  # linkedid -> its legs in astcti's app
        roots: dict[str, Leg] = {}  # linkedid -> the leg the others were dialled for
        for channel in channels:
            plan = channel.get("dialplan") or {}
            args = str(plan.get("app_data", "")).split(",")
            if plan.get("app_name") != "Stasis" or args[0] != app:
                continue
            leg = self.state.add_leg(Leg(link, channel["id"], channel["name"],
                                         number=(channel.get("caller") or {}).get("number", ""),
                                         up=channel.get("state") == "Up"))
            if leg.up:
                leg.answered.set()
            variables = channel.get("channelvars") or {}
            linkedid = variables.get(LINKEDID_VAR) or leg.id
            # the call a party belongs to: astcti's name for it, else Asterisk's linkedid
            linkedid_of[leg.id] = variables.get(CALLID_VAR) or linkedid
            linked.setdefault(linkedid, []).append(leg)
            if (len(args) > 1 and args[1] == "dial") or leg.id == linkedid:
                roots.setdefault(linkedid, leg)
        for bridge in bridges:
            if bridge.get("bridge_class") != "stasis" or bridge.get("name") != "astcti":
                continue
            conv = self.state.add_conv(Conversation(link, bridge["id"]))
            for channel_id in bridge.get("channels") or []:
                if (link, channel_id) in self.state.legs:
                    conv.members.add(channel_id)
                    self.state.member_of[(link, channel_id)] = conv
        await self._holders(link)
        self._lines(link, linkedid_of)
        # legs outside any bridge were being dialled (or answered) when astcti went away:
        # tie them to the leg they were dialled for, as if astcti had never left
        waiting: list[Leg] = []
        for linkedid, legs in linked.items():
            root = roots.get(linkedid)
            for leg in legs:
                if root is None or leg is root or self.state.calls_of(link, leg.id):
                    continue
                self.state.set_peer(leg, root.id)
                self.tracker.dialling(link, leg.id, root.id)
                conv = self.state.member_of.get((link, root.id))
                if conv is not None:
                    self.state.expect(conv, leg.id)
                if leg.up:
                    waiting.append(leg)
        for conv in [c for c in self.state.convs.values() if c.link == link]:
            async with self.b.locked(link, lambda conv=conv: conv.parties()):
                await self.b.settle(conv)  # parties that left while astcti was away
        for leg in waiting:
            async with self.b.locked(link, lambda leg=leg: [leg.id]):
                await self.reactions._answered(leg)
        count = len([k for k in self.state.legs if k[0] == link])
        if count:
            log.info("%s: call control resumed %d channel(s) in %d bridge(s)", link, count,
                     len([k for k in self.state.convs if k[0] == link]))

    async def _holders(self, link: str) -> None:
        """Which agent channels hold which bridges (ASTCTI_HOLDING on the agent's leg)."""
        for leg in [l for (k, _), l in self.state.legs.items() if k == link and l.up]:
            if self.b.directory.resolve(link, endpoint_of(leg.name)) is None:
                continue  # only agents' phones hold calls
            try:
                held = await self.pbx.get_var(link, leg.id, HOLDING_VAR)
            except AriError:
                continue
            for bridge_id in filter(None, held.split(",")):
                conv = self.state.conv(link, bridge_id)
                if conv is not None and leg.id not in conv.members:
                    self.state.set_holder(conv, leg.id)
                    conv.moh = True

    def _lines(self, link: str, linkedid_of: dict[str, str]) -> None:
        """Tell the tracker which call each agent channel has in each conversation."""
        for (conv_link, _), conv in list(self.state.convs.items()):
            if conv_link != link:
                continue
            for channel_id in [*conv.members, *([conv.holder] if conv.holder else [])]:
                own = self.tracker.connections.get((link, channel_id))
                if own is None:
                    continue
                held = conv.holder == channel_id
                others = [m for m in conv.members if m != channel_id]
                callid = next((linkedid_of[m] for m in others if m in linkedid_of), own.callid)
                if callid == own.callid:
                    self.tracker.bind(link, own.key, conv.bridge_id)
                    if held:
                        self.tracker.restore_hold(link, own.key, conv.bridge_id)
                else:  # a consultation line on the agent's one leg
                    called = next((self.b.number(link, m) for m in others), "")
                    self.tracker.restore_line(link, channel_id, callid, conv.bridge_id,
                                              called=called, held=held)
                if not held:
                    self.tracker.restore_position(link, channel_id, conv.bridge_id)
