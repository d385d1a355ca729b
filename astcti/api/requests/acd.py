"""ACD agents on Asterisk queues: acdlogin, acdlogout, acdsetstate, acdgetstate, and the astCTI
author's words for the same (setstate, queryagentstate, querydeviceinfo; login/logout with
agentid are in monitoring.py and land here)."""

from __future__ import annotations

from typing import Any

from astcti.api.services import Services
from astcti.api.session import Session
from astcti.api.protocol import Field, RequestError, request
from astcti.api.authz import MONITOR
from astcti.api.requests.monitoring import EXTENSION, served_extension
from astcti.cti.acd import (
    ACW, AUTO_IN, NOTREADY, READY, STATE_WORDS, AcdError, AcdService, parse_groups,
)

AGENTID = Field("agentid", pattern=r"^[0-9A-Za-z_.-]{1,32}$", max_length=32,
                doc="agent identifier (one extension per agent at a time)", example="7001")
GROUPS = Field("groups", required=False, max_length=512, pattern=r"^[A-Za-z0-9_.,\s-]+$",
               doc="comma list of queues; default: parameter `acti_agentgroups_<agentid>`,"
                   " else `acti_agentgroups`", example="support")
REASONCODE = Field("reasoncode", required=False, max_length=32,
                   doc="why notready/aux (a word or number, e.g. lunch or 2; \"0\": none);"
                       " limited to parameter `acti_reasoncodes` when set", example="3")
AGENT_VIEW = {"agentid": "the agent", "groups": "its queues", "state": "ready, notready or acw",
              "reasoncode": "reason when notready", "since": "when the state began",
              "acwuntil": "when after-call work ends (empty: not in acw)"}


def _acd(services: Services) -> AcdService:
    acd = services.acd
    if acd is None:
        raise RequestError("ACD is not available in this astcti", 503)
    return acd



async def acd_login(services: Services, session: Session, extension: str, agentid: str,
                    password: str | None, groups: list[str] | None) -> dict[str, Any]:
    """acdlogin, and `login` with agentid: the agent's password first (when it has one).
    (`login` is served without a PBX, so its ACD form checks the extension here.)"""
    served_extension(services, extension)
    acd = _acd(services)
    await services.auth.check_agent_password(session.peer, agentid, password)
    return (await acd.login(extension, agentid, groups)).view()


async def acd_logout(services: Services, extension: str, agentid: str,
                     groups: list[str] | None) -> dict[str, Any]:
    served_extension(services, extension)
    return (await _acd(services).logout(extension, agentid, groups)).view()


@request("acdlogin", EXTENSION, AGENTID,
         Field("password", required=False, max_length=128,
               doc="the agent's password: checked when the agent has one (astcti-shell `passwd"
                   " agent`)"),
         GROUPS,
         doc="Log an agent in on the extension: it joins the queues as a dynamic member whose"
             " state follows the extension (FreePBX: `Local/<ext>@from-queue/n` with state"
             " interface `hint:<ext>@ext-local`), ready or not ready per parameter"
             " `acti_loginstate`. Events: `agentloggedon`, then `agentready` or `agentnotready`.",
         group="acd", response=AGENT_VIEW,
         resource=("POST", "/api/v1/extensions/{extension}/agent"))
async def acdlogin(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    return await acd_login(services, session, args["extension"], args["agentid"],
                           args.get("password"), _groups(args))


def _groups(args: dict[str, Any]) -> list[str] | None:
    text = args.get("groups")
    if text is None:
        return None
    groups = parse_groups(text)
    if not groups:
        raise AcdError("bad field groups: name at least one queue", 400)
    return groups


@request("acdlogout", EXTENSION, AGENTID, GROUPS,
         doc="The agent leaves its queues (or only `groups`). Event: `agentloggedoff`.",
         group="acd", response=AGENT_VIEW,
         resource=("DELETE", "/api/v1/extensions/{extension}/agent"))
async def acdlogout(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    return await acd_logout(services, args["extension"], args["agentid"], _groups(args))


@request("acdsetstate", EXTENSION, AGENTID,
         Field("state", max_length=16, choices=tuple(STATE_WORDS),
               doc="ready, notready or acw (after-call work); the seed's auto/manual (ready)"
                   " and aux (notready) are accepted", example="notready"),
         REASONCODE,
         Field("password", required=False, max_length=128,
               doc="the agent's password: checked when the agent has one"),
         doc="Change the agent's state in all its queues: notready pauses the member with the"
             " reason; acw pauses it until `acti_acwtimeout` seconds pass or a ready request."
             " Events: `agentready`, `agentnotready`, `agentworknotready`.",
         group="acd", response=AGENT_VIEW,
         resource=("PUT", "/api/v1/extensions/{extension}/agent/state"))
async def acdsetstate(services: Services, session: Session,
                      args: dict[str, Any]) -> dict[str, Any]:
    return await _set_state(services, session, args, args.get("password"))


async def _set_state(services: Services, session: Session, args: dict[str, Any],
                     password: str | None) -> dict[str, Any]:
    acd = _acd(services)
    await services.auth.check_agent_password(session.peer, args["agentid"], password)
    reason = args.get("reasoncode", "")
    if reason == "0":  # the author's clients: aux with reason 0 is "no reason"
        reason = ""
    agent = await acd.set_state(args["extension"], args["agentid"], args["state"], reason)
    return agent.view()


@request("setstate", EXTENSION, AGENTID,
         Field("passwd", required=False, max_length=128,
               doc="the agent's password: checked when the agent has one"),
         Field("state", max_length=16, choices=tuple(STATE_WORDS),
               doc="auto (ready, auto-in), manual (ready, manual-in: after-call work follows"
                   " each queue call), acw (after-call work), aux (not ready, with reasoncode);"
                   " astcti's ready/notready too", example="aux"),
         REASONCODE,
         doc="The astCTI author's `acdsetstate`: change the agent's state in all its queues."
             " Events: `agentready`, `agentnotready`, `agentworknotready`.",
         group="acd", response=AGENT_VIEW)
async def setstate(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    return await _set_state(services, session, args, args.get("passwd"))


#: acd state -> the author's skill mode (a ready agent: its auto/manual mode)
SKILLMODES = {NOTREADY: "aux", ACW: "acw"}


@request("queryagentstate", EXTENSION,
         doc="The agent state at the extension in the astCTI author's words.",
         group="acd", access=MONITOR, response={"skillmode": "\"null\" (no agent logged in), auto, manual, acw"
                                             " or aux",
                                "reasoncode": "why aux, a number as a string (\"0\": none)",
                                "talkstate": "idle or call (the extension has a call)",
                                "agentid": "the agent logged in (empty: none)"})
async def queryagentstate(services: Services, session: Session,
                          args: dict[str, Any]) -> dict[str, Any]:
    ext = args["extension"]
    acd = services.acd
    agent = acd.agent(ext) if acd is not None else None
    talking = bool(services.tracker.connections_of(ext))
    out = {"talkstate": "call" if talking else "idle", "agentid": "", "skillmode": "null",
           "reasoncode": "0"}
    if agent is not None:
        out["agentid"] = agent.agentid
        out["skillmode"] = (agent.mode or AUTO_IN) if agent.state == READY else \
            SKILLMODES.get(agent.state, "aux")
        if agent.state == NOTREADY and agent.reason:
            out["reasoncode"] = agent.reason
    return out


@request("querydeviceinfo", EXTENSION,
         doc="The device at the extension (astCTI author's word): the agent logged in there.",
         group="acd", access=MONITOR, response={"associateddevice": "the agent id logged in at the extension"
                                                    " (empty: none)"})
async def querydeviceinfo(services: Services, session: Session,
                          args: dict[str, Any]) -> dict[str, Any]:
    ext = args["extension"]
    acd = services.acd
    agent = acd.agent(ext) if acd is not None else None
    return {"associateddevice": agent.agentid if agent is not None else ""}


@request("acdgetstate", EXTENSION,
         doc="The agent logged in on the extension and its state (as last read from the"
             " queues).", access=MONITOR, served=False,
         group="acd", response=AGENT_VIEW,
         resource=("GET", "/api/v1/extensions/{extension}/agent"))
async def acdgetstate(services: Services, session: Session,
                      args: dict[str, Any]) -> dict[str, Any]:
    agent = _acd(services).agent(args["extension"])
    if agent is None:
        raise RequestError(f"no agent is logged in on extension {args['extension']}", 404)
    return agent.view()
