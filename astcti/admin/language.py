"""The astcti-shell command language: arguments, declarations, parser, help.

The seed's console words are kept (`add extension 101 PJSIP`, `update parameter NAME VALUE`,
`add tcp 9001 * * custom astctirest`, `trace on asc`). Each command is a :class:`Command`
declared with :func:`command`: its words, typed arguments (:class:`Arg`, checked by the
validator its `kind` names), one-line doc, an example, whether it works offline (`--db`, no
daemon) and its handler. The shell uses the declarations to parse, complete and prompt; the
daemon's admin server parses again (it never trusts the shell). The commands themselves live in
`astcti/admin/commands/` (one module per group); `docs/admin-shell.md` is generated from the
declarations (`python -m astcti.admin.docs`).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from astcti.admin.trace import CHANNELS
from astcti.api.listeners import PROTOCOLS, parse_allow
from astcti.api.protocol import EXTENSION_RE
from astcti.cti.directory import TECHNOLOGIES
from astcti.errors import AstctiError
from astcti.store.schema import ANSWER_MODES
from astcti.store.store import USER_ROLES

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from astcti.app import Daemon
    from astcti.store import Store

ROLES = USER_ROLES
USER_FIELDS = ("role", "extensions")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
PARAMETER_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

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


def _extensions(text: str) -> str:
    """A comma list of extensions (`101,102`), or `none` for no extension."""
    if text.lower() == "none":
        return ""
    numbers = [n.strip() for n in text.split(",") if n.strip()]
    if not numbers:
        raise CommandError("no extension given: use a comma list such as 101,102 (or none)")
    for number in numbers:
        _extension(number)
    return ",".join(dict.fromkeys(numbers))


def _username(text: str) -> str:
    if not USERNAME_RE.match(text):
        raise CommandError(f"invalid user name {text!r}: use 1-64 letters, digits or _.@-")
    return text


def _parameter(text: str) -> str:
    if not PARAMETER_RE.match(text):
        raise CommandError(f"invalid parameter name {text!r}: see `show parameters`")
    return text


def _link(text: str) -> str:
    """acti_tlink_NN, or its NN."""
    name = f"acti_tlink_{int(text):02d}" if text.isdigit() and len(text) <= 2 else text
    if not re.fullmatch(r"acti_tlink_\d{2}", name):
        raise CommandError(f"invalid link {text!r}: use acti_tlink_NN (e.g. acti_tlink_02) or NN")
    return name


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
    "extensions": _extensions,
    "user-field": _choice(USER_FIELDS, "user setting"),
    "parameter": _parameter,
    "value": str,
    "onoff": _choice(("on", "off"), "switch"),
    "channel": _choice(CHANNELS, "trace channel"),
    "command": str,
    "listener-port": _port,
    "link": _link,
    "answer": _choice((*ANSWER_MODES, "default"), "answer mode"),
    "answer-word": _keyword("answer"),
}

#: kind -> fixed completions (dynamic kinds are completed from the daemon's or store's names)
CHOICES: dict[str, tuple[str, ...]] = {
    "technology": TECHNOLOGIES,
    "custom": ("custom",),
    "protocol": PROTOCOLS,
    "auth": ("auth=token", "auth=none"),
    "role": ROLES,
    "user-field": USER_FIELDS,
    "onoff": ("on", "off"),
    "channel": CHANNELS,
    "bind": ("127.0.0.1", "::1", "*"),
    "allow": ("*", "127.0.0.1/32"),
    "answer": (*ANSWER_MODES, "default"),
    "answer-word": ("answer",),
}


# -- declarations ----------------------------------------------------------------------------------
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


def new_password(ctx: Context, minimum: int) -> str:
    """The password the shell prompted for, refused (nothing changed) when shorter than
    `minimum`: one rule and one wording for every password an operator sets."""
    password = ctx.secret or ""
    if len(password) < minimum:
        raise CommandError(f"password too short: use at least {minimum} characters;"
                           " nothing changed")
    return password


def offline_commands() -> list[str]:
    return [c.phrase for c in COMMANDS.values() if c.offline and c.group != "shell"]


def table(rows: list[list[str]], header: list[str]) -> str:
    if not rows:
        return ""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header)] + [line(r) for r in rows])


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def age(since: datetime) -> str:
    seconds = int((datetime.now(timezone.utc) - since).total_seconds())
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# -- help ----------------------------------------------------------------------------------------
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

