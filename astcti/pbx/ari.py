"""The only module that knows how ARI is reached.

REST operations go through aioari's Swagger client (resource/operation names as in Asterisk's
ARI docs); the events websocket is our own aiohttp connection, because aioari's has no
heartbeat, no reconnect and puts unencoded credentials in the URL (see LAB.md). Swapping aioari
out means rewriting :class:`AriRest` only.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aioari
from aiohttp import web_exceptions
from aioswagger11.http_client import AsynchronousHttpClient, BasicAuthenticator

from astcti.pbx.linkconfig import LinkConfig

log = logging.getLogger(__name__)

AriEvent = dict[str, Any]


class AriError(Exception):
    """ARI answered with an HTTP error, or could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _query_value(value: Any) -> Any:
    # aioari raises TypeError on Python booleans in the query string.
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _auth_header(config: LinkConfig) -> str:
    raw = f"{config.username}:{config.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class AriRest:
    """ARI REST operations of one Asterisk."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self._client: Any = None

    async def open(self, timeout: float = 10.0) -> None:
        """Load Asterisk's ARI description; fails with AriError on bad credentials or no answer."""
        http = AsynchronousHttpClient(
            auth=BasicAuthenticator(self.config.host.strip("[]"), self.config.username,
                                    self.config.password)
        )
        # aioari builds a session without timeout; give it one of ours.
        await http.session.close()
        http.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        client = aioari.Client(self.config.base_url + "/", http)
        try:
            await client.init()
        except BaseException as exc:
            await http.close()
            raise _translate(exc, self.config) from None
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def call(self, resource: str, operation: str, **params: Any) -> Any:
        """Run one ARI operation; returns the decoded JSON body, or None for 204."""
        if self._client is None:
            raise AriError(503, f"{self.config.name}: not connected to Asterisk")
        oper = self._client.swagger.get_resource(resource).get_operation(operation)
        if oper is None:
            raise AriError(400, f"ARI has no operation {resource}.{operation}")
        clean = {k: _query_value(v) for k, v in params.items() if v is not None}
        try:
            resp = await oper(**clean)
        except BaseException as exc:
            raise _translate(exc, self.config) from None
        try:
            if resp.status == 204:
                return None
            body = await resp.read()
            return json.loads(body) if body else None
        finally:
            resp.release()


    async def send_json(self, method: str, path: str, body: Any) -> Any:
        """A request whose JSON body is the object itself (aioari would wrap it in a field)."""
        if self._client is None:
            raise AriError(503, f"{self.config.name}: not connected to Asterisk")
        session: aiohttp.ClientSession = self._client.swagger.http_client.session
        url = f"{self.config.base_url}/ari/{path.lstrip('/')}"
        try:
            async with session.request(method, url, json=body,
                                       headers={"Authorization": _auth_header(self.config)}) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    try:
                        text = json.loads(text).get("message", text)
                    except (ValueError, AttributeError):
                        pass
                    raise AriError(resp.status, f"{resp.status} {text}".strip())
                return json.loads(text) if text else None
        except aiohttp.ClientError as exc:
            raise _translate(exc, self.config) from None


def _translate(exc: BaseException, config: LinkConfig) -> BaseException:
    """Turn aioari/aiohttp failures into AriError with a readable line and no secrets."""
    if isinstance(exc, web_exceptions.HTTPException):
        status = exc.status
        text = exc.text or ""
        try:
            text = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            pass
        if status == 401:
            return AriError(401, f"{config.name}: Asterisk rejected ARI user {config.username!r}:"
                                 " check the user in ari.conf and the link's password")
        return AriError(status, f"{status} {text}".strip())
    if isinstance(exc, TypeError) and "405" in str(exc):
        return AriError(405, "405 method not allowed")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return AriError(503, f"{config.name}: cannot reach Asterisk ARI at {config.base_url}"
                             f" ({exc.os_error.strerror or exc.os_error}): is Asterisk running"
                             " with http.conf enabled on that address?")
    if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
        return AriError(503, f"{config.name}: ARI at {config.base_url} failed:"
                             f" {type(exc).__name__}")
    return exc


class AriEventSocket:
    """The app's events websocket; :meth:`open` registers the app, iterating yields events.

    aiohttp's heartbeat pings every `heartbeat` seconds and closes the socket when a pong is
    missing, so a silent network cut ends the iteration within about 1.5 heartbeats.
    """

    def __init__(self, config: LinkConfig, session: aiohttp.ClientSession,
                 heartbeat: float) -> None:
        self.config = config
        self.session = session
        self.heartbeat = heartbeat
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self) -> None:
        config = self.config
        url = config.base_url.replace("http", "ws", 1) + "/ari/events"
        try:
            self._ws = await self.session.ws_connect(
                url,
                params={"app": config.app, "subscribeAll": "false"},
                headers={"Authorization": _auth_header(config)},
                heartbeat=self.heartbeat,
                max_msg_size=16 * 1024 * 1024,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise AriError(401, f"{config.name}: Asterisk rejected ARI user"
                                    f" {config.username!r}: check the user in ari.conf and the"
                                    " link's password") from None
            raise AriError(exc.status, f"{config.name}: ARI events websocket refused:"
                                       f" {exc.status} {exc.message}") from None
        except BaseException as exc:
            raise _translate(exc, config) from None

    async def __aiter__(self) -> AsyncIterator[AriEvent]:
        assert self._ws is not None, "open() first"
        last = ""
        async for msg in self._ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                # A channel both in the app's Stasis and on a subscribed endpoint has each of
                # its events delivered twice, back to back and byte for byte: keep one.
                if msg.data == last:
                    continue
                last = msg.data
                try:
                    event = json.loads(msg.data)
                except ValueError:
                    log.warning("%s: ignored a non-JSON ARI event", self.config.name)
                    continue
                if isinstance(event, dict):
                    yield event
            elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                break

    async def close(self) -> None:
        if self._ws is not None:
            ws, self._ws = self._ws, None
            await ws.close()
