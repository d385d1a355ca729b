"""The admin API: newline-delimited JSON on a Unix socket, spoken by astcti-shell.

Authorisation is the socket file's permissions: mode 0660, group `astcti-admin` when that
group exists (the package creates it), so root and members of `astcti-admin` may administer and
nobody else can even connect. That group is not the daemon's own (`astcti`), so administering
gives no read access to the store. Each
changing command is logged with the caller's uid (from SO_PEERCRED), never with its secret.

Requests:  {"id": 1, "op": "run", "argv": ["add", "extension", "105"], "secret": "...",
            "force": false}  |  {"id": 2, "op": "names"}  |  {"id": 3, "op": "hello"}
Replies:   {"id": 1, "ok": true, "text": "..."}  |  {"id": 1, "ok": false, "error": "...",
            "confirm": "question to ask before retrying with force"}
Trace:     {"trace": "asc", "line": "..."} pushed while `trace on` is active.
"""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astcti import __version__
import astcti.admin.commands  # noqa: F401  (registers every command)
from astcti.admin import language
from astcti.errors import AstctiError

if TYPE_CHECKING:
    from astcti.app import Daemon

log = logging.getLogger(__name__)

#: the group whose members may administer (env ASTCTI_ADMIN_GROUP for tests and odd sites)
ADMIN_GROUP = os.environ.get("ASTCTI_ADMIN_GROUP", "astcti-admin")
MAX_LINE = 256 * 1024
TRACE_BACKLOG_BYTES = 2 * 1024 * 1024  # a shell that stops reading loses trace lines, not memory
READ_ONLY = {"help", "quit", "exit", "trace", "encrypt"}  # not logged as changes


class AdminServer:
    """Serves astcti-shell connections for one daemon."""

    def __init__(self, daemon: Daemon, path: Path) -> None:
        self.daemon = daemon
        self.path = Path(path)
        self._server: asyncio.AbstractServer | None = None
        self._lock = asyncio.Lock()  # one change at a time, whoever types it
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._prepare_path()
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                           limit=MAX_LINE)
        except OSError as exc:
            raise AstctiError(f"admin socket {self.path}: {exc.strerror}: astcti-shell cannot"
                              " connect; fix the directory or pass --admin-socket") from None
        self._secure()
        log.info("admin socket %s (astcti-shell --socket %s)", self.path, self.path)

    def _prepare_path(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True, mode=0o750)
                self._chgrp(parent)
            except OSError as exc:
                raise AstctiError(f"cannot create {parent} for the admin socket:"
                                  f" {exc.strerror}") from None
        elif parent.stat().st_uid == os.geteuid() != 0 and not (
                {child.name for child in parent.iterdir()} - {self.path.name}):
            # A directory of ours for the socket alone (systemd's RuntimeDirectory=, made with
            # the daemon's own group): the admin group must be able to reach the socket in it.
            self._chgrp(parent)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise AstctiError(f"admin socket path {self.path} exists and is not a socket:"
                                  " move it away or pass --admin-socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # stale socket of a daemon that died
            else:
                raise AstctiError(f"admin socket {self.path} is in use: another astcti runs"
                                  " with this socket; stop it or pass --admin-socket")
            finally:
                probe.close()

    def _chgrp(self, path: Path) -> None:
        try:
            gid = grp.getgrnam(os.environ.get("ASTCTI_ADMIN_GROUP", ADMIN_GROUP)).gr_gid
        except KeyError:
            return
        if path.stat().st_gid == gid:
            return  # nothing to change: no chown system call at all
        try:
            os.chown(path, -1, gid)
        except OSError as exc:
            log.warning("cannot give %s to its admin group: %s", path, exc.strerror)

    def _secure(self) -> None:
        os.chmod(self.path, 0o660)
        self._chgrp(self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        try:
            self.path.unlink()
        except OSError:
            pass

    # -- one connection ---------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        uid = _peer_uid(writer)
        dropped = 0

        def send(message: dict[str, Any]) -> None:
            writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

        def trace_sink(channel: str, line: str) -> None:
            nonlocal dropped
            if writer.is_closing():
                return
            if writer.transport.get_write_buffer_size() > TRACE_BACKLOG_BYTES:
                dropped += 1
                return
            if dropped:
                send({"trace": channel, "line": f"... {dropped} trace line(s) dropped (the shell"
                                                " read too slowly)"})
                dropped = 0
            send({"trace": channel, "line": line})

        try:
            while True:
                try:
                    raw = await reader.readline()
                except ValueError:
                    send({"id": None, "ok": False, "error": "request line too long"})
                    break
                if not raw:
                    break
                try:
                    request = json.loads(raw)
                    if not isinstance(request, dict):
                        raise ValueError
                except ValueError:
                    send({"id": None, "ok": False, "error": "malformed request: one JSON object"
                                                            " per line"})
                    continue
                send(await self._handle(request, uid, trace_sink))
                await writer.drain()
        except ConnectionError:
            pass  # the shell went away
        finally:
            self.daemon.trace.unsubscribe_all(trace_sink)
            self._connections.discard(task)
            writer.close()

    async def _handle(self, request: dict[str, Any], uid: int | None,
                      trace_sink: Any) -> dict[str, Any]:
        rid = request.get("id")
        op = request.get("op")
        if op == "hello":
            return {"id": rid, "ok": True, "version": __version__,
                    "db": str(self.daemon.db_path), "links": len(self.daemon.links)}
        if op == "names":
            return {"id": rid, "ok": True, **names(self.daemon)}
        if op != "run":
            return {"id": rid, "ok": False, "error": f"unknown op {str(op)[:20]!r}"}
        argv = request.get("argv")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            return {"id": rid, "ok": False, "error": "argv must be a list of strings"}
        secret = request.get("secret")
        store = self.daemon.store
        assert store is not None
        ctx = language.Context(store, self.daemon, secret=secret if isinstance(secret, str)
                               else None, force=request.get("force") is True,
                               trace_sink=trace_sink)
        changing = bool(argv) and argv[0].lower() not in READ_ONLY and argv[0].lower() != "show"
        try:
            async with self._lock:
                text = await language.execute(argv, ctx)
        except language.CommandError as exc:
            return {"id": rid, "ok": False, "error": str(exc), "confirm": exc.confirm}
        except AstctiError as exc:
            return {"id": rid, "ok": False, "error": str(exc)}
        except Exception:
            log.exception("admin command %r failed", " ".join(argv[:2]))
            return {"id": rid, "ok": False, "error": "internal error: see the astcti log"}
        if changing:
            log.info("admin (uid %s): %s: %s", uid, " ".join(argv[:3]), text.splitlines()[0]
                     if text else "")
        return {"id": rid, "ok": True, "text": text}


def names(daemon: Daemon) -> dict[str, list[str]]:
    """What the shell completes: parameter names, extensions, listener ports, users."""
    store = daemon.store
    assert store is not None
    return store_names(store)


def store_names(store: Any) -> dict[str, list[str]]:
    return {"parameters": list(store.parameters()),
            "extensions": [e.number for e in store.extensions()],
            "ports": [str(r.port) for r in store.listeners()],
            "users": [u.username for u in store.users()]}


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    except (OSError, AttributeError):
        return None
