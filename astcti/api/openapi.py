"""The OpenAPI 3 document of the REST resource API, generated from the request declarations.

Every request declared with `@request(...)` appears twice: at its `resource` (method, path) when
it declares one, and at `POST /api/v1/requests/{name}` always. Nothing here is written by hand
per request, so the document and the server cannot drift (tests/api/test_openapi.py checks it
against a running server with schemathesis).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from astcti import __version__
from astcti.api.protocol import REQUESTS, Field, RequestSpec

API_PREFIX = "/api/v1"
EVENTS_PATH = f"{API_PREFIX}/events"
REQUESTS_PATH = f"{API_PREFIX}/requests"
MAX_WAIT = 30  # long-poll: at most this many seconds

#: HTTP statuses the dispatcher may answer, and what each means to a client.
STATUSES = {
    "200": "success: `result` is `success`",
    "400": "bad input: `error` names the field or the JSON problem",
    "401": "not logged in, or wrong credentials/token",
    "403": "not allowed: the user may not act on this extension or dial this number, or the"
           " listener refuses this address or browser origin",
    "404": "unknown extension, call or path",
    "409": "the request does not fit the current state (e.g. no active call)",
    "413": "request body too large",
    "429": "too many failed logins from this address",
    "500": "internal error (see the astcti log)",
    "502": "Asterisk refused the operation (`Asterisk refused hold: ...`)",
    "503": "Asterisk link down or store unavailable",
}

PATH_PARAM_RE = re.compile(r"{(\w+)}")

#: the envelope's `id`, which a JSON body may carry: echoed in the response as sent (a string
#: is cut to 64 characters; a number must print in at most 64, which any JSON float does)
ENVELOPE_ID: dict[str, Any] = {
    "description": "the client's request id, echoed in the response (null, \"\" or none:"
                   " rest-N)",
    "anyOf": [{"type": "string"}, {"type": "number"}],
    "nullable": True,
}


def field_schema(f: Field, *, in_query: bool = False) -> dict[str, Any]:
    """JSON schema of one declared field (the same limits `Field.check` enforces)."""
    if f.type == "string":
        schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": f.max_length}
        if f.choices:
            schema = {"type": "string", "enum": list(f.choices)}
        elif f.pattern:
            schema["pattern"] = f.pattern
        if not in_query and not f.choices and _takes_any_integer(f):
            # the server reads a JSON number in a text field as its text (legacy clients send
            # 101, not "101"): where every integer's text is valid, the document says so
            schema = {"anyOf": [schema, {"type": "integer", "minimum": -(10 ** 17),
                                         "maximum": 10 ** 17}]}
    elif f.type == "integer":
        schema = {"type": "integer"}
        schema["minimum"] = f.minimum if f.minimum is not None else -(10 ** 17)
        schema["maximum"] = f.maximum if f.maximum is not None else 10 ** 17
    elif f.type == "boolean":  # the astCTI form sends its fields as text: "true", "0"...
        schema = {"oneOf": [{"type": "boolean"},
                            {"type": "string", "enum": ["true", "false", "1", "0"]}]}
    elif in_query:  # an object in a query string travels as JSON text
        schema = {"type": "string", "description": "a JSON object", "example": "{}"}
    else:
        schema = {"type": "object"}
    if f.doc:
        schema["description"] = f.doc
    if f.example is not None:
        schema["example"] = f.example
    return schema


def _takes_any_integer(f: Field) -> bool:
    """Whether every integer the document could offer passes this text field's checks."""
    samples = ("0", "7", "-1", "-73564", str(10 ** 17), str(-(10 ** 17)))
    return all(len(t) <= f.max_length and (not f.pattern or re.match(f.pattern, t))
               for t in samples)


def optional_schema(f: Field, *, in_query: bool = False) -> dict[str, Any]:
    """An optional field: the server takes null and "" as "not given" (`RequestSpec.validate`),
    so the document says so (else a checker rightly reports such a request as accepted)."""
    schema: dict[str, Any] = {"anyOf": [field_schema(f, in_query=in_query),
                                        {"type": "string", "maxLength": 0}]}
    if f.doc:
        schema["description"] = f.doc
    if not in_query:
        schema["nullable"] = True
    return schema


def _responses() -> dict[str, Any]:
    return {code: {"description": text, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Response"}}}}
        for code, text in STATUSES.items()}


def _operation(spec: RequestSpec, method: str, path: str) -> dict[str, Any]:
    in_path = set(PATH_PARAM_RE.findall(path))
    params: list[dict[str, Any]] = []
    body_fields: list[Field] = []
    for f in spec.fields:
        if f.name in in_path:
            params.append({"name": f.name, "in": "path", "required": True,
                           "schema": field_schema(f)})
        elif method in ("get", "delete"):
            params.append({"name": f.name, "in": "query", "required": f.required,
                           "schema": field_schema(f, in_query=True) if f.required
                           else optional_schema(f, in_query=True)})
        else:
            body_fields.append(f)
    op: dict[str, Any] = {
        "operationId": f"{spec.name}_{method}" + ("_generic" if path.startswith(REQUESTS_PATH)
                                                  else ""),
        "summary": spec.doc.split(". ")[0][:120],
        "description": spec.doc,
        "tags": [spec.group],
        "parameters": params,
        "responses": _responses(),
    }
    if not spec.login:
        op["security"] = []
    if method not in ("get", "delete"):
        op["requestBody"] = {
            "required": any(f.required for f in body_fields),
            "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"id": ENVELOPE_ID,
                               **{f.name: field_schema(f) if f.required else optional_schema(f)
                                  for f in body_fields}},
                "required": [f.name for f in body_fields if f.required],
            }}},
        }
        if not op["requestBody"]["content"]["application/json"]["schema"]["required"]:
            del op["requestBody"]["content"]["application/json"]["schema"]["required"]
    return op


def document(server_url: str | None = None) -> dict[str, Any]:
    """The whole OpenAPI 3.0 document."""
    import astcti.api.requests  # noqa: F401  (registers every request)

    paths: dict[str, dict[str, Any]] = {}
    for spec in REQUESTS.values():
        if spec.resource:
            method, path = spec.resource[0].lower(), spec.resource[1]
            paths.setdefault(path, {})[method] = _operation(spec, method, path)
        generic = f"{REQUESTS_PATH}/{spec.name}"
        paths.setdefault(generic, {})["post"] = _operation(spec, "post", generic)
    paths[REQUESTS_PATH] = {"get": {
        "operationId": "list_requests", "summary": "The declared requests and their fields",
        "description": "What the toolbar builds its buttons from.", "tags": ["meta"],
        "security": [],
        "responses": {"200": {"description": "the request list", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RequestList"}}}}},
    }}
    paths[EVENTS_PATH] = {"get": {
        "operationId": "events", "tags": ["events"],
        "summary": "Events of the extensions this session monitors (SSE or long-poll)",
        "description": (
            "With `Accept: text/event-stream`: a Server-Sent Events stream, one `data:` line of"
            " JSON per event, `id:` a per-session counter (reconnect with `Last-Event-ID` or"
            " `after` to get what was missed while it is buffered). Otherwise a long-poll: waits"
            f" up to `wait` seconds (at most {MAX_WAIT}) for events after `after`, then answers"
            " `events` and `last`. The session is the one of the token (or Basic user); on an"
            " `auth=none` listener, the one of the client address. EventSource cannot send"
            " headers: pass `token` as a query parameter instead."),
        "parameters": [
            {"name": "after", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0, "maximum": 10 ** 15}},
            {"name": "wait", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT}},
            {"name": "token", "in": "query", "required": False,
             "schema": {"type": "string", "maxLength": 128}},
        ],
        "responses": {**_responses(), "200": {"description": "events", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}},
            "text/event-stream": {"schema": {"type": "string"}}}}},
    }}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "astcti REST API", "version": __version__,
                 "description": "Generated from the request declarations; the same requests,"
                                " fields and error words as docs/protocol.md."},
        "paths": dict(sorted(paths.items())),
        "security": [{"bearer": []}, {"basic": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "the `token` of a `login` response"},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "an astcti user and password"},
            },
            "schemas": {
                "Response": {
                    "type": "object", "required": ["msgtype", "id", "result", "error"],
                    "properties": {
                        "msgtype": {"type": "string", "enum": ["response"]},
                        "id": {"oneOf": [{"type": "string"}, {"type": "number"}],
                               "description": "the request's id, as sent"},
                        "result": {"type": "string", "enum": ["success", "error"]},
                        "error": {"type": "string"},
                    },
                    "additionalProperties": True,
                },
                "EventBatch": {
                    "allOf": [{"$ref": "#/components/schemas/Response"}, {
                        "type": "object", "required": ["events", "last"],
                        "properties": {"events": {"type": "array", "items": {"type": "object"}},
                                       "last": {"type": "integer"},
                                       "lost": {"type": "integer", "description":
                                                "events no longer buffered: resynchronise"
                                                " with snapshot"}}}],
                },
                "RequestList": {
                    "type": "object", "required": ["requests"],
                    "properties": {"requests": {"type": "array", "items": {"type": "object"}}},
                },
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def request_list() -> list[dict[str, Any]]:
    """The declarations in plain JSON (for `GET /api/v1/requests` and the toolbar)."""
    import astcti.api.requests  # noqa: F401

    out = []
    for spec in REQUESTS.values():
        out.append({
            "name": spec.name, "group": spec.group, "doc": spec.doc, "login": spec.login,
            "resource": list(spec.resource) if spec.resource else None,
            "fields": [{"name": f.name, "type": f.type, "required": f.required, "doc": f.doc,
                        "choices": list(f.choices), "example": f.example}
                       for f in spec.fields],
        })
    return out


if __name__ == "__main__":
    sys.stdout.write(json.dumps(document(), indent=2) + "\n")
