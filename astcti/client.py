"""A small asyncio client of the astcti protocol over WebSocket, raw TCP or REST (+ SSE).

    async with await CtiClient.websocket("ws://127.0.0.1:9003/", "agent", "secret") as cti:
        await cti.request("startmonitor", extension="101")
        event = await cti.expect("delivered", extension="101")
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from astcti.tasks import cancel_and_wait


class CtiError(Exception):
    """A request answered `error` (when `check=True`)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(reply.get("error", "request failed"))
        self.reply = reply


class CtiClient:
    def __init__(self, send: Callable[[str], Awaitable[None]],
                 close: Callable[[], Awaitable[None]]) -> None:
        self._send = send
        self._close = close
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []  # every event received, in order
        self._cursor = 0
        self._new_event = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._reader: asyncio.Task[None] | None = None

    # -- connecting -------------------------------------------------------------------------------
    @classmethod
    async def websocket(cls, url: str, username: str | None = None, password: str | None = None,
                        *, token: str | None = None, ssl: Any = None) -> CtiClient:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, heartbeat=30, **({"ssl": ssl} if ssl else {}))
        except BaseException:
            await session.close()
            raise

        async def close() -> None:
            await ws.close()
            await session.close()

        client = cls(ws.send_str, close)

        async def read() -> None:
            try:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        client._received(msg.data)
            finally:
                client.close_reason = str(ws.close_code or "") + " " + (
                    ws._close_message if hasattr(ws, "_close_message") else "")  # noqa: SLF001
                client.closed.set()

        client._reader = asyncio.create_task(read())
        if username or token:
            try:
                await client.login(username, password, token)
            except BaseException:
                await client.close()  # a failed login must not leak the connection
                raise
        return client

    @classmethod
    async def tcp(cls, host: str, port: int, username: str | None = None,
                  password: str | None = None, *, token: str | None = None,
                  ssl: Any = None) -> CtiClient:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl or None, limit=2**20)

        async def send(text: str) -> None:
            writer.write(text.encode() + b"\n")
            await writer.drain()

        async def close() -> None:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

        client = cls(send, close)

        async def read() -> None:
            try:
                while line := await reader.readline():
                    client._received(line.decode())
            except (ConnectionError, OSError):
                pass
            finally:
                client.closed.set()

        client._reader = asyncio.create_task(read())
        if username or token:
            await client.login(username, password, token)
        return client

    @classmethod
    async def rest(cls, url: str, username: str | None = None, password: str | None = None,
                   *, token: str | None = None, ssl: Any = None) -> CtiClient:
        """Requests as `POST {url}/api/v1/requests/<name>`, events from the SSE stream
        `GET {url}/api/v1/events` (opened after login, with the session's token)."""
        url = url.rstrip("/")
        session = aiohttp.ClientSession()
        state: dict[str, Any] = {"token": token, "stream": None}
        tls: dict[str, Any] = {"ssl": ssl} if ssl else {}

        async def stream() -> None:
            headers = {"Accept": "text/event-stream",
                       "Authorization": f"Bearer {state['token']}"}
            try:
                async with session.get(f"{url}/api/v1/events", headers=headers, **tls,
                                       timeout=aiohttp.ClientTimeout(total=None)) as resp:
                    async for raw in resp.content:
                        line = raw.decode().rstrip("\r\n")
                        if line.startswith("data:"):
                            client._received(line[5:].strip())
            except (aiohttp.ClientError, ConnectionError):
                pass
            finally:
                client.closed.set()

        async def send(text: str) -> None:
            message = json.loads(text)
            name = message.pop("request")
            headers = {"Authorization": f"Bearer {state['token']}"} if state["token"] else {}
            async with session.post(f"{url}/api/v1/requests/{name}", json=message,
                                    headers=headers, **tls) as resp:
                reply = await resp.json(content_type=None)
            if name == "login" and reply.get("token"):
                state["token"] = reply["token"]
                if state["stream"] is None:
                    state["stream"] = asyncio.create_task(stream())
                    client._reader = state["stream"]
            client._received(json.dumps(reply))

        async def close() -> None:
            if state["stream"] is not None:
                state["stream"].cancel()
            await session.close()

        client = cls(send, close)
        if username or token:
            await client.login(username, password, token)
        return client

    async def __aenter__(self) -> CtiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._close()
        if self._reader is not None:
            done, _pending = await asyncio.wait([self._reader], timeout=5)
            if not done:
                await cancel_and_wait(self._reader)

    # -- messages ---------------------------------------------------------------------------------
    def _received(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if message.get("msgtype") == "response":
            future = self._pending.pop(str(message.get("id", "")), None)
            if future is not None and not future.done():
                future.set_result(message)
            elif message.get("id", "") == "":
                self.events.append(message)  # an unsolicited error (e.g. bad header login)
                self._new_event.set()
        else:
            self.events.append(message)
            self._new_event.set()

    async def login(self, username: str | None, password: str | None,
                    token: str | None = None) -> dict[str, Any]:
        fields = {"token": token} if token else {"username": username, "password": password}
        return await self.request("login", **fields)

    async def request(self, name: str, *, check: bool = True, timeout: float = 15.0,
                      **fields: Any) -> dict[str, Any]:
        rid = str(next(self._ids))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        await self._send(json.dumps({"id": rid, "request": name, **fields}))
        reply = await asyncio.wait_for(future, timeout)
        if check and reply.get("result") != "success":
            raise CtiError(reply)
        return reply

    async def request_until_ok(self, name: str, timeout: float = 20.0,
                               **fields: Any) -> dict[str, Any]:
        """Repeat a request until it succeeds (e.g. `startmonitor` while astcti's link to
        Asterisk comes up after a restart); TimeoutError with the last error after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.request(name, check=False, **fields)
            if reply.get("result") == "success":
                return reply
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} {fields} still failing after {timeout} s:"
                                   f" {reply.get('error')}")
            await asyncio.sleep(0.1)

    async def send_raw(self, text: str) -> None:
        await self._send(text)

    async def expect(self, event: str | None = None, timeout: float = 15.0,
                     **match: Any) -> dict[str, Any]:
        """The next event (after earlier `expect` results) with this name and field values."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self._cursor, len(self.events)):
                e = self.events[i]
                if (event is None or e.get("event") == event) and all(
                        e.get(k) == v for k, v in match.items()):
                    self._cursor = i + 1
                    return e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(e.get("event"), e.get("extension")) for e in self.events[self._cursor:]]
                raise TimeoutError(f"no {event or 'event'} {match} within {timeout} s;"
                                   f" pending: {seen}")
            self._new_event.clear()
            try:
                await asyncio.wait_for(self._new_event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def drain(self) -> list[dict[str, Any]]:
        """Events not yet consumed by `expect`; marks them consumed."""
        out = self.events[self._cursor:]
        self._cursor = len(self.events)
        return out
