"""Third-party call control requests (issue 4); the work is in astcti/cti/control.py."""

from __future__ import annotations

from typing import Any

from astcti.api.services import Services
from astcti.api.session import Session
from astcti.api.protocol import CALLID_RE, NUMBER_RE, Field, RequestError, request
from astcti.api.requests.monitoring import EXTENSION
from astcti.cti.control import CallControl

CALLID = Field("callid", pattern=CALLID_RE, max_length=64, doc="the call's id (from events)",
               example="1732610000.12")
ACTIVE = Field("activecallid", pattern=CALLID_RE, max_length=64,
               doc="the extension's active (consultation) call")
HELD = Field("heldcallid", pattern=CALLID_RE, max_length=64, doc="the extension's held call")
DESTINATION = Field("destination", pattern=NUMBER_RE, max_length=64,
                    doc="number to call (an extension or anything the dialplan routes)",
                    example="102")
USERDATA = Field("userdata", type="object", required=False,
                 doc="JSON object attached to the new call (events carry it)")
GROUP = "call control"


def _control(services: Services, extension: str) -> CallControl:
    """The call control service (the dispatcher has checked the caller and the extension)."""
    if services.control is None:
        raise RequestError("call control is not available in this astcti", 503)
    return services.control



@request("makecall", EXTENSION, DESTINATION, USERDATA, group=GROUP,
         doc="Call `destination` from the extension: its phone is called first with auto-answer"
             " headers (Call-Info answer-after=0, Alert-Info info=alert-autoanswer,"
             " Answer-Mode, P-Auto-answer), then the destination with the extension's caller id."
             " Events: serviceinitiated, originated, delivered, established.",
         response={"callid": "the new call's id"},
         resource=("POST", "/api/v1/extensions/{extension}/calls"))
async def makecall(services: Services, session: Session, args: dict[str, Any]) -> dict[str, Any]:
    control = _control(services, args["extension"])
    callid = await control.makecall(args["extension"], args["destination"],
                                         args.get("userdata"))
    return {"callid": callid}


@request("answer", EXTENSION, CALLID, group=GROUP,
         doc="Answer a call alerting at the extension: astcti offers it again to the phone with"
             " auto-answer headers (see docs/call-control.md for phone settings).",
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/answer"))
async def answer(services: Services, session: Session, args: dict[str, Any]) -> None:
    await _control(services, args["extension"]).answer(args["extension"], args["callid"])


@request("hangup", EXTENSION, CALLID, group=GROUP,
         doc="Clear the extension's connection; a two-party call releases the other party too.",
         resource=("DELETE", "/api/v1/extensions/{extension}/calls/{callid}"))
async def hangup(services: Services, session: Session, args: dict[str, Any]) -> None:
    await _control(services, args["extension"]).hangup(args["extension"], args["callid"])


@request("hold", EXTENSION, CALLID, group=GROUP,
         doc="Hold the call: the other party hears music on hold, the extension silence."
             " Event: held.",
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/hold"))
async def hold(services: Services, session: Session, args: dict[str, Any]) -> None:
    await _control(services, args["extension"]).hold(args["extension"], args["callid"])


@request("retrieve", EXTENSION, CALLID, group=GROUP,
         doc="Take back a call the extension holds. Event: retrieved.",
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/retrieve"))
async def retrieve(services: Services, session: Session, args: dict[str, Any]) -> None:
    await _control(services, args["extension"]).retrieve(args["extension"],
                                                                args["callid"])


@request("consultation", EXTENSION, CALLID, DESTINATION, USERDATA, group=GROUP,
         doc="Hold the active call and call `destination` from the extension (its phone is"
             " called on a second line with auto-answer, like makecall).",
         response={"callid": "the consultation call's id"},
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/consultation"))
async def consultation(services: Services, session: Session,
                       args: dict[str, Any]) -> dict[str, Any]:
    control = _control(services, args["extension"])
    callid = await control.consultation(args["extension"], args["callid"],
                                             args["destination"], args.get("userdata"))
    return {"callid": callid}


@request("reconnect", EXTENSION, ACTIVE, HELD, group=GROUP,
         doc="Drop the consultation call and retrieve the held call.",
         resource=("POST", "/api/v1/extensions/{extension}/reconnect"))
async def reconnect(services: Services, session: Session, args: dict[str, Any]) -> None:
    await _control(services, args["extension"]).reconnect(
        args["extension"], args["activecallid"], args["heldcallid"])


@request("alternate", EXTENSION, ACTIVE, HELD, group=GROUP,
         doc="Hold the active call and retrieve the held one. Events: held, retrieved.",
         resource=("POST", "/api/v1/extensions/{extension}/alternate"))
async def alternate(services: Services, session: Session, args: dict[str, Any]) -> None:
    await _control(services, args["extension"]).alternate(
        args["extension"], args["activecallid"], args["heldcallid"])


def _two_forms(action: str) -> tuple[Field, ...]:
    """The fields of a request that works on two calls or, in a single step, on a destination."""
    return (
        Field("activecallid", pattern=CALLID_RE, max_length=64, required=False,
              doc="consultation call (with heldcallid)"),
        Field("heldcallid", pattern=CALLID_RE, max_length=64, required=False,
              doc="held call (with activecallid)"),
        Field("callid", pattern=CALLID_RE, max_length=64, required=False,
              doc=f"single-step: the call to {action} (with destination)"),
        Field("destination", pattern=NUMBER_RE, max_length=64, required=False,
              doc="single-step: the other party"),
    )


async def _either_form(args: dict[str, Any], two_calls, single_step) -> None:
    """Run the two-call form or the single-step form, whichever the fields name."""
    ext = args["extension"]
    if "activecallid" in args and "heldcallid" in args:
        await two_calls(ext, args["activecallid"], args["heldcallid"])
    elif "callid" in args and "destination" in args:
        await single_step(ext, args["callid"], args["destination"])
    else:
        raise RequestError("missing fields: give activecallid and heldcallid, or callid and"
                           " destination", 400)


@request("transfer", EXTENSION, *_two_forms("transfer"), group=GROUP,
         doc="Join the held call's party with the consulted party and release the extension"
             " (activecallid + heldcallid), or send the call to `destination` in a single step"
             " (callid + destination). Event: transferred (to every monitor of the parties).",
         resource=("POST", "/api/v1/extensions/{extension}/transfer"))
async def transfer(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await _either_form(args, control.transfer, control.transfer_blind)


@request("conference", EXTENSION, *_two_forms("add a party to"), group=GROUP,
         doc="All parties talk: the consulted party joins the held call and the extension"
             " returns to it (activecallid + heldcallid), or `destination` is dialled into the"
             " call (callid + destination). Event: conferenced.",
         resource=("POST", "/api/v1/extensions/{extension}/conference"))
async def conference(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await _either_form(args, control.conference, control.conference_add)


@request("dtmf", EXTENSION, CALLID,
         Field("digits", max_length=64, doc="0-9 * # A-D; `,` or `w` pauses half a second",
               example="123#"),
         group=GROUP,
         doc="Send DTMF digits to the far party of the extension's active call (RFC 4733 or"
             " SIP INFO, as its endpoint is configured).",
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/dtmf"))
async def dtmf(services: Services, session: Session, args: dict[str, Any]) -> None:
    await _control(services, args["extension"]).dtmf(args["extension"], args["callid"],
                                                           args["digits"])
