"""What call control asks of Asterisk, as plain operations (the only part that calls ARI).

Services and Stasis reactions speak in terms of this adapter (create a leg, originate, bridge,
hold music, NOTIFY talk...), so their logic reads on its own and a unit test swaps the adapter
for a recording fake.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from astcti.pbx.ari import AriError, AriEvent
from astcti.pbx.dialplan import NOTIFY_HELPER_CONTEXT, NOTIFY_USEREVENT

if TYPE_CHECKING:
    from astcti.cti.directory import Directory
    from astcti.pbx.link import AsteriskLink

log = logging.getLogger(__name__)

_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def query_string(params: dict[str, Any]) -> str:
    """A URI query, each value percent-encoded only when it needs it (a dial string's `/`): on
    every call astcti originates, where urlencode's generality showed in the profile."""
    parts = []
    for name, value in params.items():
        text = str(value)
        parts.append(f"{name}={text if _UNRESERVED.fullmatch(text) else quote(text, safe='')}")
    return "&".join(parts)


NOTIFY_TIMEOUT = 5.0
STASIS_ENTRY_TIMEOUT = 10.0  # a created channel not in Stasis by then will not get there


#: 40 random bits per process, then a counter: ids unique across restarts and daemons without
#: a system call each (uuid4 read the OS's random source for every id: ~40 us on a cold host,
#: before every makecall's originate)
_ID_PREFIX = secrets.token_hex(5)
_id_counter = itertools.count(secrets.randbits(32))


def new_id() -> str:
    """Channel and bridge ids astcti chooses (so it knows them before Asterisk reports them):
    `astcti-` and 20 hex digits."""
    return f"astcti-{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFF:010x}"


async def _originated(sent: Awaitable[Any], endpoint: str) -> None:
    try:
        await sent
    except AriError as exc:
        raise AriError(exc.status, f"channels.originate {endpoint}: {exc.message}") from None


class ControlPbx:
    """Call control's operations on the Asterisk of each link."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self._notify: dict[str, asyncio.Future[str]] = {}
        # channels made by `create`, not dialled yet: set once in Stasis (or gone)
        self._entering: dict[str, asyncio.Event] = {}

    def link(self, name: str) -> AsteriskLink:
        return self.directory.links[name]

    def app(self, link: str) -> str:
        return self.link(link).config.app

    async def call(self, link: str, resource: str, operation: str, **params: Any) -> Any:
        try:
            return await self.link(link).call(resource, operation, **params)
        except AriError as exc:
            log.debug("ARI %s.%s %s: %s", resource, operation, params, exc.message)
            raise AriError(exc.status, f"{resource}.{operation}: {exc.message}") from None

    async def quiet(self, link: str, resource: str, operation: str, **params: Any) -> None:
        """An operation whose failure only means the object is already gone."""
        try:
            await self.call(link, resource, operation, **params)
        except AriError as exc:
            if exc.status not in (404, 409, 422):
                log.warning("%s.%s %s: %s", resource, operation, params, exc.message)
        except Exception as exc:  # link down: the resync will tell
            log.info("%s.%s %s: %s", resource, operation, params, exc)

    # -- channels -------------------------------------------------------------------------------
    async def create(self, link: str, endpoint: str, channel_id: str, *,
                     originator: str | None = None,
                     variables: dict[str, str] | None = None) -> None:
        """A channel in Stasis from birth, not dialled yet (variables set before Stasis)."""
        query = {"endpoint": endpoint, "app": self.app(link), "appArgs": "leg",
                 "channelId": channel_id}
        if originator:
            query["originator"] = originator
        self._entering[channel_id] = asyncio.Event()
        try:
            await self.link(link).rest.send_json(
                "POST", f"channels/create?{query_string(query)}", {"variables": variables or {}})
        except AriError as exc:
            self._entering.pop(channel_id, None)
            raise AriError(exc.status, f"channels.create {endpoint}: {exc.message}") from None
        except BaseException:
            self._entering.pop(channel_id, None)
            raise

    async def originate(self, link: str, endpoint: str, channel_id: str, *, app_args: str,
                        timeout: int, variables: dict[str, str] | None = None,
                        caller_id: str | None = None) -> None:
        """One request: Asterisk calls the endpoint at once; the channel enters Stasis (with
        `app_args`) only when answered."""
        await self.start_originate(link, endpoint, channel_id, app_args=app_args,
                                   timeout=timeout, variables=variables, caller_id=caller_id)

    def start_originate(self, link: str, endpoint: str, channel_id: str, *, app_args: str,
                        timeout: int, variables: dict[str, str] | None = None,
                        caller_id: str | None = None) -> Awaitable[None]:
        """`originate`, sent before this returns (makecall's bookkeeping follows it); await
        Asterisk's answer."""
        query: dict[str, Any] = {"endpoint": endpoint, "app": self.app(link),
                                 "appArgs": app_args, "channelId": channel_id,
                                 "timeout": timeout}
        if caller_id:
            query["callerId"] = caller_id
        try:
            sent = self.link(link).rest.start_json("POST", f"channels?{query_string(query)}",
                                                   {"variables": variables or {}})
        except AriError as exc:
            raise AriError(exc.status, f"channels.originate {endpoint}: {exc.message}") \
                from None
        return _originated(sent, endpoint)

    async def dial(self, link: str, channel_id: str, caller: str | None, timeout: int) -> None:
        """Dial a channel made by `create`. Asterisk answers `create` before the channel's own
        thread has put it in Stasis; a dial in between gets 409 'not in Stasis' (seen on a busy
        host): then wait for the channel's StasisStart and dial again."""
        entering = self._entering.get(channel_id)
        try:
            try:
                await self.call(link, "channels", "dial", channelId=channel_id, caller=caller,
                                timeout=timeout)
                return
            except AriError as exc:
                if entering is None or exc.status != 409 or "not in Stasis" not in exc.message:
                    raise
            try:
                await asyncio.wait_for(entering.wait(), STASIS_ENTRY_TIMEOUT)
            except asyncio.TimeoutError:
                raise AriError(409, f"channels.dial: {channel_id} not in Stasis after"
                                    f" {STASIS_ENTRY_TIMEOUT:.0f} s") from None
            await self.call(link, "channels", "dial", channelId=channel_id, caller=caller,
                            timeout=timeout)
        finally:
            self._entering.pop(channel_id, None)

    async def hangup(self, link: str, channel_id: str, reason: str = "normal") -> None:
        await self.quiet(link, "channels", "hangup", channelId=channel_id, reason=reason)

    async def answer(self, link: str, channel_id: str) -> None:
        await self.call(link, "channels", "answer", channelId=channel_id)

    async def ring(self, link: str, channel_id: str) -> None:
        await self.quiet(link, "channels", "ring", channelId=channel_id)

    async def dtmf(self, link: str, channel_id: str, digits: str) -> None:
        await self.call(link, "channels", "sendDTMF", channelId=channel_id, dtmf=digits)

    async def set_var(self, link: str, channel_id: str, variable: str, value: str) -> None:
        await self.quiet(link, "channels", "setChannelVar", channelId=channel_id,
                         variable=variable, value=value)

    async def get_var(self, link: str, channel_id: str, variable: str) -> str:
        reply = await self.call(link, "channels", "getChannelVar", channelId=channel_id,
                                variable=variable)
        return str((reply or {}).get("value", ""))

    # -- bridges --------------------------------------------------------------------------------
    async def new_bridge(self, link: str, bridge_id: str) -> None:
        await self.call(link, "bridges", "create", type="mixing", bridgeId=bridge_id,
                        name="astcti")

    async def add(self, link: str, bridge_id: str, *channel_ids: str) -> None:
        """Into the bridge (out of any other Stasis bridge, in one move); several channels in
        one request (ARI's `channel` takes a comma-separated list)."""
        await self.call(link, "bridges", "addChannel", bridgeId=bridge_id,
                        channel=",".join(channel_ids))

    async def remove(self, link: str, bridge_id: str, channel_id: str) -> None:
        await self.quiet(link, "bridges", "removeChannel", bridgeId=bridge_id,
                         channel=channel_id)

    async def moh(self, link: str, bridge_id: str, on: bool) -> None:
        await self.quiet(link, "bridges", "startMoh" if on else "stopMoh", bridgeId=bridge_id)

    async def destroy(self, link: str, bridge_id: str) -> None:
        await self.quiet(link, "bridges", "destroy", bridgeId=bridge_id)

    async def list(self, link: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Asterisk's bridges and channels (for a resync)."""
        rest = self.link(link).rest
        return (await rest.call("bridges", "list") or [],
                await rest.call("channels", "list") or [])

    # -- dialplan helpers -----------------------------------------------------------------------
    async def dialplan_exists(self, link: str, context: str, destination: str) -> bool:
        """DIALPLAN_EXISTS needs a channel: a Local one, created but never dialled."""
        helper = new_id()
        try:
            await self.call(link, "channels", "create", endpoint=f"Local/check@{context}",
                            app=self.app(link), appArgs="check", channelId=helper)
        except AriError as exc:
            log.info("destination check for %s failed: %s", destination, exc.message)
            return False
        try:
            return await self.get_var(link, helper, f"DIALPLAN_EXISTS({context},{destination},1)"
                                      ) == "1"
        except AriError:
            return False
        finally:
            await self.hangup(link, helper)
            await self.quiet(link, "channels", "hangup", channelId=helper.replace(";1", ";2"))

    async def notify_talk(self, link: str, resource: str) -> str:
        """Send NOTIFY Event: talk to every contact of PJSIP endpoint `resource` through the
        `astcti-notify` dialplan helper (PJSIPNotify is a dialplan application; ARI cannot
        send a NOTIFY). Returns the helper's status: SUCCESS, FAILED, NOAPP or NOCONTACT."""
        token = uuid.uuid4().hex
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._notify[token] = future
        query = query_string({"endpoint": f"Local/talk@{NOTIFY_HELPER_CONTEXT}/n",
                           "app": self.app(link)})
        try:
            await self.link(link).rest.send_json(
                "POST", f"channels?{query}",
                {"variables": {"ANOTIFY_ENDPOINT": resource, "ANOTIFY_TOKEN": token}})
            return await asyncio.wait_for(future, NOTIFY_TIMEOUT)
        except AriError as exc:
            log.info("NOTIFY talk to %s: %s", resource, exc.message)
            return "FAILED"
        except TimeoutError:
            log.warning("NOTIFY talk to %s: no answer from the dialplan helper; check that"
                        " context %s (asterisk-conf extensions_astcti.conf) is loaded",
                        resource, NOTIFY_HELPER_CONTEXT)
            return "NOAPP"
        finally:
            self._notify.pop(token, None)

    def on_event(self, event: AriEvent) -> bool:
        """Note a created channel's entry into Stasis (or its end); resolve the helper call
        this ChannelUserevent answers. True if the event was only ours."""
        kind = event.get("type")
        if kind in ("StasisStart", "ChannelDestroyed") and self._entering:
            entering = self._entering.get((event.get("channel") or {}).get("id", ""))
            if entering is not None:
                entering.set()
            return False
        if kind != "ChannelUserevent" or event.get("eventname") != NOTIFY_USEREVENT:
            return False
        body = event.get("userevent") or {}
        future = self._notify.pop(str(body.get("token", "")), None)
        if future is not None and not future.done():
            future.set_result(str(body.get("status", "")))
        return True
