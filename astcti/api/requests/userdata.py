"""userdata: read or merge the user data of a call (issue 5)."""

from __future__ import annotations

from typing import Any

from astcti.api.services import Services
from astcti.api.session import Session
from astcti.api.protocol import CALLID_RE, Field, RequestError, request
from astcti.api.authz import CONTROL, MONITOR
from astcti.api.requests.monitoring import EXTENSION
from astcti.cti.userdata import (
    MAX_KEYS, MAX_TOTAL_BYTES, UserDataError, UserDataService,
)


@request("userdata", EXTENSION,
         Field("callid", pattern=CALLID_RE, max_length=64,
               doc="the call (its `callid` in events) the extension takes part in",
               example="1795706253.6"),
         Field("data", type="object", required=False,
               doc=f"flat object of string keys and string/number values merged into the"
                   f" call's data (at most {MAX_KEYS} keys, {MAX_TOTAL_BYTES} bytes); omit it"
                   " to read", example={"account": "4711"}),
         doc="Read or merge the call's user data. It travels with the call (queue, transfer,"
             " conference) and arrives with `delivered` and `connectioncleared` at every"
             " monitor; data the dialplan set in `ASTCTI_USERDATA` (a JSON object) is"
             " included.",
         group="userdata", response={"userdata": "the call's user data after the request"},
         access=lambda args: CONTROL if "data" in args else MONITOR,
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/userdata"))
async def userdata(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    ext, callid = args["extension"], args["callid"]
    service: UserDataService | None = services.userdata
    if service is None:
        raise RequestError("user data is not available in this astcti", 503)
    call = services.tracker.calls.get(callid)
    if call is None or ext not in call.extensions:
        raise RequestError(f"invalid call id: extension {ext} has no call {callid}", 404)
    if "data" not in args:
        conn = services.tracker.find(ext, callid)
        base = dict(conn.userdata) if conn is not None else {}
        return {"userdata": {**base, **service.get(callid)}}
    try:
        return {"userdata": service.merge(callid, args["data"])}
    except UserDataError as exc:
        raise RequestError(str(exc)) from None
