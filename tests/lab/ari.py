"""Plain ARI REST calls for lab tests: what Asterisk holds (channels, bridges), MOH, variables."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.lab.harness import Lab


def ari(lab: Lab, method: str, path: str, **params: Any) -> Any:
    """One ARI request; the decoded JSON body (None for 204)."""
    c = lab.config
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    req = urllib.request.Request(f"{c.ari_url}/ari/{path.lstrip('/')}{query}", method=method)
    token = base64.b64encode(f"{c.ari_user}:{c.ari_password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def channels(lab: Lab) -> list[dict[str, Any]]:
    return ari(lab, "GET", "channels")


def bridges(lab: Lab) -> list[dict[str, Any]]:
    return ari(lab, "GET", "bridges")


def wait_clean(lab: Lab, timeout: float = 15.0) -> None:
    """Wait until Asterisk holds no channel and no bridge; AssertionError naming the leftovers."""
    deadline = time.monotonic() + timeout
    while True:
        chans, brs = channels(lab), bridges(lab)
        if not chans and not brs:
            return
        if time.monotonic() > deadline:
            raise AssertionError("Asterisk not clean: channels "
                                 f"{[c['name'] for c in chans]}, bridges "
                                 f"{[(b['id'], b['channels']) for b in brs]}")
        time.sleep(0.2)


def force_clean(lab: Lab) -> None:
    """Hang up and destroy whatever a failed test left, so the next test starts clean."""
    for chan in channels(lab):
        try:
            ari(lab, "DELETE", f"channels/{chan['id']}")
        except urllib.error.HTTPError:
            pass
    for bridge in bridges(lab):
        try:
            ari(lab, "DELETE", f"bridges/{bridge['id']}")
        except urllib.error.HTTPError:
            pass


def wait_for(predicate, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.1)


class ChannelWatch:
    """Every channel Asterisk creates while the watch is open (an ARI app subscribed to all
    event sources): what proves that a request dialled nothing, or how many probe channels a
    poller made."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.created: list[str] = []  # channel names, in order
        self._session: Any = None
        self._ws: Any = None
        self._task: Any = None

    async def __aenter__(self) -> ChannelWatch:
        import asyncio
        import secrets

        import aiohttp

        c = self.lab.config
        self._session = aiohttp.ClientSession()
        auth = base64.b64encode(f"{c.ari_user}:{c.ari_password}".encode()).decode()
        self._ws = await self._session.ws_connect(
            f"{c.ari_url.replace('http', 'ws', 1)}/ari/events",
            params={"app": f"watch-{secrets.token_hex(4)}", "subscribeAll": "true"},
            headers={"Authorization": f"Basic {auth}"})

        async def read() -> None:
            async for msg in self._ws:
                event = json.loads(msg.data)
                if event.get("type") == "ChannelCreated":
                    self.created.append(event["channel"]["name"])

        self._task = asyncio.create_task(read())
        return self

    def named(self, prefix: str) -> list[str]:
        return [name for name in self.created if name.startswith(prefix)]

    def probes(self) -> list[str]:
        """Local channels astcti made to read queue state (one per pair: the `;1` half)."""
        return [name for name in self.named("Local/read@") if name.endswith(";1")]

    async def __aexit__(self, *exc: object) -> None:
        await self._ws.close()
        await self._task
        await self._session.close()
