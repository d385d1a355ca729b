"""Taking over a call that is not in astcti's Stasis application ("Stasis on demand").

FreePBX (and any plain dialplan) rings agents with its own `Dial()`/`Queue()`; ARI can watch
those calls but can hold, bridge or transfer only channels inside a Stasis application. So when
a client asks to control such a call, astcti moves it: an AMI `Redirect` sends the agent's
channel and, in the same action, the other party (ExtraChannel: both leave their bridge at once,
so the call is not torn down) to the `astcti-adopt` context, which runs
`Stasis(<app>,adopt,<token>)`; astcti then bridges both in its own mixing bridge (wazo-calld's
`convert_to_stasis` does the same). This module is the PBX half: finding the two channels (across
`Local/...;1`/`;2` pairs, e.g. FreePBX queue members `Local/101@from-queue/n`) and the Redirect;
the control service waits for the two `StasisStart`s and bridges them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

from astcti.errors import AstctiError
from astcti.pbx.ami import AmiError, AmiLink
from astcti.pbx.ari import AriError
from astcti.pbx.dialplan import ADOPT_CONTEXT
from astcti.pbx.link import AsteriskLink

Snapshot = dict[str, Any]

#: applications whose channel is in no call astcti could own (the agent listens to voicemail,
#: spies, pages...): a clear refusal instead of breaking what the channel does
NOT_A_CALL = {"VoiceMail", "VoiceMailMain", "ConfBridge", "MeetMe", "Page", "ChanSpy",
              "ExtenSpy", "MusicOnHold", "Playback", "Background", "Record", "MixMonitor",
              "Echo", "Read", "ParkAndAnnounce", "Park", "ParkedCall"}
LOCAL_HOPS = 3  # Local pairs walked between the agent and the far party (queue members...)
#: how long a call caught between answer and bridge may take to settle (Dial() answers the
#: agent's channel, then bridges it: a request right after `established` lands in between)
SETTLE_SECONDS = 2.0


class TakeoverError(AstctiError):
    """A call astcti cannot take over; the message says why (for the client, 409)."""


class NotSettled(TakeoverError):
    """The call is between two steps of the dialplan (answered, not bridged with its other
    party yet, or that party just leaving): worth reading again in a moment."""


@dataclass(frozen=True)
class Parties:
    """The two channels to move: the agent's, and the party at the far end of the call."""

    agent: Snapshot
    far: Snapshot | None  # None: the agent's channel is ringing (no far party bridged yet)
    caller: Snapshot | None = None  # ringing: the channel dialling the agent (in Dial/Queue)

    @property
    def channels(self) -> list[Snapshot]:
        return [c for c in (self.agent, self.far) if c is not None]


def _partner(local: Snapshot, by_name: dict[str, Snapshot]) -> Snapshot | None:
    """The other half of a Local channel pair (`...;1` <-> `...;2`)."""
    base, sep, half = local["name"].rpartition(";")
    if not sep:
        return None
    return by_name.get(f"{base};{'1' if half == '2' else '2'}")


def _app(channel: Snapshot) -> str:
    return str((channel.get("dialplan") or {}).get("app_name", ""))


def locate(agent_id: str, channels: list[Snapshot], bridges: list[Snapshot]) -> Parties:
    """The agent's channel and the far party from ARI's channel and bridge lists (pure).

    Walks from the agent's bridge partner across Local pairs to the first real channel; refuses,
    with the reason, what is not a two-party call."""
    by_id = {c["id"]: c for c in channels}
    by_name = {c["name"]: c for c in channels}
    agent = by_id.get(agent_id)
    if agent is None:
        raise TakeoverError("call not controllable: the call ended")
    if _app(agent) == "Stasis":
        raise TakeoverError(f"call not controllable: {agent['name']} belongs to another ARI"
                            f" application ({(agent.get('dialplan') or {}).get('app_data', '')})")
    if _app(agent) in NOT_A_CALL:
        raise TakeoverError(f"call not controllable: {agent['name']} runs {_app(agent)}, not a"
                            " call astcti can take over")
    bridge_of = {cid: b for b in bridges for cid in b.get("channels", [])}
    if agent_id not in bridge_of:
        if agent.get("state") in ("Ring", "Ringing"):
            return Parties(agent, None)
        error = NotSettled if agent.get("state") == "Up" else TakeoverError
        raise error(f"call not controllable: {agent['name']} is in no call"
                    f" ({_app(agent) or 'no application'})")
    current = agent
    for _ in range(LOCAL_HOPS + 1):
        bridge = bridge_of.get(current["id"])
        if bridge is None:
            raise TakeoverError(f"call not controllable: {current['name']} is in no bridge")
        others = [by_id[c] for c in bridge["channels"] if c != current["id"] and c in by_id]
        if bridge.get("bridge_class") not in ("basic", None) or len(others) != 1:
            what = bridge.get("name") or bridge.get("bridge_class") or "bridge"
            error = NotSettled if not others else TakeoverError
            raise error(f"call not controllable: {agent['name']} is in a {what} with"
                        f" {len(others) + 1} parties, which astcti cannot take over")
        far = others[0]
        if not far["name"].startswith("Local/"):
            if _app(far) == "Stasis":
                raise TakeoverError(f"call not controllable: its other party {far['name']}"
                                    " belongs to another ARI application")
            if _app(far) in NOT_A_CALL:
                raise TakeoverError(f"call not controllable: its other party {far['name']}"
                                    f" runs {_app(far)}")
            return Parties(agent, far)
        partner = _partner(far, by_name)
        if partner is None:
            raise TakeoverError(f"call not controllable: {far['name']} has no other half")
        current = partner
    raise TakeoverError("call not controllable: too many Local channels between the parties")


def locate_caller(agent: Snapshot, channels: list[Snapshot], callid: str) -> Snapshot | None:
    """The real caller of a ringing agent, for `answer` by taking the caller over: a channel of
    the same call (`callid` = its linkedid: the call's first channel, or its channelvars say so)
    running Dial() or Queue(), not a Local channel (a queue member's ;2 dials the phone)."""
    def linkedid(channel: Snapshot) -> str:
        return str((channel.get("channelvars") or {}).get("CHANNEL(linkedid)") or "")

    same_call = [c for c in channels if c["id"] != agent["id"]
                 and (c["id"] == callid or linkedid(c) == callid)]
    callers = [c for c in same_call if _app(c) in ("Dial", "Queue")
               and not c["name"].startswith("Local/")]
    return min(callers, key=lambda c: c["id"]) if callers else None


_tokens = itertools.count(int(time.time()) % 100_000 * 1000)


def new_token() -> str:
    """Digits (the adopt context matches `_X.`), unique within this astcti's life."""
    return str(next(_tokens))


async def read_parties(link: AsteriskLink, agent_id: str) -> tuple[Parties, list[Snapshot]]:
    """`locate` on the PBX's current channels and bridges, read again while the call has not
    settled (for at most SETTLE_SECONDS)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    pause = 0.05
    while True:
        try:
            channels = await link.call("channels", "list") or []
            bridges = await link.call("bridges", "list") or []
        except AriError as exc:
            raise TakeoverError(f"call not controllable now: {exc.message}") from None
        try:
            return locate(agent_id, channels, bridges), channels
        except NotSettled:
            if time.monotonic() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.4)


def require_ami(link: AsteriskLink) -> AmiLink:
    """The link's AMI, connected; else the reason a takeover cannot happen now."""
    ami = link.ami
    if ami is None:
        raise TakeoverError(f"call not controllable: astcti has no AMI link to this Asterisk"
                            f" ({link.name}): set acti_amilink_{link.name.rsplit('_', 1)[-1]}"
                            " (docs/freepbx.md)")
    if not ami.up:
        raise TakeoverError(f"call not controllable now: the AMI link {ami.name} is down"
                            f" ({ami.last_error or 'connecting'}): retry when it is back")
    return ami


async def redirect(link: AsteriskLink, channels: list[Snapshot], token: str) -> None:
    """AMI Redirect of one or two channels (one action) to `astcti-adopt,<token>,1`."""
    ami = require_ami(link)
    first, *rest = channels
    extra = rest[0] if rest else None
    try:
        await ami.redirect(first["name"], ADOPT_CONTEXT, token, 1,
                           extra_channel=extra["name"] if extra else None,
                           extra_context=ADOPT_CONTEXT if extra else None,
                           extra_exten=token if extra else None,
                           extra_priority=1 if extra else None)
    except AmiError as exc:
        raise TakeoverError(f"call not controllable now: {exc}") from None
