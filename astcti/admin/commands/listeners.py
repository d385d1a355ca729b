"""show tcp, add tcp, remove tcp: the client listeners."""

from __future__ import annotations

from typing import Any

from astcti.admin.language import Arg, CommandError, Context, command, table
from dataclasses import replace

from astcti.api.listeners import PROTOCOLS, OpenToEveryone
from astcti.api.listeners import validate as validate_listener
from astcti.errors import AstctiError
from astcti.store.store import ListenerRow

LOOPBACK_BINDS = ("127.0.0.1", "::1", "localhost")


@command("show tcp", doc="List the client listeners (port, bind, allow, protocol, auth, state).",
         example="show tcp", group="listeners")
async def _show_tcp(ctx: Context, args: dict[str, Any]) -> str:
    daemon = ctx.daemon
    rows = [[str(r.port), r.bind, r.allow, r.protocol, r.auth] +
            ([daemon.listener_state(r.port)] if daemon else []) for r in ctx.store.listeners()]
    header = ["port", "bind", "allow", "protocol", "auth"] + (["state"] if daemon else [])
    return table(rows, header) or "no listeners: add one with `add tcp ...`"


@command("add tcp", Arg("PORT", "port", doc="TCP port, 1-65535"),
         Arg("BIND", "bind", doc="address to listen on: 127.0.0.1 (this host only), an IP, or *"
                                 " (every address)"),
         Arg("ALLOW", "allow", doc="who may connect: * or a comma list of CIDRs"),
         Arg("custom", "custom", doc="the word custom (seed syntax)"),
         Arg("PROTOCOL", "protocol", doc=f"{', '.join(PROTOCOLS)}"),
         Arg("AUTH", "auth", optional=True, doc="auth=token (default: login required) or"
                                                " auth=none"),
         doc="Open a client listener now and keep it across restarts (same port: replaced)."
             " auth=none needs ALLOW to name the hosts that may use it (--force: everyone).",
         example="add tcp 9011 127.0.0.1 * custom astctiws", force=True, group="listeners")
async def _add_tcp(ctx: Context, args: dict[str, Any]) -> str:
    row = ListenerRow(args["PORT"], args["BIND"], args["ALLOW"], args["PROTOCOL"],
                      args.get("AUTH", "token"))
    try:
        validate_listener(row)
    except OpenToEveryone as exc:
        if not ctx.force:
            raise CommandError(str(exc), confirm=f"port {row.port}: let every address use it"
                                                 " without login?") from None
        row = replace(row, forced=True)
        ctx.warnings.append(f"port {row.port} accepts every address without login (forced):"
                            " restrict ALLOW to the CRM hosts as soon as you can")
    except AstctiError as exc:
        raise CommandError(str(exc)) from None
    if row.bind not in LOOPBACK_BINDS:
        if row.auth == "none":
            ctx.warnings.append(f"port {row.port} listens on {row.bind} without login"
                                f" (auth=none): anyone allowed by {row.allow!r} can use it")
        elif row.allow == "*":
            ctx.warnings.append(f"port {row.port} listens on {row.bind} for every address:"
                                " restrict ALLOW to your networks")
    replaced = row.port in {r.port for r in ctx.store.listeners()}
    if ctx.daemon is not None:
        try:  # opens it, then stores it; on failure the old one is back, the store unchanged
            await ctx.daemon.add_listener(row)
        except AstctiError as exc:
            raise CommandError(str(exc)) from None
        state = "listening now"
    else:
        ctx.store.add_listener(row)
        state = "opens when astcti starts or reloads"
    what = "replaced" if replaced else "added"
    return (f"listener {row.port} {what}: {row.protocol} on {row.bind}:{row.port}, allow"
            f" {row.allow}, auth {row.auth}; {state}")


@command("remove tcp", Arg("PORT", "listener-port", doc="a configured listener port"),
         doc="Close a client listener (its clients are disconnected) and forget it.",
         example="remove tcp 9011", group="listeners")
async def _remove_tcp(ctx: Context, args: dict[str, Any]) -> str:
    port = args["PORT"]
    if port not in {r.port for r in ctx.store.listeners()}:
        raise CommandError(f"no listener on port {port}: see `show tcp`")
    ctx.store.remove_listener(port)
    if ctx.daemon is not None:
        closed = await ctx.daemon.close_listener(port)
        return f"listener {port} removed" + (" and closed" if closed else "")
    return f"listener {port} removed"
