"""The astCTI protocol: envelope, request declarations, validation and error words.

Each request is declared once with :func:`request` (name, fields, doc, handler). The dispatcher,
`docs/protocol.md` (``python -m astcti.api.docs``) and the other front ends read these
declarations, so they cannot drift apart.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from astcti.api.services import Services
    from astcti.api.session import Session

MAX_REQUEST_BYTES = 64 * 1024
MAX_ID_CHARS = 64

EXTENSION_RE = r"^[0-9A-Za-z*#+_.-]{1,32}$"
NUMBER_RE = r"^[0-9A-Za-z*#+_.@-]{1,64}$"
CALLID_RE = r"^[0-9A-Za-z._:-]{1,64}$"


class RequestError(Exception):
    """A request that fails: `error` is the words the client gets; `status` its HTTP code."""

    def __init__(self, error: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.status = status


# Error words shared by every request (clients may match on them).
NOT_LOGGED_IN = "not logged in: send a login request first"


@dataclass(frozen=True)
class Field:
    """One request field: its JSON type, whether required, and its limits."""

    name: str
    type: str = "string"  # string | integer | object | boolean
    required: bool = True
    doc: str = ""
    pattern: str | None = None
    max_length: int = 128
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    example: Any = None

    def check(self, value: Any) -> Any:
        """The value in its Python form, or RequestError naming the field."""
        if self.type == "string":
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise RequestError(f"bad field {self.name}: expected a string")
            value = str(value)
            if len(value) > self.max_length:
                raise RequestError(f"bad field {self.name}: longer than {self.max_length}"
                                   " characters")
            if self.choices and value.lower() not in self.choices:
                raise RequestError(f"bad field {self.name}: expected one of"
                                   f" {', '.join(self.choices)}")
            if self.choices:
                value = value.lower()
            if self.pattern and not re.match(self.pattern, value):
                raise RequestError(f"bad field {self.name}: {value[:40]!r} is not valid")
            return value
        if self.type == "integer":
            if isinstance(value, bool):
                raise RequestError(f"bad field {self.name}: expected an integer")
            if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value):
                value = int(value)
            if not isinstance(value, int):
                raise RequestError(f"bad field {self.name}: expected an integer")
            if self.minimum is not None and value < self.minimum:
                raise RequestError(f"bad field {self.name}: must be >= {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise RequestError(f"bad field {self.name}: must be <= {self.maximum}")
            return value
        if self.type == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            raise RequestError(f"bad field {self.name}: expected true or false")
        if self.type == "object":
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise RequestError(f"bad field {self.name}: expected a JSON object")
            if not isinstance(value, dict):
                raise RequestError(f"bad field {self.name}: expected a JSON object")
            return value
        raise AssertionError(self.type)


Handler = Callable[["Services", "Session", dict[str, Any]], Awaitable[dict[str, Any] | None]]
#: what a request needs (astcti/api/authz.py): session, monitor, control, supervise or admin;
#: a function of the request's fields when that depends on them (userdata reads and writes)
Access = str | Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class RequestSpec:
    name: str
    fields: tuple[Field, ...]
    doc: str
    handler: Handler
    login: bool = True  # needs an authenticated session
    group: str = "monitoring"
    response: dict[str, str] = field(default_factory=dict)  # extra response fields -> doc
    # REST resource form (method, path) for the /api/v1 front end
    resource: tuple[str, str] | None = None
    access: Access = "control"
    subject: str | None = None  # the field naming the extension acted on
    served: bool = True  # the subject must be served by a connected Asterisk
    dials: tuple[str, ...] = ()  # fields holding numbers that will be dialled (dial policy)

    def validate(self, message: dict[str, Any]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for f in self.fields:
            if f.name in message and message[f.name] is not None and message[f.name] != "":
                args[f.name] = f.check(message[f.name])
            elif f.required:
                raise RequestError(f"missing field {f.name}")
        return args


REQUESTS: dict[str, RequestSpec] = {}

# Envelope keys every request may carry besides its declared fields.
ENVELOPE_KEYS = {"id", "request"}


def request(name: str, *fields: Field, doc: str, login: bool = True, group: str = "monitoring",
            response: dict[str, str] | None = None,
            resource: tuple[str, str] | None = None, access: Access = "control",
            subject: str | None = "extension", served: bool = True,
            dials: tuple[str, ...] = ("destination",)) -> Callable[[Handler], Handler]:
    """Declare a request and register its handler.

    `access` is what the caller's role must allow (default: control of the `subject`
    extension); `dials` names the fields whose numbers pass the dial policy; `served`: the
    subject must be an extension a connected Asterisk serves. The dispatcher checks all three
    before the handler runs (astcti/api/authz.py), never the handler.
    """

    def register(handler: Handler) -> Handler:
        if name in REQUESTS:
            raise ValueError(f"request {name} declared twice")
        names = {f.name for f in fields}
        REQUESTS[name] = RequestSpec(
            name, tuple(fields), doc.strip(), handler, login, group, response or {}, resource,
            access, subject if subject in names else None, served,
            tuple(d for d in dials if d in names))
        return handler

    return register


RequestId = str | int | float  # echoed back exactly as the client sent it


@dataclass
class Envelope:
    id: RequestId
    name: str
    message: dict[str, Any]


def parse_envelope(raw: str | bytes | dict[str, Any]) -> Envelope:
    """Decode and check the envelope; RequestError carries the id when one could be read."""
    if isinstance(raw, (str, bytes)):
        if len(raw) > MAX_REQUEST_BYTES:
            raise EnvelopeError("", f"request too large: at most {MAX_REQUEST_BYTES} bytes")
        try:
            try:  # orjson: a third of the stdlib's time; what it refuses (NaN, huge numbers,
                # non-UTF-8) the stdlib judges, as before
                message = orjson.loads(raw)
            except ValueError:
                message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise EnvelopeError("", "malformed JSON: send one JSON object per request")
    else:
        message = raw
    if not isinstance(message, dict):
        raise EnvelopeError("", "a request must be a JSON object")
    rid = message.get("id", "")
    # a client may use a number (the author's clients send `"id": 0`): it comes back a number
    if isinstance(rid, bool) or not isinstance(rid, (str, int, float)) or (
            isinstance(rid, float) and not math.isfinite(rid)):
        raise EnvelopeError("", "bad field id: expected a string or a number")
    if len(str(rid)) > MAX_ID_CHARS:
        raise EnvelopeError("", f"bad field id: longer than {MAX_ID_CHARS} characters")
    if rid == "":
        raise EnvelopeError("", "missing field id")
    name = message.get("request")
    if not isinstance(name, str) or not name:
        raise EnvelopeError(rid, "missing field request")
    name = name.lower()
    if name not in REQUESTS:
        raise EnvelopeError(rid, f"unknown request {name[:40]!r}: see docs/protocol.md")
    return Envelope(rid, name, message)


class EnvelopeError(RequestError):
    def __init__(self, rid: RequestId, error: str) -> None:
        super().__init__(error, 400)
        self.id = rid


#: `result` of a failed request: astCTI clients test `result == "success"` and show `error`
#: only when `result == "error"`.
FAILURE = "error"


def response(rid: RequestId, error: str = "", **extra: Any) -> dict[str, Any]:
    """The response envelope: result success when `error` is empty, else error."""
    out: dict[str, Any] = {"msgtype": "response", "id": rid,
                           "result": FAILURE if error else "success", "error": error}
    out.update(extra)
    return out
