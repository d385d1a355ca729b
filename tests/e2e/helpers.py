"""What the lab's call control tests share: a monitoring client, ordered event waits, who
talks with whom in Asterisk's bridges, a customer calling an agent, SIP header reads, the
lab daemon's parameters."""

from __future__ import annotations

import asyncio
from typing import Any

from astcti.client import CtiClient
from astcti.store import Store
from tests.lab import Lab
from tests.lab.ari import bridges, channels
from tests.lab.sipp import SippProcess, lift_handset


def set_parameters(lab: Lab, **values: str) -> None:
    """Change the lab daemon's parameters in its store (the daemon reads them when it uses
    them, as after `update parameter`)."""
    store = Store.open(lab.config.db)
    try:
        for name, value in values.items():
            store.set_parameter(name, value)
    finally:
        store.close()


async def monitor(cti, *extensions: str) -> CtiClient:
    client: CtiClient = await cti()
    for ext in extensions:
        await client.request("startmonitor", extension=ext)
    return client


async def monitor_when_served(cti, *extensions: str) -> CtiClient:
    """`monitor` right after astcti (re)started: its link comes up just after its listeners."""
    client: CtiClient = await cti()
    for ext in extensions:
        for _ in range(150):
            reply = await client.request("startmonitor", extension=ext, check=False)
            if reply["result"] == "success":
                break
            await asyncio.sleep(0.1)
    return client


async def expect(client: CtiClient, name: str, extension: str, timeout: float = 20.0,
                 **match: Any) -> dict[str, Any]:
    """The extension's next `name` event after the previous one expected for that extension
    (events of different extensions interleave in any order)."""
    cursors: dict[str, int] = client.__dict__.setdefault("_ext_cursors", {})
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for i in range(cursors.get(extension, 0), len(client.events)):
            e = client.events[i]
            if e.get("event") == name and e.get("extension") == extension and all(
                    e.get(k) == v for k, v in match.items()):
                cursors[extension] = i + 1
                return e
        if asyncio.get_running_loop().time() > deadline:
            seen = [(e.get("event"), e.get("callid")) for e in
                    client.events[cursors.get(extension, 0):] if e.get("extension") == extension]
            raise TimeoutError(f"no {name} on {extension} within {timeout} s; after: {seen}")
        await asyncio.sleep(0.05)


def bridge_members(lab: Lab) -> list[set[str]]:
    """The channel names in each of Asterisk's bridges."""
    names = {c["id"]: c["name"].rsplit("-", 1)[0] for c in channels(lab)}
    return [{names.get(cid, cid) for cid in b["channels"]} for b in bridges(lab)]


async def customer_talking_to(lab: Lab, client: CtiClient, ext: str,
                              talk_ms: int = 30000) -> tuple[SippProcess, str]:
    """A customer calls `ext` through the trunk and the agent's phone answers."""
    customer = lab.call(ext, caller="0912345678", talk_ms=talk_ms)
    est = await expect(client, "established", ext)
    return customer, est["callid"]


def stop(lab: Lab, *procs: SippProcess) -> None:
    for proc in procs:
        proc.stop()
    for ext in list(lab.phones):
        lab.stop_phone(ext)


def header(invite: str, name: str) -> str:
    for line in invite.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def dialogs(phone: SippProcess) -> list[str]:
    """Call-IDs of the calls a phone was offered (INVITEs opening a dialog, not re-INVITEs)."""
    out = []
    for invite in phone.received("INVITE"):
        if ";tag=" not in header(invite, "To"):
            call_id = header(invite, "Call-ID")
            if call_id not in out:
                out.append(call_id)
    return out


def lift(lab: Lab, ext: str) -> None:
    """The agent picks up the ringing phone by hand."""
    lift_handset(lab.config.phones[ext], ext)


async def set_answer(lab: Lab, ext: str, mode: str) -> None:
    """`set extension EXT answer MODE` through astcti-shell against the lab's daemon."""
    from tests.admin.conftest import run_shell

    out = await asyncio.to_thread(run_shell, "--socket", lab.config.admin_socket, "-c",
                                  f"set extension {ext} answer {mode}")
    assert out.returncode == 0, (out.stdout, out.stderr)
