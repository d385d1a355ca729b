"""acdlogin, acdlogout, acdsetstate, acdgetstate: ACD agents on Asterisk queues (issue 5)."""

from __future__ import annotations

from typing import Any

from astcti.api.services import Services
from astcti.api.session import Session
from astcti.api.protocol import Field, RequestError, request
from astcti.api.authz import MONITOR
from astcti.api.requests.monitoring import EXTENSION
from astcti.cti.acd import STATE_WORDS, AcdError, AcdService, parse_groups

AGENTID = Field("agentid", pattern=r"^[0-9A-Za-z_.-]{1,32}$", max_length=32,
                doc="agent identifier (one extension per agent at a time)", example="7001")
GROUPS = Field("groups", required=False, max_length=512, pattern=r"^[A-Za-z0-9_.,\s-]+$",
               doc="comma list of queues; default: parameter `acti_agentgroups_<agentid>`,"
                   " else `acti_agentgroups`", example="support")
AGENT_VIEW = {"agentid": "the agent", "groups": "its queues", "state": "ready, notready or acw",
              "reasoncode": "reason when notready", "since": "when the state began",
              "acwuntil": "when after-call work ends (empty: not in acw)"}


def _acd(services: Services) -> AcdService:
    acd = services.acd
    if acd is None:
        raise RequestError("ACD is not available in this astcti", 503)
    return acd



@request("acdlogin", EXTENSION, AGENTID,
         Field("password", required=False, max_length=128,
               doc="accepted for seed compatibility; the connection's login is what authorises"),
         GROUPS,
         doc="Log an agent in on the extension: it joins the queues as a dynamic member whose"
             " state follows the extension (FreePBX: `Local/<ext>@from-queue/n` with state"
             " interface `hint:<ext>@ext-local`), ready or not ready per parameter"
             " `acti_loginstate`. Events: `agentloggedon`, then `agentready` or `agentnotready`.",
         group="acd", response=AGENT_VIEW,
         resource=("POST", "/api/v1/extensions/{extension}/agent"))
async def acdlogin(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    groups = _groups(args)
    agent = await _acd(services).login(args["extension"], args["agentid"], groups)
    return agent.view()


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
    groups = _groups(args)
    agent = await _acd(services).logout(args["extension"], args["agentid"], groups)
    return agent.view()


@request("acdsetstate", EXTENSION, AGENTID,
         Field("state", max_length=16, choices=tuple(STATE_WORDS),
               doc="ready, notready or acw (after-call work); the seed's auto/manual (ready)"
                   " and aux (notready) are accepted", example="notready"),
         Field("reasoncode", required=False, max_length=32,
               doc="why notready (a word or number, e.g. lunch or 2); limited to parameter"
                   " `acti_reasoncodes` when set", example="lunch"),
         doc="Change the agent's state in all its queues: notready pauses the member with the"
             " reason; acw pauses it until `acti_acwtimeout` seconds pass or a ready request."
             " Events: `agentready`, `agentnotready`, `agentworknotready`.",
         group="acd", response=AGENT_VIEW,
         resource=("PUT", "/api/v1/extensions/{extension}/agent/state"))
async def acdsetstate(services: Services, session: Session,
                      args: dict[str, Any]) -> dict[str, Any]:
    agent = await _acd(services).set_state(args["extension"], args["agentid"],
                                                args["state"], args.get("reasoncode", ""))
    return agent.view()


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
