"""REST transport (`astctirest`): the astCTI-compatible form, the resource API, events, toolbar.

- `GET|POST /<request>?field=value`: the original astCTI form. Fields come from the query string
  and, for POST, a JSON or form body; unknown parameters are ignored (a CRM module sends
  `payload=json&callto=true`). The HTTP status is always 200 so that old clients that only read
  `result` keep working; the JSON says `success` or `error` and why.
- `/api/v1/...`: each request at its declared `resource` and at `POST /api/v1/requests/{name}`,
  with status codes (400, 401, 403, 404, 409...), described by `/api/v1/openapi.json`.
- `GET /api/v1/events`: Server-Sent Events (Accept: text/event-stream) or long-poll.
- `/toolbar/`: the web agent toolbar (static files of astcti/api/web/).

HTTP is stateless, so a REST *session* is kept per token (or Basic user, or client address on an
`auth=none` listener): its monitors and buffered events live until it has been idle for
IDLE_TIMEOUT seconds. Every request goes to the one `Dispatcher`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from astcti.api.auth import Identity, address_identity
from astcti.api.dispatch import Dispatcher
from astcti.api.session import Session
from astcti.tasks import Tasks
from astcti.api.openapi import (
    API_PREFIX,
    EVENTS_PATH,
    MAX_WAIT,
    REQUESTS_PATH,
    document,
    request_list,
)
from astcti.api.protocol import MAX_REQUEST_BYTES, REQUESTS, RequestError, response

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).with_name("web")
IDLE_TIMEOUT = 600.0  # a REST session without requests or an open stream ends after this
EVENT_BUFFER = 1000  # events kept per REST session for SSE reconnects and long-polls
KEEPALIVE = 15.0  # SSE comment line this often, so proxies keep the stream open
_rest_ids = itertools.count(1)


@dataclass
class RestSession:
    """A REST client's session: its dispatcher Session and its buffered events."""

    key: str
    session: Session
    events: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=EVENT_BUFFER))
    counter: int = 0
    streams: int = 0
    last_used: float = field(default_factory=time.monotonic)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, text: str) -> None:
        self.counter += 1
        self.events.append((self.counter, text))
        self.wakeup.set()

    def after(self, n: int) -> list[tuple[int, str]]:
        return [(i, text) for i, text in self.events if i > n]

    def lost_after(self, n: int) -> int:
        """How many events after `n` are no longer buffered (the client must resynchronise)."""
        oldest = self.events[0][0] if self.events else self.counter + 1
        return max(0, min(oldest - 1, self.counter) - n)


class RestFrontEnd:
    """The state of one REST listener: its sessions and their expiry."""

    def __init__(self, dispatcher: Dispatcher, auth_required: bool) -> None:
        self.dispatcher = dispatcher
        self.auth_required = auth_required
        self.sessions: dict[str, RestSession] = {}
        self.closing = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self.tasks = Tasks("rest listener")

    # -- sessions -------------------------------------------------------------------------------
    def _session(self, key: str, peer: str, identity: Identity | None) -> RestSession:
        rs = self.sessions.get(key)
        if rs is None:
            holder: list[RestSession] = []
            session = Session("rest", peer, lambda frame: holder[0].push(frame.text))
            rs = RestSession(key, session)
            holder.append(rs)
            self.sessions[key] = rs
        rs.session.identity = identity
        rs.last_used = time.monotonic()
        return rs

    async def resolve(self, request: web.Request, *, query_token: bool = False
                      ) -> tuple[RestSession | None, Session | None, RequestError | None]:
        """The caller's (kept session, one-off session, auth error)."""
        peer = request.remote or "?"
        if not self.auth_required:
            identity = address_identity(self.dispatcher.services.seating, peer)
            return self._session(f"peer:{peer}", peer, identity), None, None
        auth = self.dispatcher.services.auth
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        token = request.query.get("token", "") if query_token else ""
        if scheme.lower() == "bearer" and value:
            token = value
        if token:
            identity = auth.check_token(token)
            if identity is None:
                return None, None, RequestError("invalid or expired token: log in again", 401)
            rs = self._session(f"token:{token}", peer, identity)
            rs.session.tokens.add(token)
            return rs, None, None
        if scheme.lower() == "basic" and value:
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode() \
                    .partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if not sep:
                return None, None, RequestError("malformed Authorization header", 400)
            try:  # Auth remembers verified credentials: no scrypt per request
                identity = await auth.login(peer, user, password, None)
            except RequestError as exc:
                return None, None, exc
            return self._session(f"basic:{identity.username}", peer, identity), None, None
        if header:
            return None, None, RequestError("unsupported Authorization header: use Bearer"
                                            " <token> or Basic", 401)
        # anonymous: a one-off session, enough for `login`; everything else says not logged in
        return None, Session("rest", peer, lambda text: None), None

    def end(self, rs: RestSession) -> None:
        self.sessions.pop(rs.key, None)
        self.dispatcher.closed(rs.session)
        rs.wakeup.set()

    async def sweep(self) -> None:
        """End REST sessions that nobody used for IDLE_TIMEOUT seconds or whose token expired."""
        auth = self.dispatcher.services.auth
        while True:
            await asyncio.sleep(min(60.0, IDLE_TIMEOUT / 4))
            now = time.monotonic()
            for rs in list(self.sessions.values()):
                expired = rs.key.startswith("token:") and auth.check_token(rs.key[6:]) is None
                if expired or (rs.streams == 0 and now - rs.last_used > IDLE_TIMEOUT):
                    log.info("rest session %s of %s ended (idle)", rs.session.id,
                             rs.session.peer)
                    self.end(rs)

    async def on_startup(self, app: web.Application) -> None:
        self._sweeper = self.tasks.spawn(self.sweep(), name="rest-sweeper")

    async def on_shutdown(self, app: web.Application) -> None:
        self.closing.set()
        for rs in list(self.sessions.values()):
            rs.wakeup.set()

    async def on_cleanup(self, app: web.Application) -> None:
        await self.tasks.cancel_all()
        for rs in list(self.sessions.values()):
            self.end(rs)

    # -- requests -------------------------------------------------------------------------------
    async def run(self, request: web.Request, name: str, fields: dict[str, Any],
                  *, compat: bool) -> web.Response:
        """Hand one request to the dispatcher and answer its response."""
        rid = fields.pop("id", "")  # a JSON body's number stays a number (echoed as sent)
        if rid in ("", None):
            rid = f"rest-{next(_rest_ids)}"
        elif isinstance(rid, str):
            rid = rid[:64]
        rs, one_off, error = await self.resolve(request)
        if error is not None:
            return _json(response(rid, error.error), 200 if compat else error.status)
        session = rs.session if rs is not None else one_off
        assert session is not None
        message = {**fields, "id": rid, "request": name}
        reply, status = await self.dispatcher.handle(session, message)
        if rs is not None and name == "logout" and reply.get("result") == "success":
            self.end(rs)
            if rs.key.startswith("token:"):  # HTTP has no connection to forget: the token goes
                self.dispatcher.services.auth.revoke(rs.key[6:])
        return _json(reply, 200 if compat else status)

    async def fields_of(self, request: web.Request) -> dict[str, Any]:
        """Query parameters, then body fields (JSON object or form) over them."""
        fields: dict[str, Any] = dict(request.query)
        if request.method in ("POST", "PUT", "PATCH") and request.can_read_body:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise RequestError(f"request too large: at most {MAX_REQUEST_BYTES} bytes", 413)
            if body:  # an empty body is no fields; anything else must parse, whitespace too
                ctype = request.content_type
                if ctype == "application/x-www-form-urlencoded":
                    from urllib.parse import parse_qsl

                    try:
                        fields.update(parse_qsl(body.decode(), keep_blank_values=True))
                    except UnicodeDecodeError:
                        raise RequestError("malformed form body: send UTF-8")
                else:
                    try:
                        data = json.loads(body)
                    except (ValueError, UnicodeDecodeError):
                        raise RequestError("malformed JSON: send one JSON object per request")
                    if not isinstance(data, dict):
                        raise RequestError("a request must be a JSON object")
                    fields.update(data)
        return fields

    async def compat(self, request: web.Request) -> web.Response:
        name = request.match_info["request"].lower()
        try:
            fields = await self.fields_of(request)
        except RequestError as exc:
            return _json(response(request.query.get("id", ""), exc.error), 200)
        return await self.run(request, name, fields, compat=True)

    def resource_handler(self, name: str):
        async def handle(request: web.Request) -> web.Response:
            try:
                fields = await self.fields_of(request)
            except RequestError as exc:
                return _json(response("", exc.error), exc.status)
            fields.update(request.match_info)
            return await self.run(request, name, fields, compat=False)

        return handle

    async def generic(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].lower()
        if name not in REQUESTS:
            return _json(response("", f"unknown request {name[:40]!r}: see"
                                      f" {REQUESTS_PATH}"), 404)
        return await self.resource_handler(name)(request)

    # -- events ---------------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.StreamResponse:
        rs, _one_off, error = await self.resolve(request, query_token=True)
        if error is not None:
            return _json(response("", error.error), error.status)
        if rs is None:
            return _json(response("", "not logged in: send a login request first"), 401)
        try:
            after = _int_param(request, "after", 0, 10 ** 15,
                               default=int(request.headers.get("Last-Event-ID", "0") or 0)
                               if request.headers.get("Last-Event-ID", "").isdigit() else 0)
            wait = _int_param(request, "wait", 0, MAX_WAIT, default=MAX_WAIT)
        except RequestError as exc:
            return _json(response("", exc.error), exc.status)
        if "text/event-stream" in request.headers.get("Accept", ""):
            return await self._sse(request, rs, after)
        return await self._long_poll(rs, after, wait)

    async def _long_poll(self, rs: RestSession, after: int, wait: int) -> web.Response:
        rs.streams += 1
        try:
            deadline = time.monotonic() + wait
            while not rs.after(after) and not self.closing.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or rs.key not in self.sessions:
                    break
                rs.wakeup.clear()
                try:
                    await asyncio.wait_for(rs.wakeup.wait(), remaining)
                except TimeoutError:
                    break
        finally:
            rs.streams -= 1
            rs.last_used = time.monotonic()
        batch = rs.after(after)
        return _json(response("", events=[json.loads(t) for _, t in batch],
                              last=batch[-1][0] if batch else max(after, 0),
                              lost=rs.lost_after(after)), 200)

    async def _sse(self, request: web.Request, rs: RestSession,
                   after: int) -> web.StreamResponse:
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                             "Cache-Control": "no-cache",
                                             "X-Accel-Buffering": "no"})
        await stream.prepare(request)
        rs.streams += 1
        log.info("rest %s: event stream opened (session %d)", rs.session.peer, rs.session.id)
        try:
            await stream.write(b"retry: 3000\n\n")
            sent = after
            while not self.closing.is_set() and rs.key in self.sessions:
                lost = rs.lost_after(sent)
                if lost:
                    notice = json.dumps({"msgtype": "lost", "count": lost,
                                         "error": f"{lost} events were dropped: send snapshot"
                                                  " to resynchronise"})
                    await stream.write(f"event: lost\ndata: {notice}\n\n".encode())
                batch = rs.after(sent)
                if batch:
                    chunk = "".join(f"id: {i}\ndata: {text}\n\n" for i, text in batch)
                    await stream.write(chunk.encode())
                    sent = batch[-1][0]
                    continue
                rs.wakeup.clear()
                try:
                    await asyncio.wait_for(rs.wakeup.wait(), KEEPALIVE)
                except TimeoutError:
                    await stream.write(b": keepalive\n\n")
        except ConnectionError:
            pass  # the client went away (aiohttp cancels the handler otherwise)
        finally:
            rs.streams -= 1
            rs.last_used = time.monotonic()
        return stream


FRONT_KEY = web.AppKey("front", RestFrontEnd)


def _int_param(request: web.Request, name: str, low: int, high: int, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise RequestError(f"bad field {name}: expected an integer from {low} to {high}")
    return int(raw)


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json")


@web.middleware
async def json_errors(request: web.Request, handler):
    """404/405/413 from routing also answer in the protocol's envelope."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith(PAGE_PREFIXES):
            raise
        words = {404: f"unknown path {request.path[:60]}: see {API_PREFIX}/openapi.json",
                 405: f"method {request.method} not allowed on {request.path[:60]}",
                 413: f"request too large: at most {MAX_REQUEST_BYTES} bytes"}
        return _json(response("", words.get(exc.status, exc.reason)), exc.status)


#: The web pages astcti serves (static files of astcti/api/web/<page>/, no build step); `/assets/`
#: holds what they share (astcti.js, ui.css).
PAGES = ("agent", "wallboard")
PAGE_PREFIXES = ("/toolbar", "/assets", *(f"/{p}" for p in PAGES))
#: The pages load nothing from elsewhere; only a screen pop may frame another site.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            " connect-src 'self'; frame-src http: https:; frame-ancestors 'self';"
            " base-uri 'none'; form-action 'self'")


@web.middleware
async def page_headers(request: web.Request, handler):
    """Security headers on the pages (the API's JSON needs none of them)."""
    resp = await handler(request)
    if request.path.startswith(PAGE_PREFIXES[1:]):
        resp.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
    return resp


def _add_page(router: web.UrlDispatcher, name: str) -> None:
    """`/<name>` redirects to `/<name>/`, which serves web/<name>/index.html and its files."""
    folder = WEB_DIR / name

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(folder / "index.html")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/{name}/")

    router.add_get(f"/{name}", redirect)
    router.add_get(f"/{name}/", index)
    router.add_static(f"/{name}/", folder, follow_symlinks=False)


def make_app(dispatcher: Dispatcher, *, auth_required: bool) -> web.Application:
    front = RestFrontEnd(dispatcher, auth_required)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES,
                          middlewares=[json_errors, page_headers])
    app.on_startup.append(front.on_startup)
    app.on_shutdown.append(front.on_shutdown)
    app.on_cleanup.append(front.on_cleanup)
    app[FRONT_KEY] = front  # for tests and the admin side: sessions of this listener

    async def openapi(request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        return web.json_response(document(base))

    async def requests_list(request: web.Request) -> web.Response:
        return web.json_response({"requests": request_list()})

    async def toolbar_index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "toolbar.html")

    async def toolbar_redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/toolbar/")

    r = app.router
    r.add_get(f"{API_PREFIX}/openapi.json", openapi)
    r.add_get(REQUESTS_PATH, requests_list)
    r.add_get(EVENTS_PATH, front.events)
    r.add_post(REQUESTS_PATH + "/{name}", front.generic)
    for spec in REQUESTS.values():
        if spec.resource:
            r.add_route(spec.resource[0].upper(), spec.resource[1],
                        front.resource_handler(spec.name))
    r.add_get("/toolbar", toolbar_redirect)
    r.add_get("/toolbar/", toolbar_index)
    if WEB_DIR.is_dir():
        r.add_static("/toolbar/", WEB_DIR, follow_symlinks=False)
        r.add_static("/assets/", WEB_DIR, follow_symlinks=False)
        for page in PAGES:
            _add_page(r, page)
    r.add_route("GET", "/{request}", front.compat)
    r.add_route("POST", "/{request}", front.compat)
    return app
