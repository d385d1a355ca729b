"""show parameters, show parameter, update parameter, encrypt password."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from astcti.admin.language import (
    VALIDATORS, Arg, CommandError, Context, command, table,
)
from astcti.cti.dialpolicy import PolicyError, parse_policy
from astcti.errors import AstctiError
from astcti.pbx.linkconfig import parse_amilink, parse_link
from astcti.secrets import encrypt
from astcti.store.store import AMI_LINK_PARAMETER, LINK_PARAMETER

QUEUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _number(minimum: float, maximum: float, integer: bool) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            number = int(value) if integer else float(value)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise CommandError(f"expected {kind} between {minimum:g} and {maximum:g}, not"
                               f" {value!r}") from None
        if not minimum <= number <= maximum:
            raise CommandError(f"{value} is out of range: use {minimum:g} to {maximum:g}")
        return str(number)
    return check


def _one_of(*options: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value.lower() not in options:
            raise CommandError(f"{value!r} is not allowed: use one of {', '.join(options)}")
        return value.lower()
    return check


def _queues(value: str) -> str:
    names = [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        if not QUEUE_RE.match(name):
            raise CommandError(f"queue name {name!r} is not valid: use letters, digits, _.-")
    return ",".join(names)


def _dial_context(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,79}", value.strip()):
        raise CommandError(f"dialplan context {value[:40]!r} is not valid: use letters, digits,"
                           " _.- (e.g. from-internal)")
    return value.strip()


def _dial_policy(value: str) -> str:
    entries = [e.strip() for e in value.split(",") if e.strip()]
    try:
        parse_policy(",".join(entries))
    except PolicyError as exc:
        raise CommandError(f"{exc} (e.g. internal,_0[1-7]X.,_00X.)") from None
    return ",".join(entries)


ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\]"
                       r"(:[0-9]{1,5})?$")


def _origins(value: str) -> str:
    origins = [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
    for origin in origins:
        if origin != "*" and not ORIGIN_RE.match(origin):
            raise CommandError(f"origin {origin[:60]!r} is not valid: use scheme://host[:port]"
                               " as browsers send it (https://crm.example.com), or *")
    return ",".join(origins)


def _cafile(value: str) -> str:
    path = value.strip()
    if not path:
        return ""
    try:
        text = open(path, encoding="ascii", errors="replace").read(1 << 20)
    except OSError as exc:
        raise CommandError(f"cannot read CA file {path}: {exc.strerror}: give the path of a"
                           " PEM file readable by astcti") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise CommandError(f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return path


def _screenpop_url(value: str) -> str:
    value = value.strip()
    if value and not re.fullmatch(r"https?://[^\s\"'<>]{1,1000}", value):
        raise CommandError(f"{value[:40]!r} is not an http(s) URL: e.g."
                           " https://crm.example/lookup?phone={calling} (empty: no screen pop)")
    return value


#: per-parameter validators: value text -> normalised value text (CommandError if invalid)
PARAMETER_RULES: dict[str, Callable[[str], str]] = {
    "acti_defaultexttype": VALIDATORS["technology"],
    "acti_heartbeat": _number(0.5, 300, integer=False),
    "acti_loginstate": _one_of("ready", "notready"),
    "acti_acwtimeout": _number(0, 86400, integer=True),
    "acti_autoacw": _one_of("0", "1"),
    "acti_agentgroups": _queues,
    "acti_flavour": _one_of("asterisk", "freepbx"),
    "acti_resume_size": _number(0, 1_000_000, integer=True),
    "acti_resume_age": _number(0, 86400, integer=False),
    "acti_dial_context": _dial_context,
    "acti_dial_agent": _dial_policy,
    "acti_dial_supervisor": _dial_policy,
    "acti_dial_admin": _dial_policy,
    "acti_origins": _origins,
    "acti_ari_cafile": _cafile,
    "acti_screenpop_url": _screenpop_url,
    "acti_screenpop_mode": _one_of("tab", "iframe"),
    "acti_servicelevel": _number(1, 3600, integer=True),
    "acti_wallboard_queues": _queues,
}


#: parameters that may be created, besides acti_tlink_NN: an agent's own default queues (issue 5)
AGENT_GROUPS_PARAMETER = re.compile(r"^acti_agentgroups_[A-Za-z0-9_.-]{1,32}$")


def _mask_link(value: str) -> str:
    """A link parameter without its encrypted password (shown as ***)."""
    head, sep, _token = value.rpartition(",")
    return f"{head},***" if sep else value


def _is_link(name: str) -> bool:
    """acti_tlink_NN (ARI) or acti_amilink_NN (AMI): a link parameter with a secret."""
    return bool(LINK_PARAMETER.match(name) or AMI_LINK_PARAMETER.match(name))


def _show_value(name: str, value: str) -> str:
    return _mask_link(value) if _is_link(name) and value else value


@command("show parameters", doc="List every parameter, its value and what it does.",
         example="show parameters", group="parameters")
async def _show_parameters(ctx: Context, args: dict[str, Any]) -> str:
    descriptions = ctx.store.parameter_descriptions()
    rows = [[n, _show_value(n, v), descriptions.get(n, "")]
            for n, v in ctx.store.parameters().items()]
    return table(rows, ["parameter", "value", "meaning"]) or "no parameters"


def _known_parameter(ctx: Context, name: str) -> str:
    value = ctx.store.get_parameter(name)
    if value is None:
        near = difflib.get_close_matches(name, list(ctx.store.parameters()), n=1)
        hint = f": did you mean {near[0]}?" if near else ": see `show parameters`"
        raise CommandError(f"unknown parameter {name}{hint}")
    return value


@command("show parameter", Arg("NAME", "parameter", doc="a parameter name"),
         doc="Show one parameter.", example="show parameter acti_defaultexttype",
         group="parameters")
async def _show_parameter(ctx: Context, args: dict[str, Any]) -> str:
    name = args["NAME"]
    value = _known_parameter(ctx, name)
    desc = ctx.store.parameter_descriptions().get(name, "")
    return f"{name} = {_show_value(name, value)}" + (f"  ({desc})" if desc else "")


@command("update parameter", Arg("NAME", "parameter", doc="a parameter name"),
         Arg("VALUE", "value", rest=True,
             doc='the new value (quote it if it has spaces; "" for empty)'),
         doc="Change a parameter, after checking its value; the daemon applies it at once"
             " (acti_tlink_NN restarts that Asterisk's ARI link, acti_amilink_NN its AMI link).",
         example="update parameter acti_defaultexttype PJSIP", group="parameters")
async def _update_parameter(ctx: Context, args: dict[str, Any]) -> str:
    name, value = args["NAME"], args.get("VALUE", "").strip()
    if "\n" in value or len(value) > 2048:
        raise CommandError(f"{name}: value must be one line of at most 2048 characters")
    is_link = _is_link(name)
    per_agent = bool(AGENT_GROUPS_PARAMETER.match(name))
    if not is_link and not per_agent:
        _known_parameter(ctx, name)
    if per_agent:
        value = _queues(value)
    if is_link and value:
        cipher = ctx.daemon.cipher if ctx.daemon is not None else ctx.cipher
        parser = parse_link if LINK_PARAMETER.match(name) else parse_amilink
        try:
            parser(name, value, cipher)  # format and decryptability
        except AstctiError as exc:
            raise CommandError(str(exc)) from None
        if cipher is None:
            ctx.warnings.append(f"{name}: no key file, so the password was not checked: pass"
                                " --key to check it")
    elif name in PARAMETER_RULES:
        try:
            value = PARAMETER_RULES[name](value)
        except CommandError as exc:
            raise CommandError(f"{name}: {exc}") from None
    old = ctx.store.get_parameter(name)
    if is_link and not value and not old:
        raise CommandError(f"{name} is not set: nothing to remove (see `show parameters`)")
    if old == value:
        return f"{name} unchanged ({_show_value(name, value) or 'empty'})"
    description = ("Asterisk link" if LINK_PARAMETER.match(name) else
                   "Asterisk AMI link (same NN as its acti_tlink_NN)")
    ctx.store.set_parameter(name, value, description if is_link and old is None else None)
    applied = await ctx.daemon.apply_parameter(name, value) if ctx.daemon is not None else \
        "applies when astcti starts or reloads"
    shown = _show_value(name, value) or "empty"
    return f"{name} = {shown} (was {_show_value(name, old or '') or 'unset'}): {applied}"


@command("encrypt password",
         doc="Encrypt an ARI password or AMI secret with astcti's key, for acti_tlink_NN or"
             " acti_amilink_NN (prompted for).",
         example="encrypt password", secret="the ARI password", secret_twice=True,
         group="parameters")
async def _encrypt_password(ctx: Context, args: dict[str, Any]) -> str:
    cipher = ctx.daemon.cipher if ctx.daemon is not None else ctx.cipher
    if cipher is None:
        raise CommandError("no key file: pass --key PATH (offline) or run it against the daemon")
    if not ctx.secret:
        raise CommandError("empty password: nothing encrypted")
    return encrypt(cipher, ctx.secret)
