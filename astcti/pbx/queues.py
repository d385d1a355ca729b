"""Asterisk queue membership without AMI: the `astcti-queue` dialplan helper and function reads.

ARI has no queue resource. Changes run in the helper context (originated as
`Local/<action>@astcti-queue/n` into astcti's own app) and come back as a `ChannelUserevent`
named `astcti_queue` carrying our token; reads evaluate app_queue's dialplan functions
(QUEUE_EXISTS, QUEUE_MEMBER_LIST, QUEUE_MEMBER, QUEUE_WAITING_COUNT, QUEUE_GET_CHANNEL) on a
Local channel that is never dialled (throw-away per read, or one kept by the poller), because
`GET /asterisk/variable` does not evaluate functions. With an AMI link the ACD follows waiting
callers from app_queue's events instead (astcti/cti/acd.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import urlencode

from astcti.errors import AstctiError
from astcti.pbx.ari import AriError, AriEvent
from astcti.pbx.dialplan import QUEUE_HELPER_CONTEXT, QUEUE_USEREVENT
from astcti.pbx.link import AsteriskLink

log = logging.getLogger(__name__)

HELPER_TIMEOUT = 8.0

#: Helper outcomes (AQMSTATUS, RQMSTATUS, PQMSTATUS, UPQMSTATUS) that mean "done".
SUCCESS = {"add": {"ADDED"}, "remove": {"REMOVED"}, "pause": {"PAUSED"},
           "unpause": {"UNPAUSED"}}


class QueueError(AstctiError):
    """A queue operation Asterisk refused or did not answer; the message is for the client."""


class QueueControl:
    """Queue membership operations on one Asterisk."""

    def __init__(self, link: AsteriskLink) -> None:
        self.link = link
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._probe: str | None = None  # the poller's kept probe channel

    # -- events ---------------------------------------------------------------------------------
    def on_event(self, event: AriEvent) -> bool:
        """Resolve the helper call this ChannelUserevent answers; True if it was ours."""
        if event.get("type") != "ChannelUserevent" or event.get("eventname") != QUEUE_USEREVENT:
            return False
        body = event.get("userevent") or {}
        future = self._pending.pop(str(body.get("token", "")), None)
        if future is not None and not future.done():
            future.set_result(body)
        return True

    # -- changes --------------------------------------------------------------------------------
    async def run(self, action: str, queue: str, interface: str, **extra: str) -> str:
        """Run one helper action; returns its status word (e.g. ADDED, NOTINQUEUE)."""
        token = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        variables = {"QNAME": queue, "QIFACE": interface, "QTOKEN": token}
        variables.update({k: v for k, v in extra.items() if v is not None})
        query = urlencode({"endpoint": f"Local/{action}@{QUEUE_HELPER_CONTEXT}/n",
                           "app": self.link.config.app})
        try:
            await self.link.rest.send_json("POST", f"channels?{query}", {"variables": variables})
            body = await asyncio.wait_for(future, HELPER_TIMEOUT)
        except AriError as exc:
            raise QueueError(f"queue {action} on {queue} failed: {exc.message}") from None
        except TimeoutError:
            raise QueueError(f"queue {action} on {queue}: no answer from the dialplan helper;"
                             f" check that context {QUEUE_HELPER_CONTEXT} (asterisk-conf"
                             " extensions_astcti.conf) is loaded") from None
        finally:
            self._pending.pop(token, None)
        return str(body.get("status", ""))

    async def add(self, queue: str, interface: str, state_interface: str, member_name: str,
                  paused: bool, reason: str = "") -> str:
        options = ("p" if paused else "") + (f"r({reason})" if paused and reason else "")
        return await self.run("add", queue, interface, QSTATEIFACE=state_interface,
                              QMEMBERNAME=member_name, QOPTIONS=options)

    async def remove(self, queue: str, interface: str) -> str:
        return await self.run("remove", queue, interface)

    async def pause(self, queue: str, interface: str, reason: str) -> str:
        return await self.run("pause", queue, interface, QREASON=reason)

    async def unpause(self, queue: str, interface: str) -> str:
        return await self.run("unpause", queue, interface)

    # -- reads ----------------------------------------------------------------------------------
    async def read(self, *expressions: str, keep: bool = False) -> list[str]:
        """Evaluate dialplan functions on a Local channel that is never dialled: a throw-away
        one, or (`keep`, for a poller) one probe kept until `close_probe`."""
        if keep:
            try:
                return await self._evaluate(await self._probe_id(), expressions)
            except QueueError:
                await self.close_probe()  # gone (hung up by someone): one fresh try
                return await self._evaluate(await self._probe_id(), expressions)
        channel = await self._create_probe()
        try:
            return await self._evaluate(channel, expressions)
        finally:
            await self._hangup(channel)

    async def _create_probe(self) -> str:
        channel = await self.link.call("channels", "create",
                                       endpoint=f"Local/read@{QUEUE_HELPER_CONTEXT}",
                                       app=self.link.config.app)
        return str(channel["id"])

    async def _probe_id(self) -> str:
        if self._probe is None:
            self._probe = await self._create_probe()
        return self._probe

    async def _evaluate(self, channel: str, expressions: tuple[str, ...]) -> list[str]:
        values = []
        for expr in expressions:
            try:
                reply = await self.link.call("channels", "getChannelVar", channelId=channel,
                                             variable=expr)
            except AriError as exc:
                raise QueueError(f"cannot read {expr} from Asterisk: {exc.message}") from None
            values.append(str((reply or {}).get("value", "")))
        return values

    async def _hangup(self, channel: str) -> None:
        try:
            await self.link.call("channels", "hangup", channelId=channel)
        except (AriError, AstctiError) as exc:
            log.debug("probe channel hangup: %s", exc)

    async def close_probe(self) -> None:
        """Hang up the kept probe channel (the poller stopped, or it is no longer needed)."""
        if self._probe is not None:
            channel, self._probe = self._probe, None
            if self.link.up:
                await self._hangup(channel)

    async def exists(self, queues: list[str]) -> dict[str, bool]:
        values = await self.read(*(f"QUEUE_EXISTS({q})" for q in queues))
        return {q: v == "1" for q, v in zip(queues, values)}

    async def membership(self, queues: list[str], interface: str) -> dict[str, bool | None]:
        """Per queue: None (not a member), False (member, ready) or True (member, paused)."""
        lists = await self.read(*(f"QUEUE_MEMBER_LIST({q})" for q in queues))
        members = {q: interface in [m.strip() for m in v.split(",") if m.strip()]
                   for q, v in zip(queues, lists)}
        asked = [q for q in queues if members[q]]
        paused = await self.read(*(f"QUEUE_MEMBER({q},paused,{interface})" for q in asked))
        out: dict[str, bool | None] = {q: None for q in queues}
        out.update({q: v == "1" for q, v in zip(asked, paused)})
        return out

    async def waiting(self, queue: str, keep: bool = False) -> list[str]:
        """Channel names of the callers waiting in the queue, by position (1 first)."""
        (count,) = await self.read(f"QUEUE_WAITING_COUNT({queue})", keep=keep)
        n = int(count) if count.isdigit() else 0
        if not n:
            return []
        return await self.read(*(f"QUEUE_GET_CHANNEL({queue},{i})" for i in range(1, n + 1)),
                               keep=keep)
