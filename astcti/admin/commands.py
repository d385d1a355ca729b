"""The astcti-shell command language, declared once as data (like the client protocol).

The seed's console words are kept (`add extension 101 PJSIP`, `update parameter NAME VALUE`,
`add tcp 9001 * * custom astctirest`, `trace on asc`). Each command is a :class:`Command`:
its words, typed arguments, one-line doc, an example, whether it works offline (`--db`, no
daemon) and its handler. The shell uses the declarations to parse, complete and prompt; the
daemon's admin server parses again (it never trusts the shell) and runs the handler with the
daemon's live objects, so a change reaches the store AND the running daemon through the same
objects the daemon itself uses. `docs/admin-shell.md` is generated from them.

Handlers validate everything before they touch anything: bad input changes nothing.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from astcti.admin.trace import CHANNEL_DOCS, CHANNELS
from astcti.api.listeners import PROTOCOLS, parse_allow
from astcti.api.listeners import validate as validate_listener
from astcti.api.protocol import EXTENSION_RE
from astcti.cti.directory import TECHNOLOGIES
from astcti.errors import AstctiError
from astcti.pbx.linkconfig import parse_link
from astcti.secrets import encrypt
from astcti.store.store import LINK_PARAMETER, ListenerRow

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from astcti.app import Daemon
    from astcti.store import Store

log = logging.getLogger(__name__)

LOOPBACK_BINDS = ("127.0.0.1", "::1", "localhost")
ROLES = ("client", "supervisor", "admin")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
PARAMETER_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
QUEUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8


class CommandError(AstctiError):
    """A command that cannot run: one line for the operator; `confirm` asks to retry with force."""

    def __init__(self, message: str, *, confirm: str | None = None) -> None:
        super().__init__(message)
        self.confirm = confirm


# -- arguments -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arg:
    """One argument: `kind` names its validator and what the shell completes for it."""

    name: str  # as shown in the usage line, e.g. NUM
    kind: str
    optional: bool = False
    rest: bool = False  # takes the rest of the line (a parameter value)
    doc: str = ""


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise CommandError(f"invalid port {text!r}: use a number between 1 and 65535")
    return int(text)


def _extension(text: str) -> str:
    if not re.match(EXTENSION_RE, text):
        raise CommandError(f"invalid extension {text!r}: use 1-32 digits, letters or *#+_.-")
    return text


def _technology(text: str) -> str:
    for tech in TECHNOLOGIES:
        if tech.lower() == text.lower():
            return tech
    raise CommandError(f"unknown technology {text!r}: use one of {', '.join(TECHNOLOGIES)}")


def _bind(text: str) -> str:
    if text in ("*", "localhost"):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise CommandError(f"invalid bind address {text!r}: use an IP address (127.0.0.1 for"
                           " this host only) or * for every address")


def _allow(text: str) -> str:
    try:
        parse_allow(text)
    except AstctiError as exc:
        raise CommandError(str(exc)) from None
    return text


def _choice(options: tuple[str, ...], what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text.lower() not in options:
            raise CommandError(f"invalid {what} {text!r}: use one of {', '.join(options)}")
        return text.lower()
    return check


def _auth(text: str) -> str:
    key, sep, value = text.partition("=")
    if key.lower() != "auth" or not sep or value.lower() not in ("token", "none"):
        raise CommandError(f"invalid option {text!r}: use auth=token (login required) or"
                           " auth=none")
    return value.lower()


def _username(text: str) -> str:
    if not USERNAME_RE.match(text):
        raise CommandError(f"invalid user name {text!r}: use 1-64 letters, digits or _.@-")
    return text


def _parameter(text: str) -> str:
    if not PARAMETER_RE.match(text):
        raise CommandError(f"invalid parameter name {text!r}: see `show parameters`")
    return text


def _keyword(word: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text.lower() != word:
            raise CommandError(f"expected the word {word!r} here, not {text!r}")
        return word
    return check


VALIDATORS: dict[str, Callable[[str], Any]] = {
    "port": _port,
    "extension": _extension,
    "new-extension": _extension,
    "technology": _technology,
    "bind": _bind,
    "allow": _allow,
    "custom": _keyword("custom"),
    "protocol": _choice(PROTOCOLS, "protocol"),
    "auth": _auth,
    "user": _username,
    "new-user": _username,
    "role": _choice(ROLES, "role"),
    "parameter": _parameter,
    "value": str,
    "onoff": _choice(("on", "off"), "switch"),
    "channel": _choice(CHANNELS, "trace channel"),
    "command": str,
}

#: kind -> fixed completions (dynamic kinds are completed from the daemon's or store's names)
CHOICES: dict[str, tuple[str, ...]] = {
    "technology": TECHNOLOGIES,
    "custom": ("custom",),
    "protocol": PROTOCOLS,
    "auth": ("auth=token", "auth=none"),
    "role": ROLES,
    "onoff": ("on", "off"),
    "channel": CHANNELS,
    "bind": ("127.0.0.1", "::1", "*"),
    "allow": ("*", "127.0.0.1/32"),
}


# -- commands --------------------------------------------------------------------------------------
@dataclass
class Context:
    """What a handler may use. `daemon` is None offline (`astcti-shell --db`)."""

    store: Store
    daemon: Daemon | None = None
    cipher: Fernet | None = None
    secret: str | None = None
    force: bool = False
    trace_sink: Callable[[str, str], None] | None = None
    warnings: list[str] = field(default_factory=list)


Handler = Callable[[Context, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    args: tuple[Arg, ...]
    doc: str
    example: str
    handler: Handler
    offline: bool = True  # works on the store alone (--db, daemon stopped)
    secret: str | None = None  # what the shell prompts for (never typed on the command line)
    secret_twice: bool = False  # ask twice and compare (new passwords)
    force: bool = False  # accepts --force
    group: str = "general"

    @property
    def phrase(self) -> str:
        return " ".join(self.words)

    @property
    def usage(self) -> str:
        parts = [self.phrase]
        for a in self.args:
            name = a.name + ("..." if a.rest else "")
            parts.append(f"[{name}]" if a.optional else name)
        if self.force:
            parts.append("[--force]")
        return " ".join(parts)


COMMANDS: dict[str, Command] = {}


def command(words: str, *args: Arg, doc: str, example: str, offline: bool = True,
            secret: str | None = None, secret_twice: bool = False, force: bool = False,
            group: str = "general") -> Callable[[Handler], Handler]:
    """Declare a command and register its handler."""

    def register(handler: Handler) -> Handler:
        key = words.lower()
        if key in COMMANDS:
            raise ValueError(f"command {key} declared twice")
        COMMANDS[key] = Command(tuple(key.split()), tuple(args), doc, example, handler,
                                offline, secret, secret_twice, force, group)
        return handler

    return register


@dataclass
class Parsed:
    command: Command
    args: dict[str, Any]
    force: bool = False


def tokenize(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=False)
    except ValueError as exc:
        raise CommandError(f"cannot read the line ({exc}): close the quote") from None


def _suggest(words: list[str]) -> str:
    """' did you mean ...?' for the nearest known command phrase, or ''."""
    typed = " ".join(words[:2]).lower()
    phrases = list(COMMANDS)
    best = difflib.get_close_matches(typed, phrases, n=1, cutoff=0.5)
    if not best:
        best = difflib.get_close_matches(words[0].lower(), phrases + [p.split()[0] for p in
                                                                       phrases], n=1, cutoff=0.6)
    if not best and len(words) >= 1:
        starts = [p for p in phrases if p.startswith(words[0].lower())]
        best = starts[:1]
    return f": did you mean `{best[0]}`?" if best else ": type `help` for the list"


def find(words: list[str]) -> tuple[Command, list[str]] | None:
    """The command whose words start the line (longest match) and the remaining tokens."""
    lowered = [w.lower() for w in words]
    for size in (3, 2, 1):
        key = " ".join(lowered[:size])
        if len(lowered) >= size and key in COMMANDS:
            return COMMANDS[key], words[size:]
    return None


def parse(tokens: list[str]) -> Parsed:
    """Check a command line against its declaration; CommandError names what is wrong."""
    if not tokens:
        raise CommandError("empty command: type `help` for the list")
    found = find(tokens)
    if found is None:
        raise CommandError(f"unknown command `{' '.join(tokens[:2])}`{_suggest(tokens)}")
    cmd, rest = found
    force = False
    if "--force" in rest:
        if not cmd.force:
            raise CommandError(f"`{cmd.phrase}` takes no --force: usage: {cmd.usage}")
        rest = [t for t in rest if t != "--force"]
        force = True
    args: dict[str, Any] = {}
    required = sum(1 for a in cmd.args if not a.optional)
    has_rest = any(a.rest for a in cmd.args)
    too_many = len(rest) > len(cmd.args) and not has_rest
    if len(rest) < required or too_many:
        raise CommandError(f"wrong number of arguments for `{cmd.phrase}`: usage: {cmd.usage}"
                           f" (e.g. {cmd.example})")
    for i, arg in enumerate(cmd.args):
        if arg.rest:
            if i < len(rest):
                args[arg.name] = " ".join(rest[i:])
            break
        if i >= len(rest):
            break
        args[arg.name] = VALIDATORS[arg.kind](rest[i])
    return Parsed(cmd, args, force)


async def execute(tokens: list[str], ctx: Context) -> str:
    """Parse and run one command; its reply text, or CommandError (nothing changed)."""
    parsed = parse(tokens)
    cmd = parsed.command
    ctx.force = ctx.force or parsed.force
    if ctx.daemon is None and not cmd.offline:
        raise CommandError(f"`{cmd.phrase}` needs the running daemon: start astcti (offline"
                           f" with --db: {', '.join(offline_commands())})")
    if cmd.secret and not ctx.secret:
        raise CommandError(f"`{cmd.phrase}` needs {cmd.secret}: astcti-shell prompts for it"
                           " (or reads it from stdin)")
    text = await cmd.handler(ctx, parsed.args)
    return "\n".join([text] + [f"warning: {w}" for w in ctx.warnings]) if ctx.warnings else text


def offline_commands() -> list[str]:
    return [c.phrase for c in COMMANDS.values() if c.offline and c.group != "shell"]


def _table(rows: list[list[str]], header: list[str]) -> str:
    if not rows:
        return ""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header)] + [line(r) for r in rows])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _age(since: datetime) -> str:
    seconds = int((datetime.now(timezone.utc) - since).total_seconds())
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# == help / quit ===================================================================================
def help_text(topic: list[str]) -> str:
    if not topic:
        width = max(len(c.usage) for c in COMMANDS.values())
        lines = ["commands (help COMMAND for details; --db offline mode runs those marked *):"]
        for cmd in COMMANDS.values():
            mark = "*" if cmd.offline else " "
            lines.append(f" {mark} {cmd.usage.ljust(width)}  {cmd.doc.splitlines()[0]}")
        return "\n".join(lines)
    found = find(topic)
    if found is None:
        matches = [c for c in COMMANDS.values() if c.words[0] == topic[0].lower()]
        if matches:
            return "\n".join(help_text([*c.words]) + "\n" for c in matches).rstrip()
        raise CommandError(f"no help for `{' '.join(topic)}`{_suggest(topic)}")
    cmd = found[0]
    lines = [f"usage: {cmd.usage}", f"  {cmd.doc}"]
    for arg in cmd.args:
        if arg.doc:
            lines.append(f"  {arg.name}: {arg.doc}")
    if cmd.secret:
        lines.append(f"  prompts for {cmd.secret} (non-interactive: the next line of stdin)")
    lines.append(f"  example: {cmd.example}")
    lines.append("  works offline (--db)" if cmd.offline else "  needs the running daemon")
    return "\n".join(lines)


@command("help", Arg("COMMAND", "command", optional=True, rest=True),
         doc="List the commands, or show one command's syntax and an example.",
         example="help add tcp", group="shell")
async def _help(ctx: Context, args: dict[str, Any]) -> str:
    return help_text(args.get("COMMAND", "").split())


@command("quit", doc="Leave the shell (also `exit` or Ctrl-D).", example="quit", group="shell")
async def _quit(ctx: Context, args: dict[str, Any]) -> str:
    return ""


@command("exit", doc="Leave the shell.", example="exit", group="shell")
async def _exit(ctx: Context, args: dict[str, Any]) -> str:
    return ""


# == parameters ====================================================================================
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


#: per-parameter validators: value text -> normalised value text (CommandError if invalid)
PARAMETER_RULES: dict[str, Callable[[str], str]] = {
    "acti_defaultexttype": _technology,
    "acti_heartbeat": _number(0.5, 300, integer=False),
    "acti_loginstate": _one_of("ready", "notready"),
    "acti_acwtimeout": _number(0, 86400, integer=True),
    "acti_autoacw": _one_of("0", "1"),
    "acti_agentgroups": _queues,
    "acti_flavour": _one_of("asterisk", "freepbx"),
    "acti_resume_size": _number(0, 1_000_000, integer=True),
    "acti_resume_age": _number(0, 86400, integer=False),
    "acti_dial_context": _dial_context,
}


#: parameters that may be created, besides acti_tlink_NN: an agent's own default queues (issue 5)
AGENT_GROUPS_PARAMETER = re.compile(r"^acti_agentgroups_[A-Za-z0-9_.-]{1,32}$")


def _mask_link(value: str) -> str:
    """A link parameter without its encrypted password (shown as ***)."""
    head, sep, _token = value.rpartition(",")
    return f"{head},***" if sep else value


def _show_value(name: str, value: str) -> str:
    return _mask_link(value) if LINK_PARAMETER.match(name) and value else value


@command("show parameters", doc="List every parameter, its value and what it does.",
         example="show parameters", group="parameters")
async def _show_parameters(ctx: Context, args: dict[str, Any]) -> str:
    descriptions = ctx.store.parameter_descriptions()
    rows = [[n, _show_value(n, v), descriptions.get(n, "")]
            for n, v in ctx.store.parameters().items()]
    return _table(rows, ["parameter", "value", "meaning"]) or "no parameters"


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
             " (acti_tlink_NN restarts that Asterisk link).",
         example="update parameter acti_defaultexttype PJSIP", group="parameters")
async def _update_parameter(ctx: Context, args: dict[str, Any]) -> str:
    name, value = args["NAME"], args.get("VALUE", "").strip()
    if "\n" in value or len(value) > 2048:
        raise CommandError(f"{name}: value must be one line of at most 2048 characters")
    is_link = bool(LINK_PARAMETER.match(name))
    per_agent = bool(AGENT_GROUPS_PARAMETER.match(name))
    if not is_link and not per_agent:
        _known_parameter(ctx, name)
    if per_agent:
        value = _queues(value)
    if is_link and value:
        cipher = ctx.daemon.cipher if ctx.daemon is not None else ctx.cipher
        try:
            parse_link(name, value, cipher)  # format and decryptability
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
    ctx.store.set_parameter(name, value, "Asterisk link" if is_link and old is None else None)
    applied = await _apply_parameter(ctx, name, value) if ctx.daemon is not None else \
        "applies when astcti starts"
    shown = _show_value(name, value) or "empty"
    return f"{name} = {shown} (was {_show_value(name, old or '') or 'unset'}): {applied}"


async def _apply_parameter(ctx: Context, name: str, value: str) -> str:
    """Make the running daemon use the new value now; the words say what happened."""
    daemon = ctx.daemon
    assert daemon is not None
    if LINK_PARAMETER.match(name):
        return await apply_link(daemon, name, value)
    if name == "acti_heartbeat":
        for link in daemon.links.values():
            link.heartbeat = float(value)
        return "used by each link from its next connection"
    if name in ("acti_resume_size", "acti_resume_age"):
        from collections import deque

        hub = daemon.hub
        if name == "acti_resume_size":
            hub.buffer_size = int(value)
            for ext, buf in list(hub.buffers.items()):
                hub.buffers[ext] = deque(buf, maxlen=hub.buffer_size)
        else:
            hub.buffer_age = float(value)
        return "applied to the resume buffers"
    if name == "acti_defaultexttype":
        return "used by the next `add extension` without a technology"
    applied = []
    for service_name, service in (daemon.services.extra if daemon.services else {}).items():
        hook = getattr(service, "apply_parameter", None)
        if hook is not None:
            result = hook(name, value)
            if hasattr(result, "__await__"):
                await result
            applied.append(service_name)
    return f"applied by {', '.join(applied)}" if applied else "stored; read where it is used"


async def apply_link(daemon: Daemon, name: str, value: str) -> str:
    """Stop the link of that parameter (if any) and start it with the new value."""
    old = daemon.links.pop(name, None)
    daemon.link_errors.pop(name, None)
    if old is not None:
        served = [e for e, n in daemon.directory.serving.items() if n == name]
        await old.stop()
        daemon.directory.remove_link(name)
        same_pbx = bool(value) and parse_link(name, value, None).base_url == old.config.base_url
        if not same_pbx:  # another (or no) Asterisk: its calls are gone for astcti
            daemon.hub.publish_all(daemon.tracker.resync(name, [], _now()))
        # (same Asterisk: the resync on reconnect reconciles the calls without false clears)
        from astcti.cti.events import LinkDown

        for ext in served:
            daemon.hub.publish(LinkDown(ext, "", _now(), link=name,
                                        reason="link reconfigured by the administrator"))
    if not value:
        return "link stopped" if old is not None else "no link to stop"
    config = parse_link(name, value, daemon.cipher)
    link = daemon.make_link(config)
    link.start()
    up = await link.wait_up(5)
    where = f"{config.host}:{config.port}"
    if up:
        return f"link {'restarted' if old else 'started'}: connected to Asterisk {link.version}" \
               f" at {where}"
    return (f"link {'restarted' if old else 'started'}: not connected yet"
            f" ({link.last_error or 'connecting'}): see `show links`")


# == extensions ====================================================================================
@command("show extensions", doc="List the configured extensions and which link serves each.",
         example="show extensions", group="extensions")
async def _show_extensions(ctx: Context, args: dict[str, Any]) -> str:
    rows = []
    counts = ctx.daemon.hub.monitor_counts() if ctx.daemon else {}
    for ext in ctx.store.extensions():
        row = [ext.number, f"{ext.technology}/{ext.number}"]
        if ctx.daemon is not None:
            link = ctx.daemon.directory.link_of(ext.number)
            row += [link.name if link else "-", "up" if link and link.up else "not served",
                    str(counts.get(ext.number, 0))]
        rows.append(row)
    header = ["extension", "endpoint"] + (["link", "state", "monitors"] if ctx.daemon else [])
    return _table(rows, header) or "no extensions: add one with `add extension NUM [TECH]`"


@command("add extension", Arg("NUM", "new-extension", doc="the extension number"),
         Arg("TECH", "technology", optional=True,
             doc=f"{', '.join(TECHNOLOGIES)} (default: parameter acti_defaultexttype)"),
         doc="Watch an extension: clients can monitor it at once.",
         example="add extension 105 PJSIP", group="extensions")
async def _add_extension(ctx: Context, args: dict[str, Any]) -> str:
    number = args["NUM"]
    default = ctx.store.get_parameter("acti_defaultexttype", "PJSIP") or "PJSIP"
    tech = args.get("TECH") or _technology(default)
    existing = {e.number: e.technology for e in ctx.store.extensions()}
    if existing.get(number) == tech:
        return f"extension {number} ({tech}/{number}) is already configured: nothing changed"
    ctx.store.add_extension(number, tech)
    verb = "changed to" if number in existing else "added:"
    if ctx.daemon is None:
        return f"extension {number} {verb} {tech}/{number}; watched when astcti starts"
    daemon = ctx.daemon
    for link in daemon.links.values():
        if link.up:
            try:  # the PBX may have gained the endpoint since the link connected
                endpoints = await link.call("endpoints", "list") or []
                link.endpoints = {f"{e['technology']}/{e['resource']}" for e in endpoints}
            except Exception as exc:  # noqa: BLE001 (the add itself still stands)
                log.info("%s: cannot refresh endpoints: %s", link.name, exc)
    try:
        served_by = await daemon.directory.add(number, tech)
    except Exception as exc:  # noqa: BLE001  e.g. ARI refused the subscription
        return (f"extension {number} {verb} {tech}/{number}; subscribing failed ({exc}): it is"
                " retried when the link reconnects")
    if served_by:
        return f"extension {number} {verb} {tech}/{number}, watched on {served_by}"
    return (f"extension {number} {verb} {tech}/{number}; {daemon.directory.why_unserved(number)}"
            ": it is watched as soon as an Asterisk has it")


@command("remove extension", Arg("NUM", "extension", doc="a configured extension"),
         doc="Stop watching an extension; if clients monitor it, confirm or pass --force"
             " (they receive linkdown).",
         example="remove extension 105", force=True, group="extensions")
async def _remove_extension(ctx: Context, args: dict[str, Any]) -> str:
    number = args["NUM"]
    if number not in {e.number for e in ctx.store.extensions()}:
        raise CommandError(f"extension {number} is not configured: see `show extensions`")
    daemon = ctx.daemon
    watchers = daemon.hub.monitor_counts().get(number, 0) if daemon else 0
    if watchers and not ctx.force:
        raise CommandError(f"extension {number} is monitored by {watchers} client(s): add"
                           " --force to remove it anyway",
                           confirm=f"extension {number} is monitored by {watchers} client(s):"
                                   " remove it anyway?")
    ctx.store.remove_extension(number)
    if daemon is None:
        return f"extension {number} removed; astcti stops watching it when it starts"
    from astcti.cti.events import LinkDown

    link = daemon.directory.link_of(number)
    if watchers:
        daemon.hub.publish(LinkDown(number, "", _now(), link=link.name if link else "",
                                    reason="extension removed by the administrator"))
        for sub in tuple(daemon.hub.monitors.get(number, ())):
            daemon.hub.detach(sub, number)
    await daemon.directory.remove(number)
    daemon.tracker.drop_extension(number)
    extra = f"; {watchers} monitoring client(s) told (linkdown)" if watchers else ""
    return f"extension {number} removed and no longer watched{extra}"


# == listeners =====================================================================================
def _listener_state(ctx: Context, port: int) -> str:
    if ctx.daemon is None or ctx.daemon.listeners is None:
        return "-"
    if port in ctx.daemon.listeners.running:
        return "listening"
    return "error: " + ctx.daemon.listeners.errors.get(port, "not open")


@command("show tcp", doc="List the client listeners (port, bind, allow, protocol, auth, state).",
         example="show tcp", group="listeners")
async def _show_tcp(ctx: Context, args: dict[str, Any]) -> str:
    rows = [[str(r.port), r.bind, r.allow, r.protocol, r.auth] +
            ([_listener_state(ctx, r.port)] if ctx.daemon else []) for r in ctx.store.listeners()]
    header = ["port", "bind", "allow", "protocol", "auth"] + (["state"] if ctx.daemon else [])
    return _table(rows, header) or "no listeners: add one with `add tcp ...`"


@command("add tcp", Arg("PORT", "port", doc="TCP port, 1-65535"),
         Arg("BIND", "bind", doc="address to listen on: 127.0.0.1 (this host only), an IP, or *"
                                 " (every address)"),
         Arg("ALLOW", "allow", doc="who may connect: * or a comma list of CIDRs"),
         Arg("custom", "custom", doc="the word custom (seed syntax)"),
         Arg("PROTOCOL", "protocol", doc=f"{', '.join(PROTOCOLS)}"),
         Arg("AUTH", "auth", optional=True, doc="auth=token (default: login required) or"
                                                " auth=none"),
         doc="Open a client listener now and keep it across restarts (same port: replaced).",
         example="add tcp 9011 127.0.0.1 * custom astctiws", group="listeners")
async def _add_tcp(ctx: Context, args: dict[str, Any]) -> str:
    row = ListenerRow(args["PORT"], args["BIND"], args["ALLOW"], args["PROTOCOL"],
                      args.get("AUTH", "token"))
    try:
        validate_listener(row)
    except AstctiError as exc:
        raise CommandError(str(exc)) from None
    if row.bind not in LOOPBACK_BINDS:
        if row.auth == "none":
            ctx.warnings.append(f"port {row.port} listens on {row.bind} without login"
                                f" (auth=none): anyone allowed by {row.allow!r} can use it")
        elif row.allow == "*":
            ctx.warnings.append(f"port {row.port} listens on {row.bind} for every address:"
                                " restrict ALLOW to your networks")
    previous = {r.port: r for r in ctx.store.listeners()}.get(row.port)
    if ctx.daemon is not None and ctx.daemon.listeners is not None:
        listeners = ctx.daemon.listeners
        try:
            await listeners.open(row)
        except AstctiError as exc:
            if previous is not None:  # put the old one back: nothing changed
                try:
                    await listeners.open(previous)
                except AstctiError:
                    pass
            raise CommandError(str(exc)) from None
        try:
            ctx.store.add_listener(row)
        except AstctiError:
            await listeners.close(row.port)
            if previous is not None:
                await listeners.open(previous)
            raise
        state = "listening now"
    else:
        ctx.store.add_listener(row)
        state = "opens when astcti starts"
    what = "replaced" if previous else "added"
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
    if ctx.daemon is not None and ctx.daemon.listeners is not None:
        closed = await ctx.daemon.listeners.close(port)
        return f"listener {port} removed" + (" and closed" if closed else "")
    return f"listener {port} removed"


VALIDATORS["listener-port"] = _port


# == live views ====================================================================================
@command("show links", doc="Each Asterisk link: up/down, since when, Asterisk version, last"
                           " error.", example="show links", offline=False, group="status")
async def _show_links(ctx: Context, args: dict[str, Any]) -> str:
    daemon = ctx.daemon
    assert daemon is not None
    rows = []
    for name in sorted(set(daemon.links) | set(daemon.link_errors)):
        link = daemon.links.get(name)
        if link is None:
            rows.append([name, "-", "not started", "-", "-", daemon.link_errors[name]])
            continue
        st = link.status()
        since = st.since.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        rows.append([name, st.address, "up" if st.up else "down",
                     f"{since} ({_age(st.since)})", st.version or "-", st.last_error or "-"])
    return (_table(rows, ["link", "address", "state", "since", "asterisk", "last error"])
            or "no Asterisk link: set one with `update parameter acti_tlink_01"
               " IP#PORT#APP,USER,ENCRYPTEDPASSWORD`")


@command("show monitors", doc="Which clients monitor which extensions.",
         example="show monitors", offline=False, group="status")
async def _show_monitors(ctx: Context, args: dict[str, Any]) -> str:
    hub = ctx.daemon.hub  # type: ignore[union-attr]
    rows = []
    for ext in sorted(hub.monitors):
        for sub in sorted(hub.monitors[ext], key=lambda s: getattr(s, "id", 0)):
            identity = getattr(sub, "identity", None)
            rows.append([ext, f"#{getattr(sub, 'id', '?')}", getattr(sub, "transport", "?"),
                         getattr(sub, "peer", "?"), identity.username if identity else "-"])
    total = sum(hub.monitor_counts().values())
    table = _table(rows, ["extension", "session", "transport", "peer", "user"])
    return (table + f"\n{total} monitor(s) on {len(hub.monitors)} extension(s)") if rows else \
        "no client monitors any extension"


@command("show calls", doc="The calls astcti tracks now, with each monitored leg's state.",
         example="show calls", offline=False, group="status")
async def _show_calls(ctx: Context, args: dict[str, Any]) -> str:
    tracker = ctx.daemon.tracker  # type: ignore[union-attr]
    rows = []
    for conn in sorted(tracker.connections.values(), key=lambda c: (c.callid, c.extension)):
        rows.append([conn.callid, conn.extension, conn.direction.value, conn.state.value,
                     conn.calling or "-", conn.called or "-", conn.since, conn.channel_name])
    return _table(rows, ["callid", "extension", "direction", "state", "calling", "called",
                         "since", "channel"]) or "no calls"


@command("show agents", doc="ACD agents: state, queues, since when (from the ACD service).",
         example="show agents", offline=False, group="status")
async def _show_agents(ctx: Context, args: dict[str, Any]) -> str:
    daemon = ctx.daemon
    assert daemon is not None
    acd = daemon.services.extra.get("acd") if daemon.services else None
    if acd is None:
        return "ACD not available: this astcti runs no ACD service"
    view = getattr(acd, "agents_view", None)
    if view is not None:
        agents = view()
        if hasattr(agents, "__await__"):
            agents = await agents
    else:  # AcdService (issue 5): `agents` maps extension -> Agent with .view()
        agents = [{"extension": ext, **agent.view()}
                  for ext, agent in sorted(getattr(acd, "agents", {}).items())]
    if not agents:
        return "no agent is logged in"
    keys = list(agents[0].keys())
    cell = lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)  # noqa
    return _table([[cell(a.get(k, "")) or "-" for k in keys] for a in agents], keys)


# == users =========================================================================================
@command("show users", doc="List the client users and their roles (never their passwords).",
         example="show users", group="users")
async def _show_users(ctx: Context, args: dict[str, Any]) -> str:
    rows = [[u.username, u.role, u.created] for u in ctx.store.users()]
    return _table(rows, ["user", "role", "created"]) or "no users: add one with `add user NAME`"


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise CommandError(f"password too short: use at least {MIN_PASSWORD} characters;"
                           " nothing changed")


def _revoke(ctx: Context, username: str) -> int:
    if ctx.daemon is None or ctx.daemon.services is None:
        return 0
    auth = ctx.daemon.services.auth
    gone = sum(1 for identity, _exp in auth.tokens.values() if identity.username == username)
    auth.forget_user(username)  # its tokens and any cached password acceptance
    return gone


@command("add user", Arg("NAME", "new-user", doc="login name"),
         Arg("ROLE", "role", optional=True,
             doc="client (default), supervisor (may watch every queue) or admin"),
         doc="Create a client login; the password is prompted for (or read from stdin).",
         example="add user alice client", secret="a password for the new user",
         secret_twice=True, group="users")
async def _add_user(ctx: Context, args: dict[str, Any]) -> str:
    name, role = args["NAME"], args.get("ROLE", "client")
    if name in {u.username for u in ctx.store.users()}:
        raise CommandError(f"user {name} exists: change its password with `passwd user {name}`")
    _check_password(ctx.secret or "")
    ctx.store.set_user(name, ctx.secret or "", role)
    return f"user {name} added (role {role})"


@command("remove user", Arg("NAME", "user", doc="an existing user"),
         doc="Delete a login; its session tokens stop working at once.",
         example="remove user alice", group="users")
async def _remove_user(ctx: Context, args: dict[str, Any]) -> str:
    name = args["NAME"]
    if not ctx.store.remove_user(name):
        raise CommandError(f"no user {name}: see `show users`")
    revoked = _revoke(ctx, name)
    return f"user {name} removed" + (f"; {revoked} token(s) revoked" if revoked else "")


@command("passwd user", Arg("NAME", "user", doc="an existing user"),
         doc="Change a user's password (prompted for); its old tokens stop working.",
         example="passwd user alice", secret="the new password", secret_twice=True,
         group="users")
async def _passwd_user(ctx: Context, args: dict[str, Any]) -> str:
    name = args["NAME"]
    users = {u.username: u for u in ctx.store.users()}
    if name not in users:
        raise CommandError(f"no user {name}: add it with `add user {name}`")
    _check_password(ctx.secret or "")
    ctx.store.set_user(name, ctx.secret or "", users[name].role)
    revoked = _revoke(ctx, name)
    return f"password of {name} changed" + (f"; {revoked} token(s) revoked" if revoked else "")


@command("encrypt password",
         doc="Encrypt an ARI password with astcti's key, for acti_tlink_NN (prompted for).",
         example="encrypt password", secret="the ARI password", secret_twice=True,
         group="parameters")
async def _encrypt_password(ctx: Context, args: dict[str, Any]) -> str:
    cipher = ctx.daemon.cipher if ctx.daemon is not None else ctx.cipher
    if cipher is None:
        raise CommandError("no key file: pass --key PATH (offline) or run it against the daemon")
    if not ctx.secret:
        raise CommandError("empty password: nothing encrypted")
    return encrypt(cipher, ctx.secret)


# == trace =========================================================================================
@command("trace", Arg("SWITCH", "onoff", doc="on or off"),
         Arg("CHANNEL", "channel", optional=True,
             doc="; ".join(f"{c}: {d}" for c, d in CHANNEL_DOCS.items()) +
                 " (off without a channel: all)"),
         doc="Stream live trace lines into the shell until `trace off` or Ctrl-C.",
         example="trace on asc", offline=False, group="status")
async def _trace(ctx: Context, args: dict[str, Any]) -> str:
    daemon = ctx.daemon
    sink = ctx.trace_sink
    if daemon is None or sink is None:
        raise CommandError("trace needs an interactive connection to the daemon")
    channel = args.get("CHANNEL")
    if args["SWITCH"] == "on":
        if channel is None:
            raise CommandError(f"trace on needs a channel: {', '.join(CHANNELS)}"
                               " (e.g. trace on asc)")
        if not daemon.trace.subscribe(channel, sink):
            return f"trace {channel} is already on"
        return f"trace {channel} on: {CHANNEL_DOCS[channel]}; `trace off {channel}` or Ctrl-C" \
               " stops it"
    if channel is None:
        gone = daemon.trace.unsubscribe_all(sink)
        return f"trace off ({', '.join(gone)})" if gone else "no trace was on"
    if not daemon.trace.unsubscribe(channel, sink):
        return f"trace {channel} was not on"
    return f"trace {channel} off"


# the agents' words (ipextnmap, agent passwords) live in their own module; registering them here
# keeps one COMMANDS table for the shell, the admin server and the docs
from astcti.admin import agents as _agents  # noqa: E402,F401
