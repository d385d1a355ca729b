"""`astcti-shell`: the administration console (successor of the seed's telnet console).

    astcti-shell                          interactive (prompt_toolkit: Tab, history, colour)
    astcti-shell -c "show links"          one command (repeat -c for more); exit 1 on error
    astcti-shell < commands.txt           commands from stdin, one a line; stops at the first error
    astcti-shell --db /var/lib/astcti/astcti.db   edits the store when the daemon is not running

Exit status: 0 success, 1 a command failed, 2 astcti cannot be reached (or bad usage).
Passwords are prompted for (or read from the next stdin line), never typed on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import itertools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from astcti import __version__
import astcti.admin.commands  # noqa: F401  (registers every command)
from astcti.admin import language
from astcti.admin.language import CHOICES, COMMANDS, CommandError
from astcti.errors import AstctiError

DEFAULT_SOCKET = Path(os.environ.get("ASTCTI_ADMIN_SOCKET", "/run/astcti/admin.sock"))
DEFAULT_HISTORY = Path(os.environ.get("ASTCTI_SHELL_HISTORY",
                                      Path.home() / ".astcti_shell_history"))
LOCAL = {"help", "quit", "exit"}


class ShellFatal(Exception):
    """astcti cannot be reached: one line, exit status 2."""


# -- backends -------------------------------------------------------------------------------------
class OnlineBackend:
    """The running daemon, over its admin socket."""

    offline = False

    def __init__(self, path: Path, on_trace: Callable[[str, str], None]) -> None:
        self.path = path
        self.on_trace = on_trace
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()
        self.hello: dict[str, Any] = {}

    async def connect(self) -> None:
        p = self.path
        try:
            reader, self._writer = await asyncio.open_unix_connection(str(p), limit=2**22)
        except FileNotFoundError:
            raise NotRunning(f"astcti is not running (no admin socket at {p}): start it"
                             " (systemctl start astcti), pass --socket PATH, or pass --db PATH"
                             " to edit the store offline") from None
        except ConnectionRefusedError:
            raise NotRunning(f"astcti is not running ({p} is left over, nothing listens):"
                             " start it, or pass --db PATH to edit the store offline") from None
        except PermissionError:
            raise ShellFatal(f"permission denied on {p}: run astcti-shell as root or as a member"
                             " of group astcti (adduser USER astcti, then log in again)") from None
        except OSError as exc:
            raise ShellFatal(f"cannot connect to {p}: {exc.strerror}") from None
        self._reader_task = asyncio.create_task(self._read(reader))
        self.hello = await self._request({"op": "hello"})

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if "trace" in message:
                    self.on_trace(message["trace"], message.get("line", ""))
                    continue
                future = self._pending.pop(message.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            self.lost.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ShellFatal("connection to astcti lost: the daemon"
                                                    " stopped?"))
            self._pending.clear()

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._writer is None or self.lost.is_set():
            raise ShellFatal("connection to astcti lost: the daemon stopped?")
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        self._writer.write(json.dumps({"id": rid, **message}).encode() + b"\n")
        await self._writer.drain()
        return await future

    async def run(self, argv: list[str], secret: str | None, force: bool) -> dict[str, Any]:
        return await self._request({"op": "run", "argv": argv, "secret": secret, "force": force})

    async def names(self) -> dict[str, list[str]]:
        return await self._request({"op": "names"})

    def describe(self) -> str:
        return f"astcti {self.hello.get('version', '?')} via {self.path} (store" \
               f" {self.hello.get('db', '?')})"

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        if self._reader_task is not None:
            self._reader_task.cancel()


class NotRunning(ShellFatal):
    """No daemon behind the socket (offline mode is possible with --db)."""


class OfflineBackend:
    """The store file alone, for the commands that make sense without the daemon."""

    offline = True

    def __init__(self, db: Path, key: Path | None) -> None:
        from astcti.secrets import load_key
        from astcti.store import Store

        try:
            self.store = Store.open(db)
        except AstctiError as exc:
            raise ShellFatal(str(exc)) from None
        self.db = db
        self.cipher = None
        if key is not None and key.exists():
            try:
                self.cipher = load_key(key)
            except AstctiError as exc:
                raise ShellFatal(str(exc)) from None

    async def run(self, argv: list[str], secret: str | None, force: bool) -> dict[str, Any]:
        ctx = language.Context(self.store, None, cipher=self.cipher, secret=secret, force=force)
        try:
            return {"ok": True, "text": await language.execute(argv, ctx)}
        except CommandError as exc:
            return {"ok": False, "error": str(exc), "confirm": exc.confirm}
        except AstctiError as exc:
            return {"ok": False, "error": str(exc)}

    async def names(self) -> dict[str, list[str]]:
        from astcti.admin.server import store_names

        return store_names(self.store)

    def describe(self) -> str:
        return f"offline: store {self.db} (astcti not running; changes apply when it starts)"

    async def close(self) -> None:
        self.store.close()


# -- completion -----------------------------------------------------------------------------------
def completions(text: str, names: dict[str, list[str]]) -> tuple[str, list[str]]:
    """(word being completed, candidates) for the text before the cursor."""
    try:
        tokens = language.tokenize(text)
    except CommandError:
        return "", []
    if text and not text[-1].isspace() and tokens:
        current, done = tokens[-1], tokens[:-1]
    else:
        current, done = "", tokens
    if done and done[0].lower() == "help":
        done = done[1:]
    found = language.find(done) if done else None
    options: Iterable[str]
    if found is None:
        n = len(done)
        lowered = [d.lower() for d in done]
        options = sorted({c.words[n] for c in COMMANDS.values()
                          if len(c.words) > n and list(c.words[:n]) == lowered})
    else:
        cmd, rest = found
        rest = [r for r in rest if r != "--force"]
        options = []
        if len(rest) < len(cmd.args):
            kind = cmd.args[len(rest)].kind
            dynamic = {"parameter": "parameters", "extension": "extensions",
                       "listener-port": "ports", "user": "users"}
            options = names.get(dynamic[kind], []) if kind in dynamic else CHOICES.get(kind, ())
        if cmd.force and "--force" not in text:
            options = [*options, "--force"]
    low = current.lower()
    return current, [o for o in options if o.lower().startswith(low)]


def _prompt_completer(shell: Shell):
    from prompt_toolkit.completion import Completer, Completion

    class ShellCompleter(Completer):
        def get_completions(self, document, complete_event):  # type: ignore[no-untyped-def]
            current, options = completions(document.text_before_cursor, shell.names)
            for option in options:
                yield Completion(option, start_position=-len(current))

    return ShellCompleter()


# -- the shell ------------------------------------------------------------------------------------
class Shell:
    def __init__(self, args: argparse.Namespace, *, interactive: bool, colour: bool) -> None:
        self.args = args
        self.interactive = interactive
        self.colour = colour
        self.backend: OnlineBackend | OfflineBackend | None = None
        self.names: dict[str, list[str]] = {}
        self.tracing: set[str] = set()
        self.where = ""  # "line N: " while running a script from stdin

    # -- output ---------------------------------------------------------------------------------
    def out(self, text: str, style: str = "") -> None:
        if not text:
            return
        if self.colour and style:
            from prompt_toolkit import print_formatted_text
            from prompt_toolkit.formatted_text import FormattedText

            print_formatted_text(FormattedText([(style, text)]))
        else:
            print(text, flush=True)

    def error(self, text: str) -> None:
        if self.interactive:
            self.out(f"error: {text}", "ansired")
        else:
            print(f"astcti-shell: {self.where}{text}", file=sys.stderr, flush=True)

    def trace_line(self, channel: str, line: str) -> None:
        self.out(line, "ansicyan")

    # -- connecting -----------------------------------------------------------------------------
    async def connect(self) -> OnlineBackend | OfflineBackend:
        if self.backend is not None:
            return self.backend
        online = OnlineBackend(self.args.socket, self.trace_line)
        try:
            await online.connect()
            self.backend = online
        except NotRunning:
            if self.args.db is None:
                raise
            self.backend = OfflineBackend(self.args.db, self.args.key)
            if not self.interactive:
                print(f"note: astcti is not running: editing {self.args.db} offline",
                      file=sys.stderr)
        await self.refresh_names()
        return self.backend

    async def refresh_names(self) -> None:
        if self.backend is not None:
            try:
                self.names = await self.backend.names()
            except ShellFatal:
                pass

    # -- secrets and confirmations ----------------------------------------------------------------
    async def _ask(self, question: str, password: bool) -> str:
        if self.interactive:
            from prompt_toolkit import PromptSession

            return await PromptSession().prompt_async(question, is_password=password)
        if sys.stdin.isatty():
            return await asyncio.to_thread(getpass.getpass, question)
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            raise CommandError("no more input on stdin: nothing changed")
        return line.rstrip("\r\n")

    async def read_secret(self, cmd: language.Command) -> str:
        secret = await self._ask(f"{cmd.secret}: ", True)
        if not secret:
            raise CommandError(f"empty {cmd.secret.split(' ')[-1] if cmd.secret else 'value'}:"
                               " nothing changed")
        if cmd.secret_twice and (self.interactive or sys.stdin.isatty()):
            if await self._ask("again: ", True) != secret:
                raise CommandError("the two entries differ: nothing changed")
        return secret

    # -- one command ------------------------------------------------------------------------------
    async def run_line(self, line: str) -> bool:
        """Run one line; False if it failed. Raises SystemExit-like Quit on quit/exit."""
        try:
            tokens = language.tokenize(line)
            if not tokens or tokens[0].startswith("#"):
                return True
            parsed = language.parse(tokens)
            cmd = parsed.command
            if cmd.phrase in ("quit", "exit"):
                raise Quit
            if cmd.phrase == "help":
                self.out(language.help_text(parsed.args.get("COMMAND", "").split()))
                return True
            backend = await self.connect()
            self._precheck(cmd, parsed.args)
            secret = await self.read_secret(cmd) if cmd.secret else None
            reply = await backend.run(tokens, secret, parsed.force)
            if not reply.get("ok") and reply.get("confirm") and self.interactive:
                answer = await self._ask(f"{reply['confirm']} [y/N] ", False)
                if answer.strip().lower() in ("y", "yes"):
                    reply = await backend.run(tokens, secret, True)
                else:
                    self.out("nothing changed")
                    return True
        except CommandError as exc:
            self.error(str(exc))
            return False
        if not reply.get("ok"):
            self.error(str(reply.get("error", "failed")))
            return False
        text = str(reply.get("text", ""))
        for out_line in text.splitlines():
            self.out(out_line, "ansiyellow" if out_line.startswith("warning:") else "")
        if cmd.phrase == "trace":
            self._note_trace(parsed.args)
        elif cmd.words[0] in ("add", "remove", "update"):
            await self.refresh_names()
        return True

    def _precheck(self, cmd: language.Command, args: dict[str, Any]) -> None:
        """Refuse before prompting for a password that could not be used (the daemon checks
        again anyway)."""
        users = self.names.get("users")
        if users is None:
            return
        name = args.get("NAME")
        if cmd.phrase == "passwd user" and name not in users:
            raise CommandError(f"no user {name}: add it with `add user {name}`")
        if cmd.phrase == "add user" and name in users:
            raise CommandError(f"user {name} exists: change its password with"
                               f" `passwd user {name}`")

    def _note_trace(self, args: dict[str, Any]) -> None:
        channel = args.get("CHANNEL")
        if args["SWITCH"] == "on":
            self.tracing.add(channel)
        elif channel is None:
            self.tracing.clear()
        else:
            self.tracing.discard(channel)

    async def stop_traces(self) -> None:
        if self.tracing and self.backend is not None:
            try:
                await self.backend.run(["trace", "off"], None, False)
            except ShellFatal:
                pass
            self.out(f"trace off ({', '.join(sorted(self.tracing))})")
            self.tracing.clear()

    # -- modes ------------------------------------------------------------------------------------
    async def interactive_loop(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.patch_stdout import patch_stdout

        backend = await self.connect()
        history_path: Path = self.args.history
        try:
            history_path.parent.mkdir(parents=True, exist_ok=True)
            history_path.touch(mode=0o600, exist_ok=True)
            history: Any = FileHistory(str(history_path))
        except OSError:
            from prompt_toolkit.history import InMemoryHistory

            history = InMemoryHistory()
        session: PromptSession[str] = PromptSession(
            history=history, completer=_prompt_completer(self), complete_while_typing=True)
        self.out(f"{backend.describe()}\nhelp lists the commands, Tab completes, Ctrl-D leaves")
        prompt = "astcti(offline)> " if backend.offline else "astcti> "
        with patch_stdout(raw=True):
            while True:
                try:
                    line = await session.prompt_async(prompt)
                except KeyboardInterrupt:
                    await self.stop_traces()
                    continue
                except EOFError:
                    break
                try:
                    await self.run_line(line)
                except Quit:
                    break
                if isinstance(backend, OnlineBackend) and backend.lost.is_set():
                    self.error("connection to astcti lost: the daemon stopped?")
                    return 2
        await self.stop_traces()
        return 0

    async def batch(self, lines: Iterable[str] | None) -> int:
        """-c commands, or stdin lines; stops at the first failure (exit 1)."""
        if lines is not None:
            for line in lines:
                try:
                    if not await self.run_line(line):
                        return 1
                except Quit:
                    return 0
        else:
            number = 0
            while line := await asyncio.to_thread(sys.stdin.readline):
                number += 1
                self.where = f"line {number}: "
                try:
                    if not await self.run_line(line.rstrip("\r\n")):
                        return 1
                except Quit:
                    return 0
        if self.tracing:  # stream until interrupted (e.g. `astcti-shell -c "trace on asc"`)
            await self._stream_until_interrupted()
        return 0

    async def _stream_until_interrupted(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiters = [asyncio.create_task(stop.wait())]
        if isinstance(self.backend, OnlineBackend):
            waiters.append(asyncio.create_task(self.backend.lost.wait()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        await self.stop_traces()


class Quit(Exception):
    """`quit` or `exit` was typed."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astcti-shell", description="astcti administration console",
        epilog="exit status: 0 success, 1 a command failed, 2 astcti unreachable")
    parser.add_argument("--version", action="version", version=f"astcti-shell {__version__}")
    parser.add_argument("--socket", type=Path, default=DEFAULT_SOCKET,
                        help=f"admin socket of the daemon (default {DEFAULT_SOCKET},"
                             " env ASTCTI_ADMIN_SOCKET)")
    parser.add_argument("--db", type=Path, default=None,
                        help="store to edit directly when the daemon is not running")
    parser.add_argument("--key", type=Path, default=Path(os.environ.get(
        "ASTCTI_KEY", "/etc/astcti/secret.key")),
                        help="key file for offline `encrypt password` and link checks")
    parser.add_argument("-c", dest="commands", action="append", metavar="COMMAND",
                        help="run this command and exit (repeatable)")
    parser.add_argument("--history", type=Path, default=DEFAULT_HISTORY,
                        help=f"history file of the interactive shell (default {DEFAULT_HISTORY})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    interactive = args.commands is None and sys.stdin.isatty() and sys.stdout.isatty()
    colour = interactive and not os.environ.get("NO_COLOR")
    shell = Shell(args, interactive=interactive, colour=colour)

    async def run() -> int:
        try:
            if interactive:
                return await shell.interactive_loop()
            return await shell.batch(args.commands)
        finally:
            if shell.backend is not None:
                await shell.backend.close()

    try:
        return asyncio.run(run())
    except ShellFatal as exc:
        print(f"astcti-shell: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
