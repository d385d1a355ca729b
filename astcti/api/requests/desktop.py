"""directory, queuestats, desktopsettings: what agent desktops and wallboards read (issue 18)."""

from __future__ import annotations

from typing import Any

from astcti.api.services import Services
from astcti.api.session import Session
from astcti.api.authz import SESSION, SUPERVISE
from astcti.api.protocol import Field, RequestError, request
from astcti.cti.events import EXTENSIONS_TOPIC, QUEUES_TOPIC
from astcti.cti.presence import PresenceService
from astcti.cti.queuestats import QueueStatsService

MONITOR = Field("monitor", type="boolean", required=False,
                doc="true: keep sending this connection the changes as events; false: stop",
                example=True)


def _presence(services: Services) -> PresenceService:
    presence = services.presence
    if presence is None:
        raise RequestError("extension states are not available in this astcti", 503)
    return presence


def _stats(services: Services) -> QueueStatsService:
    stats = services.queuestats
    if stats is None:
        raise RequestError("queue statistics are not available in this astcti", 503)
    return stats


def _watch(services: Services, session: Session, topic: str, monitor: bool | None) -> None:
    if monitor is True:
        services.hub.attach(session, topic)  # already attached: nothing to do
    elif monitor is False:
        services.hub.detach(session, topic)


@request("directory", MONITOR,
         doc="Every configured extension with its line state: `idle`, `ringing`, `busy`,"
             " `onhold`, `away` (idle, agent not ready or in after-call work) or"
             " `unavailable`, from Asterisk's device states, and the agent logged in on it."
             " With `monitor` true the connection then receives `extensionstate` events (what a"
             " desktop's transfer directory shows).",
         group="desktop", access=SESSION,
         response={"extensions": "list of {extension, state, devicestate, agentid,"
                                 " agentstate}"},
         resource=("GET", "/api/v1/directory"))
async def directory(services: Services, session: Session, args: dict[str, Any]
                    ) -> dict[str, Any]:
    presence = _presence(services)
    _watch(services, session, EXTENSIONS_TOPIC, args.get("monitor"))
    return {"extensions": presence.views()}


@request("queuestats",
         Field("queue", required=False, pattern=r"^[A-Za-z0-9_.-]{1,64}$", max_length=64,
               doc="one queue (default: every queue astcti knows)", example="support"),
         MONITOR,
         doc="Live queue figures and the agents' lines (role supervisor or admin): per queue"
             " the callers waiting, agents by state and today's answered/abandoned/service"
             " level, as in the `queuestatus` event; per agent its state, since when, current"
             " call and queue calls handled today, as in `agentstatus`. With `monitor` true"
             " the connection then receives `queuestatus` and `agentstatus` events for every"
             " queue as they change (a wallboard needs no polling). The service level's"
             " threshold is parameter `acti_servicelevel` (seconds, default 20).",
         group="desktop", access=SUPERVISE,
         response={"queues": "list of queue figures (fields of `queuestatus`)",
                   "agents": "list of agent lines (fields of `agentstatus`)",
                   "servicelevelseconds": "the service level threshold"},
         resource=("GET", "/api/v1/queues"))
async def queuestats(services: Services, session: Session, args: dict[str, Any]
                     ) -> dict[str, Any]:
    stats = _stats(services)
    _watch(services, session, QUEUES_TOPIC, args.get("monitor"))
    return stats.snapshot(args.get("queue"))


#: Parameters a desktop reads: (parameter, response key, default).
DESKTOP_PARAMETERS = (
    ("acti_screenpop_url", "screenpopurl", ""),
    ("acti_screenpop_mode", "screenpopmode", "tab"),
    ("acti_reasoncodes", "reasoncodes", ""),
    ("acti_acwtimeout", "acwtimeout", "30"),
    ("acti_servicelevel", "servicelevelseconds", "20"),
)


@request("desktopsettings",
         doc="What an agent desktop needs from the configuration: `screenpopurl` (parameter"
             " `acti_screenpop_url`, placeholders `{calling}`, `{callingname}`, `{called}`,"
             " `{callid}`, `{extension}`, `{queue}`, `{agentid}` and `{userdata.KEY}`),"
             " `screenpopmode` (`tab` or `iframe`, parameter `acti_screenpop_mode`),"
             " `reasoncodes` (list, parameter `acti_reasoncodes`; empty: any word),"
             " `acwtimeout` and `servicelevelseconds`, and the user's `role`.",
         group="desktop", access=SESSION,
         response={"screenpopurl": "URL template or empty", "screenpopmode": "tab or iframe",
                   "reasoncodes": "list of not-ready reason codes",
                   "acwtimeout": "seconds of after-call work (0: until ready)",
                   "servicelevelseconds": "service level threshold", "role": "the user's role",
                   "user": "the user name"},
         resource=("GET", "/api/v1/desktop"))
async def desktopsettings(services: Services, session: Session, args: dict[str, Any]
                          ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key, default in DESKTOP_PARAMETERS:
        out[key] = services.store.get_parameter(name, default) or default
    out["reasoncodes"] = [r.strip() for r in str(out["reasoncodes"]).split(",") if r.strip()]
    out["acwtimeout"] = int(out["acwtimeout"]) if str(out["acwtimeout"]).isdigit() else 30
    level = str(out["servicelevelseconds"])
    out["servicelevelseconds"] = int(level) if level.isdigit() else 20
    if out["screenpopmode"] not in ("tab", "iframe"):
        out["screenpopmode"] = "tab"
    identity = session.identity
    out["role"] = identity.role if identity else ""
    out["user"] = identity.username if identity else ""
    return out
