"""Typed access to the parameter store.

One SQLite file shared by the daemon and the admin shell: WAL journal and a busy timeout so
concurrent writers wait for each other instead of failing or corrupting the file. Every SQLite
failure is turned into a :class:`StoreError` with one line naming the file, the cause and the fix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# sqlite-utils imports numpy whenever it is installed (to store numpy values): 15 MB of
# libraries in the daemon, which never has a numpy value. Hidden during that import only.
_hide_numpy = "numpy" not in sys.modules
if _hide_numpy:
    sys.modules["numpy"] = None  # type: ignore[assignment]
try:
    import sqlite_utils
finally:
    if _hide_numpy:
        del sys.modules["numpy"]

from astcti.errors import StoreError  # noqa: E402
from astcti.store.schema import (  # noqa: E402
    MIGRATIONS, SCHEMA_VERSION, ensure_feature_parameters,
)

DEFAULT_DB_PATH = Path(os.environ.get("ASTCTI_DB", "/var/lib/astcti/astcti.db"))
BUSY_TIMEOUT_MS = 15000
LINK_PARAMETER = re.compile(r"^acti_tlink_(\d{2})$")
AMI_LINK_PARAMETER = re.compile(r"^acti_amilink_(\d{2})$")  # AMI of the same Asterisk (same NN)


@dataclass(frozen=True)
class ExtensionRow:
    number: str
    technology: str
    link: str = ""  # pinned to this acti_tlink_NN ("": wherever its endpoint is)
    answer: str = ""  # talk | reoffer | none; "" = parameter acti_answer


@dataclass(frozen=True)
class ListenerRow:
    port: int
    bind: str
    allow: str
    protocol: str
    auth: str = "token"
    tls: bool = False
    forced: bool = False  # auth=none for every address, accepted with --force


@dataclass(frozen=True)
class UserRow:
    username: str
    role: str  # agent | supervisor | admin
    created: str
    extensions: tuple[str, ...] = ()
    migrated: bool = False  # a user from before roles, made admin by the upgrade


#: Roles a user may have; `client` (before roles) is read as admin: it could do everything.
USER_ROLES = ("agent", "supervisor", "admin")
LEGACY_ROLES = {"client": "admin"}


def _role(role: str) -> str:
    role = LEGACY_ROLES.get(role, role)
    if role not in USER_ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(USER_ROLES)}")
    return role


def _extension_list(text: str) -> tuple[str, ...]:
    return tuple(e for e in (text or "").split(",") if e)


@dataclass(frozen=True)
class AgentRow:
    """A logged-in ACD agent as last known (Asterisk's queues stay the truth)."""

    extension: str
    agentid: str
    groups: tuple[str, ...]
    state: str  # ready | notready | acw
    reason: str = ""
    since: str = ""
    acw_until: float | None = None  # epoch seconds when after-call work ends
    mode: str = ""  # when ready: auto (auto-in) or manual (manual-in: after-call work follows)


class Store:
    """The parameter store. Open it with :meth:`open`; close it with :meth:`close`."""

    def __init__(self, path: Path, db: sqlite_utils.Database) -> None:
        self.path = path
        self.db = db
        #: bumped by every write through this store and every full read of the parameters
        #: (a reload): what is cached from the store (dial policies) is read again after it
        self.generation = 0

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, *, create: bool = False) -> Store:
        """Open (and migrate) the store; create it only when asked, so a typo'd path is an error."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise StoreError(
                    f"store {path} does not exist: create it with `astcti init --db {path}`"
                    " or pass the right --db"
                )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store directory {path.parent}: {exc.strerror}")
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}: check the path and its permissions")
        store = cls(path, sqlite_utils.Database(conn))
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            store._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(
                    f"store {path} is corrupt or not an astcti store ({exc}): restore it from a"
                    " backup or move it away and run `astcti init`"
                )
            raise StoreError(f"cannot open store {path}: {exc}: check the path and its permissions")
        except StoreError:
            conn.close()
            raise
        if create:
            try:
                os.chmod(path, 0o640)
            except OSError:
                pass
        return store

    def close(self) -> None:
        self.db.conn.close()

    @property
    def schema_version(self) -> int:
        return int(self.db.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {current} but this astcti knows only"
                    f" up to {SCHEMA_VERSION}: upgrade astcti (the file was left untouched)"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version - 1](self.db)
                conn.execute(f"PRAGMA user_version={version}")
            ensure_feature_parameters(self.db)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """One write transaction; SQLite failures become one readable line, data stays intact."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._write_failure(what, exc)
        try:
            yield
            conn.execute("COMMIT")
            self.generation += 1
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise self._write_failure(what, exc)
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _write_failure(self, what: str, exc: sqlite3.Error) -> StoreError:
        hint = {
            "readonly": "make the store writable",
            "full": "free disk space",
            "locked": "another writer holds the store; retry",
        }
        fix = next((v for k, v in hint.items() if k in str(exc)), "check the store file")
        return StoreError(f"cannot {what}: store {self.path}: {exc}: {fix}; nothing changed")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            return list(self.db.conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}")

    # -- parameters ---------------------------------------------------------------------------
    def parameters(self) -> dict[str, str]:
        self.generation += 1  # the daemon's reload reads them all: what others changed too
        return {n: v for n, v in self._read("SELECT name, value FROM parameters ORDER BY name")}

    def parameter_descriptions(self) -> dict[str, str]:
        rows = self._read("SELECT name, coalesce(description, '') FROM parameters ORDER BY name")
        return {n: d for n, d in rows}

    def get_parameter(self, name: str, default: str | None = None) -> str | None:
        rows = self._read("SELECT value FROM parameters WHERE name = ?", (name,))
        return rows[0][0] if rows else default

    def set_parameter(self, name: str, value: str, description: str | None = None) -> None:
        with self._writing(f"set parameter {name}"):
            existing = self._read("SELECT description FROM parameters WHERE name = ?", (name,))
            desc = description if description is not None else (existing[0][0] if existing else "")
            self.db.conn.execute(
                "INSERT INTO parameters(name, value, description) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value,"
                " description = excluded.description",
                (name, value, desc),
            )

    def delete_parameter(self, name: str) -> bool:
        with self._writing(f"delete parameter {name}"):
            cur = self.db.conn.execute("DELETE FROM parameters WHERE name = ?", (name,))
        return cur.rowcount > 0

    def link_parameters(self) -> dict[str, str]:
        """`acti_tlink_NN` parameters (one per Asterisk), in NN order."""
        return {n: v for n, v in self.parameters().items() if LINK_PARAMETER.match(n) and v}

    def ami_link_parameters(self) -> dict[str, str]:
        """`acti_amilink_NN` parameters (the AMI of the Asterisk of `acti_tlink_NN`)."""
        return {n: v for n, v in self.parameters().items() if AMI_LINK_PARAMETER.match(n) and v}

    # -- extensions ---------------------------------------------------------------------------
    def extensions(self) -> list[ExtensionRow]:
        rows = self._read("SELECT number, technology, link, answer FROM extensions"
                          " ORDER BY number")
        return [ExtensionRow(n, t, k, a) for n, t, k, a in rows]

    def set_extension_answer(self, number: str, answer: str) -> bool:
        """How `answer` reaches this extension's phone ("" = the acti_answer default)."""
        with self._writing(f"set the answer mode of extension {number}"):
            cur = self.db.conn.execute("UPDATE extensions SET answer = ? WHERE number = ?",
                                       (answer, number))
        return cur.rowcount > 0

    def add_extension(self, number: str, technology: str) -> None:
        with self._writing(f"add extension {number}"):
            self.db.conn.execute(
                "INSERT INTO extensions(number, technology) VALUES (?, ?)"
                " ON CONFLICT(number) DO UPDATE SET technology = excluded.technology",
                (number, technology),
            )

    def add_extensions(self, rows: list[ExtensionRow]) -> None:
        """Many extensions in one transaction (provisioning hundreds at once)."""
        with self._writing(f"add {len(rows)} extensions"):
            self.db.conn.executemany(
                "INSERT INTO extensions(number, technology) VALUES (?, ?)"
                " ON CONFLICT(number) DO UPDATE SET technology = excluded.technology",
                [(r.number, r.technology) for r in rows],
            )

    def pin_extension(self, number: str, link: str) -> bool:
        """Pin an extension to a link ("": unpin). False if it is not configured."""
        with self._writing(f"pin extension {number}"):
            cur = self.db.conn.execute("UPDATE extensions SET link = ? WHERE number = ?",
                                       (link, number))
        return cur.rowcount > 0

    def remove_extension(self, number: str) -> bool:
        with self._writing(f"remove extension {number}"):
            cur = self.db.conn.execute("DELETE FROM extensions WHERE number = ?", (number,))
        return cur.rowcount > 0

    # -- listeners ----------------------------------------------------------------------------
    def listeners(self) -> list[ListenerRow]:
        rows = self._read(
            "SELECT port, bind, allow, protocol, auth, tls, forced FROM listeners ORDER BY port"
        )
        return [ListenerRow(p, b, a, pr, au, bool(t), bool(f))
                for p, b, a, pr, au, t, f in rows]

    def add_listener(self, row: ListenerRow) -> None:
        with self._writing(f"add listener {row.port}"):
            self.db.conn.execute(
                "INSERT INTO listeners(port, bind, allow, protocol, auth, tls, forced)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(port) DO UPDATE SET"
                " bind = excluded.bind, allow = excluded.allow, protocol = excluded.protocol,"
                " auth = excluded.auth, tls = excluded.tls, forced = excluded.forced",
                (row.port, row.bind, row.allow, row.protocol, row.auth, int(row.tls),
                 int(row.forced)),
            )

    def remove_listener(self, port: int) -> bool:
        with self._writing(f"remove listener {port}"):
            cur = self.db.conn.execute("DELETE FROM listeners WHERE port = ?", (port,))
        return cur.rowcount > 0

    # -- users --------------------------------------------------------------------------------
    def users(self) -> list[UserRow]:
        rows = self._read("SELECT username, role, coalesce(created, ''), extensions, migrated"
                          " FROM users ORDER BY 1")
        return [UserRow(u, r, c, _extension_list(e), bool(m)) for u, r, c, e, m in rows]

    def user(self, username: str) -> UserRow | None:
        return next((u for u in self.users() if u.username == username), None)

    def set_user(self, username: str, password: str, role: str = "agent",
                 extensions: tuple[str, ...] | list[str] | None = None) -> None:
        """Create the user or change its password (and role; extensions when given); only a
        salted scrypt hash is stored."""
        role = _role(role)
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        exts = ",".join(extensions or ())
        with self._writing(f"save user {username}"):
            self.db.conn.execute(
                "INSERT INTO users(username, password_hash, role, created, extensions)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(username) DO UPDATE SET"
                " password_hash = excluded.password_hash, role = excluded.role"
                + (", extensions = excluded.extensions" if extensions is not None else ""),
                (username, hash_password(password), role, created, exts),
            )

    def update_user(self, username: str, *, role: str | None = None,
                    extensions: tuple[str, ...] | list[str] | None = None) -> bool:
        """Change a user's role and/or extensions; the administrator has now decided, so the
        user is no longer marked as migrated. False if there is no such user."""
        sets, values = ["migrated = 0"], []
        if role is not None:
            sets.append("role = ?")
            values.append(_role(role))
        if extensions is not None:
            sets.append("extensions = ?")
            values.append(",".join(extensions))
        with self._writing(f"update user {username}"):
            cur = self.db.conn.execute(f"UPDATE users SET {', '.join(sets)} WHERE username = ?",
                                       (*values, username))
        return cur.rowcount > 0

    def remove_user(self, username: str) -> bool:
        with self._writing(f"remove user {username}"):
            cur = self.db.conn.execute("DELETE FROM users WHERE username = ?", (username,))
        return cur.rowcount > 0

    def check_user(self, username: str, password: str) -> UserRow | None:
        """The user if the password matches; constant-time compare, same cost for unknown users."""
        rows = self._read(
            "SELECT username, role, coalesce(created, ''), extensions, migrated, password_hash"
            " FROM users WHERE username = ?", (username,)
        )
        stored = rows[0][5] if rows else _DUMMY_HASH
        ok = verify_password(password, stored)
        if rows and ok:
            u, r, c, e, m, _hash = rows[0]
            return UserRow(u, r, c, _extension_list(e), bool(m))
        return None


    # -- ACD agents ---------------------------------------------------------------------------
    def agents(self) -> list[AgentRow]:
        rows = self._read("SELECT extension, agentid, groups, state, coalesce(reason, ''),"
                          " coalesce(since, ''), acw_until, coalesce(mode, '') FROM agents"
                          " ORDER BY extension")
        return [AgentRow(e, a, tuple(g for g in groups.split(",") if g), s, r, si, acw, m)
                for e, a, groups, s, r, si, acw, m in rows]

    def save_agent(self, row: AgentRow) -> None:
        with self._writing(f"save agent {row.agentid}"):
            self.db.conn.execute(
                "INSERT INTO agents(extension, agentid, groups, state, reason, since, acw_until,"
                " mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(extension) DO UPDATE SET"
                " agentid = excluded.agentid, groups = excluded.groups, state = excluded.state,"
                " reason = excluded.reason, since = excluded.since,"
                " acw_until = excluded.acw_until, mode = excluded.mode",
                (row.extension, row.agentid, ",".join(row.groups), row.state, row.reason,
                 row.since, row.acw_until, row.mode),
            )

    def remove_agent(self, extension: str) -> bool:
        with self._writing(f"remove agent on {extension}"):
            cur = self.db.conn.execute("DELETE FROM agents WHERE extension = ?", (extension,))
        return cur.rowcount > 0

    # -- agent passwords (checked at ACD login when set) ---------------------------------------
    def agent_password_hash(self, agentid: str) -> str | None:
        rows = self._read("SELECT password_hash FROM agent_passwords WHERE agentid = ?",
                          (agentid,))
        return rows[0][0] if rows else None

    def agents_with_password(self) -> list[str]:
        return [r[0] for r in self._read("SELECT agentid FROM agent_passwords ORDER BY 1")]

    def set_agent_password(self, agentid: str, password: str) -> None:
        """Only a salted scrypt hash is stored, as for users."""
        with self._writing(f"save the password of agent {agentid}"):
            self.db.conn.execute(
                "INSERT INTO agent_passwords(agentid, password_hash) VALUES (?, ?)"
                " ON CONFLICT(agentid) DO UPDATE SET password_hash = excluded.password_hash",
                (agentid, hash_password(password)))

    def remove_agent_password(self, agentid: str) -> bool:
        with self._writing(f"remove the password of agent {agentid}"):
            cur = self.db.conn.execute("DELETE FROM agent_passwords WHERE agentid = ?",
                                       (agentid,))
        return cur.rowcount > 0

    # -- free seating: client address -> extension (`ipextnmap`) --------------------------------
    def ipextnmap(self) -> dict[str, str]:
        return dict(self._read("SELECT address, extension FROM ipextnmap ORDER BY address"))

    def map_address(self, address: str, extension: str) -> None:
        with self._writing(f"map address {address}"):
            self.db.conn.execute(
                "INSERT INTO ipextnmap(address, extension) VALUES (?, ?)"
                " ON CONFLICT(address) DO UPDATE SET extension = excluded.extension",
                (address, extension))

    def unmap_address(self, address: str) -> bool:
        with self._writing(f"unmap address {address}"):
            cur = self.db.conn.execute("DELETE FROM ipextnmap WHERE address = ?", (address,))
        return cur.rowcount > 0

    # -- call user data -----------------------------------------------------------------------
    def userdata_rows(self) -> dict[str, tuple[str, float | None]]:
        """callid -> (JSON text, expiry epoch or None while the call lives)."""
        rows = self._read("SELECT callid, data, expires FROM userdata")
        return {c: (d, e) for c, d, e in rows}

    def save_userdata(self, callid: str, data: str, expires: float | None = None) -> None:
        updated = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._writing(f"save user data of call {callid}"):
            self.db.conn.execute(
                "INSERT INTO userdata(callid, data, updated, expires) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(callid) DO UPDATE SET data = excluded.data,"
                " updated = excluded.updated, expires = excluded.expires",
                (callid, data, updated, expires),
            )

    def remove_userdata(self, callids: list[str]) -> None:
        if not callids:
            return
        with self._writing("forget user data of ended calls"):
            self.db.conn.executemany("DELETE FROM userdata WHERE callid = ?",
                                     [(c,) for c in callids])


# -- password hashing ---------------------------------------------------------------------------
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                  r=int(r), p=int(p))
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


_DUMMY_HASH = hash_password(secrets.token_hex(8))
