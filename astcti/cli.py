"""`astcti serve | init | encrypt-password | version`.

Every failure an operator can cause ends in one line on stderr and a non-zero exit, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sqlite3
import sys
from pathlib import Path

from astcti import __version__, heap
from astcti.errors import AstctiError
from astcti.secrets import DEFAULT_KEY_PATH, encrypt, load_key
from astcti.store import DEFAULT_DB_PATH, Store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="astcti", description=__doc__)
    parser.add_argument("--version", action="version", version=f"astcti {__version__}")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB_PATH,
                        help=f"parameter store (default {DEFAULT_DB_PATH}, env ASTCTI_DB)")
    parser.add_argument("--key", type=Path, default=DEFAULT_KEY_PATH,
                        help=f"secret key file (default {DEFAULT_KEY_PATH}, env ASTCTI_KEY)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("--log-level", default=os.environ.get("ASTCTI_LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--admin-socket", type=Path, default=None,
                       help="admin API socket (default /run/astcti/admin.sock, env ASTCTI_ADMIN_SOCKET)")
    sub.add_parser("init", help="create the store and the key file if they do not exist")
    sub.add_parser("encrypt-password",
                   help="print a link password (ARI or AMI secret) encrypted with the key (prompts, or reads stdin)")
    sub.add_parser("version", help="print the version")
    return parser


def _setup_logging(level: str) -> None:
    # journald adds its own timestamps; a terminal wants them.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)
    logging.getLogger("aioswagger11").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _loop_factory():  # -> Callable[[], asyncio.AbstractEventLoop] | None
    """uvloop's event loop (libuv: a third of asyncio's CPU per socket operation, and astcti
    is socket operations: ARI frames in, REST frames out, one write per client per event);
    asyncio's own where uvloop is missing or ASTCTI_LOOP=asyncio."""
    if os.environ.get("ASTCTI_LOOP", "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("ARI password: ")
        if getpass.getpass("again: ") != first:
            raise AstctiError("the two passwords differ: nothing encrypted")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise AstctiError("empty password: nothing encrypted")
    return password


def _schema_version(db: Path) -> int:
    """The store's schema version before `init` migrates it (0 if unreadable: init says why)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in (None, "version"):
            print(f"astcti {__version__}")
            return 0
        if args.command == "init":
            existed = args.db.exists()
            before = _schema_version(args.db) if existed else 0
            store = Store.open(args.db, create=True)
            after = store.schema_version
            store.close()
            key_existed = args.key.exists()
            load_key(args.key, create=True)
            what = "created"
            if existed:
                what = (f"migrated from schema {before} to {after}" if after != before
                        else "kept (already there)")
            print(f"store {args.db}: {what}; key {args.key}: {'kept' if key_existed else 'created'}")
            return 0
        if args.command == "encrypt-password":
            cipher = load_key(args.key, create=True)
            print(encrypt(cipher, _read_password()))
            return 0
        if args.command == "serve":
            _setup_logging(args.log_level)
            heap.bound()
            from astcti.app import Daemon

            daemon = Daemon(args.db, args.key, admin_socket=args.admin_socket)
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                return runner.run(daemon.run())
    except AstctiError as exc:
        print(f"astcti: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1
