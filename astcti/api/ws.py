"""WebSocket transport (`astctiws`): one JSON request or event per text frame."""

from __future__ import annotations

import base64
import json
import logging

import aiohttp
from aiohttp import web

from astcti.api.dispatch import Dispatcher
from astcti.api.session import Session
from astcti.api.outbox import Outbox
from astcti.api.protocol import MAX_REQUEST_BYTES, RequestError, response

log = logging.getLogger(__name__)

HEARTBEAT = 30.0


async def _header_login(dispatcher: Dispatcher, session: Session,
                        request: web.Request) -> str | None:
    """Authorization: Bearer <token> or Basic on the upgrade request logs the session in."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if not value:
        return None
    auth = dispatcher.services.auth
    try:
        if scheme.lower() == "bearer":
            session.identity = await auth.login(session.peer, None, None, value.strip())
            session.tokens.add(value.strip())
        elif scheme.lower() == "basic":
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            session.identity = await auth.login(session.peer, user, password, None)
    except RequestError as exc:
        return exc.error
    except (ValueError, UnicodeDecodeError):
        return "malformed Authorization header"
    return None


def make_handler(dispatcher: Dispatcher, *, auth_required: bool):
    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_REQUEST_BYTES)
        await ws.prepare(request)
        peer = request.remote or "?"

        async def overflow(reason: str) -> None:
            await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=reason.encode())

        outbox = Outbox(ws.send_str, overflow, f"ws {peer}")
        session = Session("ws", peer, outbox.put)
        if not auth_required:
            session.identity = dispatcher.services.auth.unauthenticated(peer)
        error = await _header_login(dispatcher, session, request)
        if error:
            outbox.put(json.dumps(response("", error)))
        log.info("ws client connected from %s", peer)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    reply, _status = await dispatcher.handle(session, msg.data)
                    outbox.put(json.dumps(reply, separators=(",", ":")))
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    outbox.put(json.dumps(response("", "binary frames are not supported: send"
                                                       " JSON text frames")))
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    log.info("ws %s: %s", peer, ws.exception())
                    break
        finally:
            dispatcher.closed(session)
            await outbox.close()
            if not ws.closed:
                await ws.close()
            log.info("ws client %s disconnected", peer)
        return ws

    return handle


def make_app(dispatcher: Dispatcher, *, auth_required: bool) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    handler = make_handler(dispatcher, auth_required=auth_required)
    app.router.add_get("/", handler)
    app.router.add_get("/ws", handler)
    return app
