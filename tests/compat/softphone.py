"""A stand-in for the astCTI author's WebSocket softphone (a browser page for a CRM).

Written from what is known of that client (issue 14), not from astcti's own client code, so it
fails where the real one would:
- it cannot log in: it connects to an `auth=none` listener and learns its extension with
  `myextension` (free seating: its address), then `startmonitor`, `querydeviceinfo`, `snapshot`;
  a failed `myextension` stops it with "get CTI extension failed";
- every request has a constant numeric `id` per request type, reused for each request of that
  type, and the response is found by that id (so it must come back a number);
- every field is sent as a string;
- `result == "success"` means done; the `error` text is shown only when `result == "error"`;
  anything else is ignored;
- events are read by `eventtype` (offer, alert, connect, hold, retrieve, transfer, conference,
  disconnect, fail, idle), with `calling`, `called`, `origcalling`, `releasing`;
- call control names only the extension (no callid): answer, hold, retrieve, hangup,
  reconnect; makecall/consultation/transfer/conference take `destination`, dropparty `party`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

#: the page's fixed request ids, one per request type
IDS = {"myextension": 0, "startmonitor": 1, "querydeviceinfo": 2, "snapshot": 3, "login": 4,
       "logout": 5, "setstate": 6, "queryagentstate": 7, "makecall": 8, "answer": 9, "hold": 10,
       "retrieve": 11, "hangup": 12, "consultation": 13, "transfer": 14, "conference": 15,
       "reconnect": 16, "dropparty": 17, "userdata": 18, "dtmf": 19, "stopmonitor": 20}


class StartupFailed(Exception):
    """The page's start-up stopped, with what it shows the user."""


class Softphone:
    def __init__(self, url: str, address: str) -> None:
        self.url = url
        self.address = address  # the PC's address: its seat
        self.extension = ""
        self.agent = ""
        self.numcall = 0
        self.shown: list[str] = []  # what the page shows the user (errors, status lines)
        self.line = "idle"  # the page's line display, driven by eventtype
        self.events: list[dict[str, Any]] = []
        self.ignored: list[dict[str, Any]] = []  # messages the page does not understand
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._waiting: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    # -- the page's start-up -------------------------------------------------------------------
    async def start(self) -> None:
        connector = aiohttp.TCPConnector(local_addr=(self.address, 0))
        self._http = aiohttp.ClientSession(connector=connector)
        self._ws = await self._http.ws_connect(self.url)
        self._reader = asyncio.create_task(self._read())
        reply = await self.send("myextension")
        if reply.get("result") != "success":
            self.shown.append("get CTI extension failed")
            raise StartupFailed("get CTI extension failed: " + reply.get("error", ""))
        self.extension = reply["extension"]
        if (await self.send("startmonitor", extension=self.extension))["result"] != "success":
            raise StartupFailed("monitor failed")
        self.agent = (await self.send("querydeviceinfo", extension=self.extension)
                      ).get("associateddevice", "")
        self.numcall = int((await self.send("snapshot", extension=self.extension)
                            ).get("numcall", 0))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()

    # -- requests ------------------------------------------------------------------------------
    async def send(self, request: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        """One request with the page's fixed id; the response with that id."""
        assert self._ws is not None
        rid = IDS[request]
        message = {"id": rid, "request": request, **{k: str(v) for k, v in fields.items()}}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        await self._ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout)
        if reply.get("result") == "error":
            self.shown.append(reply.get("error", ""))
        return reply

    async def act(self, request: str, **fields: Any) -> dict[str, Any]:
        """A button of the page: the request on the page's own extension."""
        return await self.send(request, extension=self.extension, **fields)

    # -- events --------------------------------------------------------------------------------
    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("msgtype") == "response" and data.get("id") in self._waiting:
                future = self._waiting.pop(data["id"])
                if not future.done():
                    future.set_result(data)
            elif data.get("msgtype") == "event" and data.get("eventtype"):
                self.events.append(data)
                self._display(data)
            else:
                self.ignored.append(data)

    def _display(self, event: dict[str, Any]) -> None:
        kind = event["eventtype"]
        if kind == "offer":
            self.line = f"ringing: {event['calling']}"
        elif kind == "alert":
            self.line = f"calling {event['called']}"
        elif kind in ("connect", "retrieve"):
            self.line = "talking"
        elif kind == "hold":
            self.line = "on hold"
        elif kind == "idle":
            self.line = "idle"

    async def expect(self, eventtype: str, timeout: float = 20.0, **match: Any
                     ) -> dict[str, Any]:
        """The first event of that eventtype (and fields) not expected before."""
        seen: set[int] = self.__dict__.setdefault("_taken", set())
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for i, event in enumerate(self.events):
                if i not in seen and event["eventtype"] == eventtype and all(
                        event.get(k) == v for k, v in match.items()):
                    seen.add(i)
                    return event
            if asyncio.get_running_loop().time() > deadline:
                got = [(e["eventtype"], e.get("releasing", "")) for e in self.events]
                raise TimeoutError(f"no {eventtype} {match} within {timeout} s; got {got}")
            await asyncio.sleep(0.05)

    def eventtypes(self, callid: str) -> list[str]:
        return [e["eventtype"] for e in self.events if e.get("callid") == callid]
