"""userdata: read or merge the user data of a call (issue 5)."""

from __future__ import annotations

from typing import Any

from astcti.api.services import Services
from astcti.api.session import Session
from astcti.api.protocol import CALLID_RE, Field, RequestError, request
from astcti.api.authz import CONTROL, MONITOR
from astcti.api.requests.control import current_call
from astcti.api.requests.monitoring import EXTENSION
from astcti.cti.userdata import (
    MAX_KEYS, MAX_TOTAL_BYTES, UserDataError, UserDataService,
)


@request("userdata", EXTENSION,
         Field("callid", pattern=CALLID_RE, max_length=64, required=False,
               doc="the call (its `callid` in events) the extension takes part in; omitted:"
                   " its current call (active, else being set up, else ringing)",
               example="1795706253.6"),
         Field("type", required=False, max_length=16, choices=("alert",),
               doc="`alert` (the astCTI author's form): answer the call's `cli` (calling"
                   " number), `calling` and `called` too"),
         Field("data", type="object", required=False,
               doc=f"flat object of string keys and string/number values merged into the"
                   f" call's data (at most {MAX_KEYS} keys, {MAX_TOTAL_BYTES} bytes); omit it"
                   " to read", example={"account": "4711"}),
         doc="Read or merge the call's user data. It travels with the call (queue, transfer,"
             " conference) and arrives with `delivered` and `connectioncleared` at every"
             " monitor; data the dialplan set in `ASTCTI_USERDATA` (a JSON object) is"
             " included.",
         group="userdata", response={"userdata": "the call's user data after the request",
                                     "cli, calling, called": "with type alert: the calling"
                                                             " number (twice) and the called"},
         access=lambda args: CONTROL if "data" in args else MONITOR,
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/userdata"))
async def userdata(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    ext = args["extension"]
    callid = args.get("callid") or current_call(services, ext, "any")
    service: UserDataService | None = services.userdata
    if service is None:
        raise RequestError("user data is not available in this astcti", 503)
    call = services.tracker.calls.get(callid)
    if call is None or ext not in call.extensions:
        raise RequestError(f"invalid call id: extension {ext} has no call {callid}", 404)
    conn = services.tracker.find(ext, callid)
    if "data" not in args:
        base = dict(conn.userdata) if conn is not None else {}
        out: dict[str, Any] = {"userdata": {**base, **service.get(callid)}}
    else:
        try:
            out = {"userdata": service.merge(callid, args["data"])}
        except UserDataError as exc:
            raise RequestError(str(exc)) from None
    if args.get("type") == "alert":
        calling = conn.calling if conn is not None else ""
        out.update(cli=calling, calling=calling, called=conn.called if conn is not None else "")
    return out
