"""`python -m tests.perf.floor`: the least a Python process can spend on astcti's Stasis call.

The bench's scale point sends every call into the ARI app, where astcti dials the agent,
answers, bridges and hangs up (8 REST requests on the events websocket, about 25 ARI events),
and writes each call's CTI events to the clients monitoring the agent. This process does
exactly those messages and nothing else: the same app name, subscriptions and event filter,
the same requests in the same order, a frame per CTI event written to the same clients, on
the same event loop (uvloop), JSON library (orjson) and WebSocket framing (astcti.wsproto).
No tracker, no call model, no locks, no user data, no rights.

Run in place of the daemon on the same calls (`tests/bench.py`, `floor_point`), its CPU per
call is the floor under astcti's: what the messages cost on this machine before any of
astcti's logic. The difference is what astcti's own code can still win.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import uvloop

from astcti import wsproto
from astcti.app import IGNORED_ARI_EVENTS
from astcti.pbx.ari import _mask_key
from astcti.wire import ws_text_frame

Event = dict[str, Any]


class Ari(asyncio.Protocol):
    """The app's events websocket; REST requests go out on it as astcti sends them."""

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        self.on_event = on_event
        self.transport: asyncio.Transport | None = None
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.head: bytes | None = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.parser = wsproto.FrameParser(16 << 20, masked=False, text_bytes=True)
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.last = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            wsproto.check_response(self.head[:end + 4], self.key)
            data, self.head = self.head[end + 4:], None
            self.opened.set_result(None)
        for message in self.parser.feed(data):
            if isinstance(message, wsproto.Text):
                if message.data == self.last:  # sent twice (Stasis and endpoint), as astcti
                    continue  # drops it
                self.last = message.data  # type: ignore[assignment]
                event = orjson.loads(message.data)
                if event.get("type") == "RESTResponse":
                    future = self.pending.pop(event["request_id"], None)
                    if event.get("status_code", 500) >= 300 and \
                            event.get("status_code") != 409:
                        print("ARI refused a request:", event, flush=True)  # the bench's log
                    if future is not None:
                        future.set_result(event.get("status_code"))
                else:
                    self.on_event(event)
            elif isinstance(message, wsproto.Ping):
                self.send(wsproto.OP_PONG, message.data)

    def send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(wsproto.masked_frame(opcode, payload, _mask_key()))

    def request(self, method: str, uri: str, body: Any = None) -> asyncio.Future[Any]:
        request_id = str(next(self.ids))
        message: Event = {"type": "RESTRequest", "request_id": request_id, "method": method,
                          "uri": uri}
        if body is not None:
            message["content_type"] = "application/json"
            message["message_body"] = orjson.dumps(body).decode()
        self.send(wsproto.OP_TEXT, orjson.dumps(message))
        future = self.pending[request_id] = asyncio.get_running_loop().create_future()
        return future


class Client(asyncio.Protocol):
    """One CTI client: answers login and startmonitor, then only receives frames."""

    def __init__(self, monitors: dict[str, set[Client]]) -> None:
        self.monitors = monitors
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""
        self.parser = wsproto.FrameParser(1 << 20)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.head is not None:
            self.head += data
            end = wsproto.head_end(self.head)
            if not end:
                return
            self.transport.write(wsproto.parse_handshake(self.head[:end]).accept())
            data, self.head = self.head[end:], None
        for message in self.parser.feed(data):
            if isinstance(message, wsproto.Text):
                request = orjson.loads(message.data)
                if request.get("request") == "startmonitor":
                    self.monitors.setdefault(request["extension"], set()).add(self)
                self.transport.write(ws_text_frame(orjson.dumps(
                    {"msgtype": "response", "id": request.get("id"), "result": "success"})))
            elif isinstance(message, wsproto.Close):
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for clients in self.monitors.values():
            clients.discard(self)


class Calls:
    """astcti's Stasis path, message for message: dial the agent for a caller that entered the
    app, ring the caller, answer and bridge both on the agent's answer, hang up the other leg
    and destroy the bridge when one leaves; a CTI event frame per step to the agent's clients."""

    def __init__(self, app: str, monitors: dict[str, set[Client]]) -> None:
        self.app = app
        self.monitors = monitors
        self.ari: Ari | None = None
        self.peer: dict[str, str] = {}  # channel id -> the other leg's
        self.bridge: dict[str, str] = {}  # channel id -> its bridge
        self.agent: dict[str, str] = {}  # agent leg id -> its extension
        self.entering: dict[str, asyncio.Event] = {}  # created legs not yet in Stasis
        self.ids = itertools.count(1)
        self.tasks: set[asyncio.Task[None]] = set()

    def publish(self, extension: str, names: tuple[str, ...], event: Event,
                **fields: Any) -> None:
        """Events of one moment, in one write per client (as astcti's hub)."""
        clients = self.monitors.get(extension)
        frame = b"".join(ws_text_frame(orjson.dumps({
            "msgtype": "event", "event": name, "extension": extension,
            "callid": event["channel"]["id"] if "channel" in event else "",
            "timestamp": event.get("timestamp", ""), **fields})) for name in names)
        for client in tuple(clients or ()):
            if client.transport is not None:
                client.transport.write(frame)

    def spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_event(self, event: Event) -> None:
        kind = event.get("type")
        channel = event.get("channel") or {}
        cid = channel.get("id", "")
        if kind == "StasisStart" and (event.get("args") or [""])[0] == "dial":
            self.spawn(self.dial(channel, event["args"][1], event["args"][2]))
        elif kind == "StasisStart" and cid in self.entering:
            self.entering.pop(cid).set()
        elif kind == "Dial" and event.get("dialstatus") == "RINGING":
            leg = (event.get("peer") or {}).get("id", "")
            if leg in self.agent:
                self.spawn(self.request("POST", f"channels/{self.peer[leg]}/ring"))
                self.publish(self.agent[leg], ("delivered",), event)
        elif kind == "ChannelStateChange" and channel.get("state") == "Up" and \
                cid in self.agent and cid not in self.bridge and cid in self.peer:
            bridge = self.bridge[cid] = self.bridge[self.peer[cid]] = \
                f"floor-bridge-{next(self.ids)}"
            self.spawn(self.connect(self.peer[cid], cid, bridge))
            self.publish(self.agent[cid], ("established",), event)
        elif kind == "StasisEnd" and cid in self.peer:
            other = self.peer.pop(cid)
            self.peer.pop(other, None)
            bridge = self.bridge.pop(cid, None)
            self.bridge.pop(other, None)
            self.spawn(self.hang_up(other, bridge))
            extension = self.agent.get(cid) or self.agent.get(other, "")
            self.publish(extension, ("connectioncleared",), event)
        elif kind == "ChannelDestroyed" and cid in self.agent:
            self.publish(self.agent.pop(cid), ("callcleared", "idle"), event)
        elif kind == "DeviceStateChanged":
            name = event["device_state"]["name"]
            self.publish(name.split("/", 1)[-1], ("agentstate",), event,
                         state=event["device_state"]["state"])

    async def request(self, method: str, uri: str, body: Any = None) -> int:
        assert self.ari is not None
        return int(await self.ari.request(method, uri, body))

    async def dial(self, caller: Event, endpoint: str, timeout: str) -> None:
        leg = f"floor-{next(self.ids)}"
        self.peer[caller["id"]], self.peer[leg] = leg, caller["id"]
        self.agent[leg] = endpoint.split("/", 1)[-1]
        query = urlencode({"endpoint": endpoint, "app": self.app, "appArgs": "leg",
                           "channelId": leg, "originator": caller["id"]})
        caller_id = caller.get("caller") or {}
        entering = self.entering[leg] = asyncio.Event()
        await self.request("POST", f"channels/create?{query}", {"variables": {
            "CONNECTEDLINE(num,i)": caller_id.get("number", ""),
            "CONNECTEDLINE(name,i)": caller_id.get("name", ""), "ASTCTI_DIRECT": "1"}})
        dial = f"channels/{leg}/dial?caller={quote(caller['id'])}&timeout={timeout}"
        if await self.request("POST", dial) == 409:  # answered before its StasisStart, as
            await asyncio.wait_for(entering.wait(), 5)  # astcti's dial sees on a busy host
            await self.request("POST", dial)
        self.entering.pop(leg, None)

    async def connect(self, caller: str, leg: str, bridge: str) -> None:
        await self.request("POST", f"channels/{caller}/answer")
        await self.request("POST", f"bridges?type=mixing&bridgeId={bridge}")
        await self.request("POST", f"bridges/{bridge}/addChannel?channel={caller},{leg}")

    async def hang_up(self, other: str, bridge: str | None) -> None:
        await self.request("DELETE", f"channels/{other}")
        if bridge is not None:
            await self.request("DELETE", f"bridges/{bridge}")


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    monitors: dict[str, set[Client]] = {}
    calls = Calls(args.app, monitors)
    _, ari = await loop.create_connection(lambda: Ari(calls.on_event), "127.0.0.1",
                                          args.ari_port)
    assert isinstance(ari, Ari) and ari.transport is not None
    calls.ari = ari
    password = os.environ["FLOOR_ARI_PASSWORD"]  # not on the command line, which ps shows
    auth = base64.b64encode(f"{args.ari_user}:{password}".encode()).decode()
    target = f"/ari/events?{urlencode({'app': args.app, 'subscribeAll': 'false'})}"
    ari.transport.write(wsproto.client_request(f"127.0.0.1:{args.ari_port}", target, ari.key,
                                               {"Authorization": f"Basic {auth}"}))
    await ari.opened
    await ari.request("PUT", f"applications/{args.app}/eventFilter",
                      {"disallowed": [{"type": t} for t in IGNORED_ARI_EVENTS]})
    sources = [f"{kind}:PJSIP/{e}" for e in args.extensions.split(",")
               for kind in ("endpoint", "deviceState")]
    for i in range(0, len(sources), 200):
        await ari.request("POST", f"applications/{args.app}/subscription",
                          {"eventSource": sources[i:i + 200]})
    server = await loop.create_server(lambda: Client(monitors), "127.0.0.1", args.ws_port)
    print("astcti starting (the floor app in its place)\nready:", flush=True)  # as the lab waits
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ari-port", type=int, required=True)
    parser.add_argument("--ari-user", required=True)
    parser.add_argument("--app", default="astcti")
    parser.add_argument("--ws-port", type=int, required=True)
    parser.add_argument("--extensions", required=True, help="comma list to subscribe")
    uvloop.run(serve(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
