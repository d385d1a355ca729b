"""show extensions, add extension, set extension, remove extension."""

from __future__ import annotations

from typing import Any

from astcti.admin.language import VALIDATORS, Arg, CommandError, Context, command, table
from astcti.cti.directory import TECHNOLOGIES
from astcti.errors import AstctiError
from astcti.pbx.ari import AriError


@command("show extensions", doc="List the configured extensions and which link serves each.",
         example="show extensions", group="extensions")
async def _show_extensions(ctx: Context, args: dict[str, Any]) -> str:
    rows = []
    default = ctx.store.get_parameter("acti_answer", "reoffer") or "reoffer"
    for ext in ctx.store.extensions():
        row = [ext.number, f"{ext.technology}/{ext.number}"]
        if ctx.daemon is not None:
            link, up, monitors = ctx.daemon.extension_state(ext.number)
            ambiguous = ctx.daemon.directory.ambiguous(ext.number)
            state = ("ambiguous: on " + ", ".join(ambiguous) if ambiguous
                     else "up" if up else "not served")
            row += [(link or ext.link or "-") + (" (pinned)" if ext.link else ""), state,
                    str(monitors)]
        elif ext.link:
            row[1] += f" (pinned to {ext.link})"
        rows.append(row + [ext.answer or f"{default} (default)"])
    header = ["extension", "endpoint"] + (["link", "state", "monitors"] if ctx.daemon else []) \
        + ["answer"]
    return table(rows, header) or "no extensions: add one with `add extension NUM [TECH]`"


@command("add extension", Arg("NUM", "new-extension", doc="the extension number"),
         Arg("TECH", "technology", optional=True,
             doc=f"{', '.join(TECHNOLOGIES)} (default: parameter acti_defaultexttype)"),
         doc="Watch an extension: clients can monitor it at once.",
         example="add extension 105 PJSIP", group="extensions")
async def _add_extension(ctx: Context, args: dict[str, Any]) -> str:
    number = args["NUM"]
    default = ctx.store.get_parameter("acti_defaultexttype", "PJSIP") or "PJSIP"
    tech = args.get("TECH") or VALIDATORS["technology"](default)
    existing = {e.number: e.technology for e in ctx.store.extensions()}
    if existing.get(number) == tech:
        return f"extension {number} ({tech}/{number}) is already configured: nothing changed"
    ctx.store.add_extension(number, tech)
    verb = "changed to" if number in existing else "added:"
    if ctx.daemon is None:
        return f"extension {number} {verb} {tech}/{number}; watched when astcti starts or reloads"
    try:
        served_by = await ctx.daemon.watch_extension(number, tech)
    except (AriError, AstctiError) as exc:  # e.g. ARI refused the subscription
        return (f"extension {number} {verb} {tech}/{number}; subscribing failed ({exc}): it is"
                " retried when the link reconnects")
    if served_by:
        return f"extension {number} {verb} {tech}/{number}, watched on {served_by}"
    return (f"extension {number} {verb} {tech}/{number}; {ctx.daemon.why_unserved(number)}"
            ": it is watched as soon as an Asterisk has it")


@command("pin extension", Arg("NUM", "extension", doc="a configured extension"),
         Arg("LINK", "link", doc="the Asterisk link that serves it: acti_tlink_NN (or NN)"),
         doc="Serve an extension from one Asterisk only: the number exists on several PBXs"
             " and astcti will not guess which phone it is.",
         example="pin extension 150 acti_tlink_02", group="extensions")
async def _pin_extension(ctx: Context, args: dict[str, Any]) -> str:
    return await _pin(ctx, args["NUM"], args["LINK"])


@command("unpin extension", Arg("NUM", "extension", doc="a configured extension"),
         doc="Serve an extension from whichever Asterisk has its endpoint (one only).",
         example="unpin extension 150", group="extensions")
async def _unpin_extension(ctx: Context, args: dict[str, Any]) -> str:
    return await _pin(ctx, args["NUM"], "")


async def _pin(ctx: Context, number: str, link: str) -> str:
    """Pin `number` to `link` ("" unpins): stored, then applied by a running daemon. One path
    for both words so a pin and an unpin are stored, applied and reported alike."""
    if not ctx.store.pin_extension(number, link):
        raise CommandError(f"extension {number} is not configured: see `show extensions`")
    if link and link not in ctx.store.link_parameters():
        ctx.warnings.append(f"{link} is not configured: the extension is served by no link"
                            f" until `update parameter {link} ...` sets it")
    done = "pinned" if link else "unpinned"
    where = f"{done} to {link}" if link else done
    if ctx.daemon is None:
        return f"extension {number} {where}; applies when astcti starts or reloads"
    served = await ctx.daemon.pin_extension(number, link)
    if served:
        return f"extension {number} {done}: served by {served}"
    return f"extension {number} {where}; {ctx.daemon.why_unserved(number)}"


@command("set extension", Arg("NUM", "extension", doc="a configured extension"),
         Arg("answer", "answer-word", doc="the setting: answer"),
         Arg("MODE", "answer", doc="talk (the phone honours SIP NOTIFY Event: talk; re-offer if"
                                   " it does not go off-hook), reoffer (ring it again with"
                                   " auto-answer headers), none (answered by hand only), or"
                                   " default (parameter acti_answer)"),
         doc="Say how the `answer` request takes this extension's ringing phone off-hook"
             " (docs/call-control.md lists what each phone honours).",
         example="set extension 101 answer talk", group="extensions")
async def _set_extension(ctx: Context, args: dict[str, Any]) -> str:
    number, mode = args["NUM"], args["MODE"]
    stored = "" if mode == "default" else mode
    if not ctx.store.set_extension_answer(number, stored):
        raise CommandError(f"extension {number} is not configured: see `show extensions`")
    if ctx.daemon is not None:
        ctx.daemon.set_extension_answer(number, stored)
    if mode == "default":
        default = ctx.store.get_parameter("acti_answer", "reoffer") or "reoffer"
        return f"extension {number} answers as parameter acti_answer says ({default})"
    return f"extension {number}: answer by {_ANSWER_WORDS[mode]}"


_ANSWER_WORDS = {"talk": "SIP NOTIFY Event: talk (re-offer if the phone stays ringing)",
                 "reoffer": "re-offering the call with auto-answer headers",
                 "none": "hand only: the answer request is refused"}


@command("remove extension", Arg("NUM", "extension", doc="a configured extension"),
         doc="Stop watching an extension; if clients monitor it, confirm or pass --force"
             " (they receive linkdown).",
         example="remove extension 105", force=True, group="extensions")
async def _remove_extension(ctx: Context, args: dict[str, Any]) -> str:
    number = args["NUM"]
    if number not in {e.number for e in ctx.store.extensions()}:
        raise CommandError(f"extension {number} is not configured: see `show extensions`")
    daemon = ctx.daemon
    watchers = daemon.extension_state(number)[2] if daemon else 0
    if watchers and not ctx.force:
        raise CommandError(f"extension {number} is monitored by {watchers} client(s): add"
                           " --force to remove it anyway",
                           confirm=f"extension {number} is monitored by {watchers} client(s):"
                                   " remove it anyway?")
    ctx.store.remove_extension(number)
    if daemon is None:
        return f"extension {number} removed; astcti stops watching it when it starts"
    told = await daemon.unwatch_extension(number, "extension removed by the administrator")
    extra = f"; {told} monitoring client(s) told (linkdown)" if told else ""
    return f"extension {number} removed and no longer watched{extra}"
