"""Console words for agents: where they sit (`ipextnmap`, free seating) and their ACD passwords.

The astCTI author's console words are kept: `add ipextnmap 192.168.1.101 2611`,
`remove ipextnmap ADDRESS`, `show ipextnmap`. A client on an `auth=none` listener is known by
its address, so this map is also what such a client is allowed to act on.
"""

from __future__ import annotations

import re
from typing import Any

from astcti.admin.language import (
    VALIDATORS, Arg, CommandError, Context, command, new_password, table,
)
from astcti.cti.seating import SeatingError, normalise_address

AGENTID_RE = re.compile(r"^[0-9A-Za-z_.-]{1,32}$")
MIN_AGENT_PASSWORD = 4  # agents type it on a phone keypad or a softphone: a PIN is usual


def _address(text: str) -> str:
    try:
        return normalise_address(text)
    except SeatingError as exc:
        raise CommandError(str(exc)) from None


def _agentid(text: str) -> str:
    if not AGENTID_RE.match(text):
        raise CommandError(f"invalid agent id {text!r}: use 1-32 letters, digits or _.-")
    return text


VALIDATORS.update({"address": _address, "agentid": _agentid})


# == free seating ==================================================================================
@command("show ipextnmap",
         doc="Which extension each client address sits at (free seating; `myextension`).",
         example="show ipextnmap", group="seating")
async def _show_ipextnmap(ctx: Context, args: dict[str, Any]) -> str:
    rows = [[address, ext] for address, ext in ctx.store.ipextnmap().items()]
    return table(rows, ["address", "extension"]) or \
        "no address is mapped: add one with `add ipextnmap ADDRESS EXT`"


@command("add ipextnmap", Arg("ADDRESS", "address", doc="the client's IP address"),
         Arg("EXT", "extension", doc="a configured extension"),
         doc="Seat a client address at an extension: its `myextension`, and on an auth=none"
             " listener the only extension it may act on (same address: moved).",
         example="add ipextnmap 192.168.1.101 2611", group="seating")
async def _add_ipextnmap(ctx: Context, args: dict[str, Any]) -> str:
    address, ext = args["ADDRESS"], args["EXT"]
    if ext not in {e.number for e in ctx.store.extensions()}:
        raise CommandError(f"extension {ext} is not configured: add it first with"
                           f" `add extension {ext}`")
    before = ctx.store.ipextnmap().get(address)
    if before == ext:
        return f"address {address} already sits at extension {ext}"
    if ctx.daemon is not None:
        ctx.daemon.seat(address, ext)
        when = "in use now"
    else:
        ctx.store.map_address(address, ext)
        when = "used when astcti starts"
    moved = f" (was {before})" if before else ""
    return f"address {address} sits at extension {ext}{moved}; {when}"


@command("remove ipextnmap", Arg("ADDRESS", "address", doc="a mapped client address"),
         doc="Forget a client address's extension (its auth=none clients may then act on none).",
         example="remove ipextnmap 192.168.1.101", group="seating")
async def _remove_ipextnmap(ctx: Context, args: dict[str, Any]) -> str:
    address = args["ADDRESS"]
    if address not in ctx.store.ipextnmap():
        raise CommandError(f"address {address} is not mapped: see `show ipextnmap`")
    if ctx.daemon is not None:
        ctx.daemon.unseat(address)
    else:
        ctx.store.unmap_address(address)
    return f"address {address} removed from ipextnmap"


# == agent passwords ===============================================================================
@command("show agent passwords", doc="The ACD agent ids that have a password (never the password).",
         example="show agent passwords", group="agents")
async def _show_agent_passwords(ctx: Context, args: dict[str, Any]) -> str:
    ids = ctx.store.agents_with_password()
    return ("agents with a password: " + ", ".join(ids)) if ids else \
        "no agent has a password: any passwd is accepted at ACD login (set one with" \
        " `passwd agent AGENTID`)"


@command("passwd agent", Arg("AGENTID", "agentid", doc="the ACD agent id (e.g. 7001)"),
         doc="Set an ACD agent's password (prompted for): login/acdlogin/setstate then need it"
             " in `passwd`/`password`.",
         example="passwd agent 7001", secret="the agent's password", secret_twice=True,
         group="agents")
async def _passwd_agent(ctx: Context, args: dict[str, Any]) -> str:
    agentid, password = args["AGENTID"], new_password(ctx, MIN_AGENT_PASSWORD)
    had = ctx.store.agent_password_hash(agentid) is not None
    ctx.store.set_agent_password(agentid, password)
    return f"password of agent {agentid} {'changed' if had else 'set'}"


@command("remove agent password", Arg("AGENTID", "agentid", doc="an agent id with a password"),
         doc="Drop an ACD agent's password: its ACD login no longer checks one.",
         example="remove agent password 7001", group="agents")
async def _remove_agent_password(ctx: Context, args: dict[str, Any]) -> str:
    agentid = args["AGENTID"]
    if not ctx.store.remove_agent_password(agentid):
        raise CommandError(f"agent {agentid} has no password: see `show agent passwords`")
    return f"password of agent {agentid} removed"
