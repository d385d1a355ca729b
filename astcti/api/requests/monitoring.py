"""login, logout, startmonitor, stopmonitor, snapshot, resume."""

from __future__ import annotations

from typing import Any

from astcti.api.authz import CONTROL, MONITOR, SESSION
from astcti.api.protocol import EXTENSION_RE, NOT_LOGGED_IN, Field, RequestError, request
from astcti.api.services import Services
from astcti.api.session import Session

EXTENSION = Field("extension", pattern=EXTENSION_RE, max_length=32, doc="extension number",
                  example="101")


def served_extension(services: Services, number: str) -> None:
    """Fail unless the extension is configured and a connected Asterisk serves it (what the
    dispatcher checks for every request's `extension`; the ACD forms of login/logout, which
    are served without a PBX, call it themselves)."""
    directory = services.directory
    link = directory.link_of(number)
    if link is None or not link.up:
        raise RequestError(directory.why_unserved(number),
                           404 if number not in directory.extensions else 409)



@request("login",
         Field("username", required=False, max_length=64, doc="user of astcti-shell `add user`"),
         Field("password", required=False, max_length=256, doc="its password"),
         Field("token", required=False, max_length=128, doc="a token from an earlier login"),
         Field("extension", pattern=EXTENSION_RE, max_length=32, required=False,
               doc="ACD login (the astCTI author's form, with agentid): the agent's extension;"
                   " omitted: the one the client sits at (`myextension`)"),
         Field("agentid", pattern=r"^[0-9A-Za-z_.-]{1,32}$", max_length=32, required=False,
               doc="ACD login: the agent; with it, `login` is `acdlogin`", example="7001"),
         Field("passwd", required=False, max_length=128,
               doc="ACD login: the agent's password, checked when it has one (astcti-shell"
                   " `passwd agent`)"),
         doc="Authenticate the connection (username + password, or a token). Every other"
             " request needs it, unless the listener is `auth=none`. With `agentid` it is the"
             " astCTI author's ACD login instead: `acdlogin` of the agent on `extension`"
             " (the connection must be logged in, or on an `auth=none` listener).",
         login=False, group="session", served=False,
         access=lambda args: CONTROL if "agentid" in args else SESSION,
         response={"token": "reuse it to log in again", "user": "the user name",
                   "role": "agent, supervisor or admin",
                   "extensions": "the extensions the user may act on (agent, supervisor)",
                   "agentid": "ACD login: the agent, with groups, state... as acdlogin"},
         resource=("POST", "/api/v1/login"))
async def login(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    if "agentid" in args:
        if session.identity is None:
            raise RequestError(NOT_LOGGED_IN, 401)
        from astcti.api.requests.acd import acd_login

        return await acd_login(services, session, _extension(services, session, args),
                               args["agentid"], args.get("passwd"), None)
    identity = await services.auth.login(session.peer, args.get("username"),
                                         args.get("password"), args.get("token"))
    session.identity = identity
    if args.get("token"):
        session.tokens.add(args["token"])
    token = services.auth.issue_token(identity)
    session.tokens.add(token)
    return {"token": token, "user": identity.username, "role": identity.role,
            "extensions": sorted(identity.extensions)}


@request("logout",
         Field("extension", pattern=EXTENSION_RE, max_length=32, required=False,
               doc="ACD logout (the astCTI author's form, with agentid): the agent's extension;"
                   " omitted: the one the client sits at"),
         Field("agentid", pattern=r"^[0-9A-Za-z_.-]{1,32}$", max_length=32, required=False,
               doc="ACD logout: the agent; with it, `logout` is `acdlogout`"),
         doc="End the session's monitors and forget its login: the tokens this connection"
             " used or was given stop working on every transport; with `agentid` (the astCTI"
             " author's form) log the agent out of its queues instead (`acdlogout`).",
         group="session", served=False,
         access=lambda args: CONTROL if "agentid" in args else SESSION)
async def logout(services: Services, session: Session, args: dict[str, Any]) -> dict | None:
    if "agentid" in args:
        from astcti.api.requests.acd import acd_logout

        return await acd_logout(services, _extension(services, session, args), args["agentid"],
                                None)
    services.hub.detach_all(session)
    for token in session.tokens:
        services.auth.revoke(token)
    session.tokens.clear()
    # a client known by its address (auth=none) cannot log in again: it stays known by it
    if session.identity is not None and not session.identity.address:
        session.identity = None
    return None


def _extension(services: Services, session: Session, args: dict[str, Any]) -> str:
    """The request's extension, else the one the client sits at (its address's)."""
    return args.get("extension") or _seat(services, session)


def _seat(services: Services, session: Session) -> str:
    seating = services.seating
    extension = seating.extension_of(session.peer) if seating is not None else None
    if extension is None:
        raise RequestError(f"no extension for address {session.peer}: an administrator seats"
                           f" it with astcti-shell `add ipextnmap {session.peer} EXT`", 404)
    return extension


@request("myextension",
         doc="The extension the client sits at, found from its address (free seating: the"
             " astCTI console's `add ipextnmap ADDRESS EXT`).",
         group="session", access=SESSION, response={"extension": "the client's extension"})
async def myextension(services: Services, session: Session,
                      args: dict[str, Any]) -> dict[str, Any]:
    return {"extension": _seat(services, session)}


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
                   "numcall": "how many calls the extension has",
                   "seq": "sequence number of the extension's latest event"},
         resource=("GET", "/api/v1/extensions/{extension}/calls"))
async def snapshot(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    ext = args["extension"]
    calls = services.tracker.snapshot(ext)
    return {"calls": calls, "numcall": len(calls), "seq": services.hub.last_seq(ext)}


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
