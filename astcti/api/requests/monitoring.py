"""login, logout, startmonitor, stopmonitor, snapshot, resume."""

from __future__ import annotations

from typing import Any

from astcti.api.services import Services
from astcti.api.session import Session
from astcti.api.authz import MONITOR, SESSION
from astcti.api.protocol import EXTENSION_RE, Field, RequestError, request

EXTENSION = Field("extension", pattern=EXTENSION_RE, max_length=32, doc="extension number",
                  example="101")



@request("login",
         Field("username", required=False, max_length=64, doc="user of astcti-shell `add user`"),
         Field("password", required=False, max_length=256, doc="its password"),
         Field("token", required=False, max_length=128, doc="a token from an earlier login"),
         doc="Authenticate the connection (username + password, or a token). Every other"
             " request needs it, unless the listener is `auth=none`.",
         login=False, group="session", access=SESSION,
         response={"token": "reuse it to log in again", "user": "the user name",
                   "role": "agent, supervisor or admin",
                   "extensions": "the extensions the user may act on (agent, supervisor)"},
         resource=("POST", "/api/v1/login"))
async def login(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    identity = await services.auth.login(session.peer, args.get("username"),
                                         args.get("password"), args.get("token"))
    session.identity = identity
    if args.get("token"):
        session.tokens.add(args["token"])
    token = services.auth.issue_token(identity)
    session.tokens.add(token)
    return {"token": token, "user": identity.username, "role": identity.role,
            "extensions": sorted(identity.extensions)}


@request("logout", doc="End the session's monitors and forget its login; the tokens this"
                         " connection used or was given stop working on every transport.",
         group="session", access=SESSION)
async def logout(services: Services, session: Session, args: dict[str, Any]) -> None:
    services.hub.detach_all(session)
    for token in session.tokens:
        services.auth.revoke(token)
    session.tokens.clear()
    session.identity = None


@request("startmonitor", EXTENSION,
         doc="Receive the events of an extension's calls on this connection.", access=MONITOR,
         response={"seq": "sequence number of the extension's latest event (for resume)"},
         resource=("POST", "/api/v1/extensions/{extension}/monitor"))
async def startmonitor(services: Services, session: Session,
                       args: dict[str, Any]) -> dict[str, Any]:
    ext = args["extension"]
    if not services.hub.attach(session, ext):
        raise RequestError(f"extension {ext} is already monitored by this connection", 409)
    return {"seq": services.hub.last_seq(ext)}


@request("stopmonitor", EXTENSION, doc="Stop receiving the extension's events.",
         access=SESSION, served=False,
         resource=("DELETE", "/api/v1/extensions/{extension}/monitor"))
async def stopmonitor(services: Services, session: Session, args: dict[str, Any]) -> None:
    ext = args["extension"]
    if not services.hub.detach(session, ext):
        raise RequestError(f"extension {ext} is not monitored by this connection", 409)


@request("snapshot", EXTENSION,
         doc="The extension's current calls and their states.", access=MONITOR,
         response={"calls": "list of {callid, state, direction, calling, callingname, called,"
                            " since, lastredirection, userdata}",
                   "seq": "sequence number of the extension's latest event"},
         resource=("GET", "/api/v1/extensions/{extension}/calls"))
async def snapshot(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    ext = args["extension"]
    return {"calls": services.tracker.snapshot(ext), "seq": services.hub.last_seq(ext)}


@request("resume", EXTENSION,
         Field("lastseq", type="integer", minimum=0, doc="seq of the last event the client saw"),
         access=MONITOR,
         doc="Monitor again after a reconnect and receive exactly the events missed since"
             " `lastseq`; if they are no longer buffered, `resync` is true and `calls` holds a"
             " snapshot instead.",
         response={"resync": "true when missed events were lost: use `calls`",
                   "calls": "snapshot when resync is true", "seq": "latest seq"})
async def resume(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    ext = args["extension"]
    missed = services.hub.missed(ext, args["lastseq"])
    services.hub.attach(session, ext)
    if missed is None:
        return {"resync": True, "calls": services.tracker.snapshot(ext),
                "seq": services.hub.last_seq(ext)}
    if missed:
        session.deliver_many(missed)
    return {"resync": False, "replayed": len(missed), "seq": services.hub.last_seq(ext)}
