"""Third-party call control requests; the work is in astcti/cti/control/ (services.py)."""

from __future__ import annotations

from typing import Any

from astcti.api.services import Services
from astcti.api.session import Session
from astcti.api.protocol import CALLID_RE, NUMBER_RE, Field, RequestError, request
from astcti.api.requests.monitoring import EXTENSION
from astcti.cti.control import CallControl
from astcti.cti.model import Connection, ConnectionState, Direction


def _callid(which: str) -> Field:
    """`callid`, optional: the astCTI author's clients name only the extension."""
    return Field("callid", pattern=CALLID_RE, max_length=64, required=False,
                 doc=f"the call's id (from events); omitted: the extension's {which} call",
                 example="1732610000.12")


ACTIVE = Field("activecallid", pattern=CALLID_RE, max_length=64, required=False,
               doc="the extension's active (consultation) call; omitted: the one it talks on")
HELD = Field("heldcallid", pattern=CALLID_RE, max_length=64, required=False,
             doc="the extension's held call; omitted: the one it holds")
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


# -- the extension's current call (requests that name only the extension) ----------------------
def _newest(conns: list[Connection]) -> Connection | None:
    return max(conns, key=lambda c: c.since) if conns else None


def current_call(services: Services, extension: str, which: str) -> str:
    """The callid of the extension's `which` call: `alerting` (the one ringing longest),
    `active` (the one it talks on), `held`, or `any` (active, else one being set up, else one
    ringing). RequestError with today's words when there is none."""
    conns = services.tracker.connections_of(extension)
    alerting = [c for c in conns if c.direction is Direction.INCOMING and
                c.state is ConnectionState.ALERTING]
    active = [c for c in conns if c.state is ConnectionState.CONNECTED]
    if which == "alerting":
        found = min(alerting, key=lambda c: c.since) if alerting else None
        words = "no alerting call"
    elif which == "held":
        found = _newest([c for c in conns if c.state is ConnectionState.HELD])
        words = "no held call"
    elif which == "active":
        found, words = _newest(active), "no active call"
    else:
        setting_up = [c for c in conns if c.direction is Direction.OUTGOING and c.state in (
            ConnectionState.INITIATED, ConnectionState.ALERTING)]
        found = _newest(active) or _newest(setting_up) or _newest(alerting)
        words = "no active call"
    if found is None:
        raise RequestError(words, 409)
    return found.callid


def _call(services: Services, args: dict[str, Any], which: str) -> str:
    return args.get("callid") or current_call(services, args["extension"], which)


def _pair(services: Services, args: dict[str, Any]) -> tuple[str, str]:
    """(active, held) callids: as given, or the extension's own."""
    ext = args["extension"]
    return (args.get("activecallid") or current_call(services, ext, "active"),
            args.get("heldcallid") or current_call(services, ext, "held"))



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


@request("answer", EXTENSION, _callid("ringing"), group=GROUP,
         doc="Answer a call alerting at the extension: as its phone allows (astcti-shell `set"
             " extension NUM answer talk|reoffer|none`): a SIP NOTIFY Event: talk takes it"
             " off-hook, or the call is offered again with auto-answer headers; a phone answered"
             " by hand gets `answer not supported by this phone: ...` and keeps ringing"
             " (docs/call-control.md).",
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/answer"))
async def answer(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await control.answer(args["extension"], _call(services, args, "alerting"))


@request("hangup", EXTENSION, _callid("active (else its outgoing, else its ringing)"),
         group=GROUP,
         doc="Clear the extension's connection; a two-party call releases the other party too.",
         resource=("DELETE", "/api/v1/extensions/{extension}/calls/{callid}"))
async def hangup(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await control.hangup(args["extension"], _call(services, args, "any"))


@request("hold", EXTENSION, _callid("active"), group=GROUP,
         doc="Hold the call: the other party hears music on hold, the extension silence."
             " Event: held.",
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/hold"))
async def hold(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await control.hold(args["extension"], _call(services, args, "active"))


@request("retrieve", EXTENSION, _callid("held"), group=GROUP,
         doc="Take back a call the extension holds. Event: retrieved.",
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/retrieve"))
async def retrieve(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await control.retrieve(args["extension"], _call(services, args, "held"))


@request("consultation", EXTENSION, _callid("active"), DESTINATION, USERDATA, group=GROUP,
         doc="Hold the active call and call `destination` from the extension on the same phone"
             " call (the phone gets no second call): a new call with its own callid, starting with"
             " the held call's user data.",
         response={"callid": "the consultation call's id"},
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/consultation"))
async def consultation(services: Services, session: Session,
                       args: dict[str, Any]) -> dict[str, Any]:
    control = _control(services, args["extension"])
    callid = await control.consultation(args["extension"], _call(services, args, "active"),
                                        args["destination"], args.get("userdata"))
    return {"callid": callid}


@request("reconnect", EXTENSION, ACTIVE, HELD, group=GROUP,
         doc="Drop the consultation call and retrieve the held call.",
         resource=("POST", "/api/v1/extensions/{extension}/reconnect"))
async def reconnect(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await control.reconnect(args["extension"], *_pair(services, args))


@request("alternate", EXTENSION, ACTIVE, HELD, group=GROUP,
         doc="Hold the active call and retrieve the held one. Events: held, retrieved.",
         resource=("POST", "/api/v1/extensions/{extension}/alternate"))
async def alternate(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await control.alternate(args["extension"], *_pair(services, args))


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
              doc="single-step: the other party; alone (the astCTI author's form): completes"
                  " the extension's held consultation if it has one, else single-step on its"
                  " active call"),
    )


async def _either_form(services: Services, args: dict[str, Any], two_calls,
                       single_step) -> None:
    """Run the two-call form or the single-step form, whichever the fields name; with only
    `destination` (or nothing), whichever the extension's calls call for."""
    ext = args["extension"]
    if "activecallid" in args and "heldcallid" in args:
        await two_calls(ext, args["activecallid"], args["heldcallid"])
    elif "callid" in args and "destination" in args:
        await single_step(ext, args["callid"], args["destination"])
    elif not {"activecallid", "heldcallid", "callid"} & args.keys():
        held = _has(services, ext, "held")
        if held and _has(services, ext, "active"):  # a consultation to complete
            await two_calls(ext, *_pair(services, args))
        elif "destination" in args:
            await single_step(ext, current_call(services, ext, "active"), args["destination"])
        else:
            raise RequestError("missing field destination (or hold the call and consult"
                               " first)", 400)
    else:
        raise RequestError("missing fields: give activecallid and heldcallid, or callid and"
                           " destination", 400)


def _has(services: Services, extension: str, which: str) -> bool:
    try:
        current_call(services, extension, which)
    except RequestError:
        return False
    return True


@request("transfer", EXTENSION, *_two_forms("transfer"), group=GROUP,
         doc="Join the held call's party with the consulted party and release the extension"
             " (activecallid + heldcallid), or send the call to `destination` in a single step"
             " (callid + destination). Event: transferred (to every monitor of the parties).",
         resource=("POST", "/api/v1/extensions/{extension}/transfer"))
async def transfer(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await _either_form(services, args, control.transfer, control.transfer_blind)


@request("conference", EXTENSION, *_two_forms("add a party to"), group=GROUP,
         doc="All parties talk: the consulted party joins the held call and the extension"
             " returns to it (activecallid + heldcallid), or `destination` is dialled into the"
             " call (callid + destination). Event: conferenced.",
         resource=("POST", "/api/v1/extensions/{extension}/conference"))
async def conference(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await _either_form(services, args, control.conference, control.conference_add)


@request("dtmf", EXTENSION, _callid("active"),
         Field("digits", max_length=64, required=False,
               doc="0-9 * # A-D; `,` or `w` pauses half a second", example="123#"),
         Field("dtmf", max_length=64, required=False,
               doc="the same digits, in the astCTI author's field name"),
         group=GROUP,
         doc="Send DTMF digits to the far party of the extension's active call (RFC 4733 or"
             " SIP INFO, as its endpoint is configured).",
         resource=("POST", "/api/v1/extensions/{extension}/calls/{callid}/dtmf"))
async def dtmf(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    digits = args.get("digits") or args.get("dtmf")
    if not digits:
        raise RequestError("missing field digits (or dtmf)")
    await control.dtmf(args["extension"], _call(services, args, "active"), digits)


@request("dropparty", EXTENSION, _callid("active"),
         Field("party", pattern=NUMBER_RE, max_length=64,
               doc="the number of the party to release (as events name it, e.g. in"
                   " `conferenced` parties)", example="0912345678"),
         group=GROUP,
         doc="Release one party of the extension's call (a conference member); the others go"
             " on talking. Event: partycleared (eventtype disconnect, releasing = the party).",
         resource=("POST", "/api/v1/extensions/{extension}/dropparty"))
async def dropparty(services: Services, session: Session, args: dict[str, Any]) -> None:
    control = _control(services, args["extension"])
    await control.drop_party(args["extension"], _call(services, args, "active"), args["party"])
