"""Client authentication: users of the store, session tokens, failed-login rate limit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from astcti.api.protocol import RequestError
from astcti.store import Store
from astcti.store.store import verify_password

if TYPE_CHECKING:
    from astcti.cti.seating import Seating

log = logging.getLogger(__name__)

TOKEN_TTL = 12 * 3600.0
MAX_FAILURES = 5  # per peer address within FAILURE_WINDOW
FAILURE_WINDOW = 60.0
VERIFIED_TTL = 600.0  # a password checked once is re-accepted without scrypt for this long
# scrypt needs 16 MiB per check: a small dedicated pool bounds that memory (a thread per core
# of the default pool would keep ~16 MiB of freed heap each).
_HASH_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="astcti-scrypt")


@dataclass(frozen=True)
class Identity:
    username: str
    role: str  # client | admin | agent (a client known by its address)
    #: for a client known by its address (`address` set): the extensions it may act on
    extensions: tuple[str, ...] = ()
    address: str = ""  # set for a client of an `auth=none` listener: it is known by its address


def address_identity(seating: Seating | None, peer: str) -> Identity:
    """Who a client of an `auth=none` listener is: its address, seated by the ipextnmap at one
    extension (role agent, like a user allowed that extension only)."""
    extension = seating.extension_of(peer) if seating is not None else None
    return Identity(f"address {peer}", "agent", (extension,) if extension else (), peer)


def check_extension(identity: Identity, extension: str) -> None:
    """A client known by its address acts on the extension mapped to its address, nothing else
    (monitoring or controlling others needs a login)."""
    if not identity.address or extension in identity.extensions:
        return
    if not identity.extensions:
        raise RequestError(f"address {identity.address} has no extension: an administrator"
                           f" seats it with astcti-shell `add ipextnmap {identity.address} EXT`"
                           " (or log in)", 403)
    raise RequestError(f"extension {extension} is not yours: address {identity.address} sits at"
                       f" extension {identity.extensions[0]} (log in to act on others)", 403)


class Auth:
    """Checks credentials against the store's users; issues tokens valid TOKEN_TTL seconds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tokens: dict[str, tuple[Identity, float]] = {}
        self.failures: dict[str, deque[float]] = {}
        self._verified: dict[bytes, tuple[Identity, float]] = {}
        self._agents_verified: dict[bytes, float] = {}  # agent passwords, as for users
        self._pepper = secrets.token_bytes(32)

    async def _check_password(self, username: str, password: str) -> Identity | None:
        """scrypt once per (user, password) per VERIFIED_TTL; a keyed digest remembers it."""
        key = hmac.new(self._pepper, f"{username}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        hit = self._verified.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        loop = asyncio.get_running_loop()
        row = await loop.run_in_executor(_HASH_POOL, self.store.check_user, username, password)
        if row is None:
            return None
        identity = Identity(row.username, row.role)
        if len(self._verified) > 10000:
            self._verified = {k: v for k, v in self._verified.items() if v[1] > now}
        self._verified[key] = (identity, now + VERIFIED_TTL)
        return identity

    def forget_user(self, username: str) -> int:
        """After a password change or user removal: no cached acceptance, no live tokens.
        Returns how many tokens it had."""
        self._verified = {k: v for k, v in self._verified.items() if v[0].username != username}
        before = len(self.tokens)
        self.tokens = {t: v for t, v in self.tokens.items() if v[0].username != username}
        return before - len(self.tokens)

    def forget_verifications(self) -> None:
        """Users may have changed in the store behind our back (a reload): check passwords
        again at the next login (tokens already issued stay valid)."""
        self._verified.clear()

    def _throttled(self, peer: str) -> float:
        window = self.failures.get(peer)
        now = time.monotonic()
        while window and now - window[0] > FAILURE_WINDOW:
            window.popleft()
        if window and len(window) >= MAX_FAILURES:
            return FAILURE_WINDOW - (now - window[0])
        return 0.0

    def _fail(self, peer: str, username: str) -> RequestError:
        self.failures.setdefault(peer, deque()).append(time.monotonic())
        log.warning("failed login for user %r from %s", username[:64], peer)
        return RequestError("login failed: wrong username, password or token", 401)

    async def login(self, peer: str, username: str | None, password: str | None,
                    token: str | None) -> Identity:
        wait = self._throttled(peer)
        if wait > 0:
            log.warning("login from %s refused: too many failures", peer)
            raise RequestError(f"too many failed logins: retry in {int(wait) + 1} s", 429)
        if token:
            identity = self.check_token(token)
            if identity is None:
                raise self._fail(peer, "<token>")
            return identity
        if not username or not password:
            raise RequestError("missing field username/password (or token)")
        identity = await self._check_password(username, password)
        if identity is None:
            raise self._fail(peer, username)
        self.failures.pop(peer, None)
        return identity

    async def check_agent_password(self, peer: str, agentid: str, password: str | None) -> None:
        """An ACD agent that has a password (astcti-shell `passwd agent`) must give it at ACD
        login and state changes; failures count towards the same per-address limit as logins.
        An agent without a password is not checked (the connection's login authorises)."""
        stored = self.store.agent_password_hash(agentid)
        if stored is None:
            return
        wait = self._throttled(peer)
        if wait > 0:
            raise RequestError(f"too many failed logins: retry in {int(wait) + 1} s", 429)
        ok = False
        if password:
            # the stored hash is in the key: a changed password forgets earlier acceptances
            key = hmac.new(self._pepper, f"{agentid}\0{password}\0{stored}".encode(),
                           hashlib.sha256).digest()
            now = time.monotonic()
            if self._agents_verified.get(key, 0.0) > now:
                return
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(_HASH_POOL, verify_password, password, stored)
            if ok:
                if len(self._agents_verified) > 10000:
                    self._agents_verified = {k: v for k, v in self._agents_verified.items()
                                             if v > now}
                self._agents_verified[key] = now + VERIFIED_TTL
                return
        self.failures.setdefault(peer, deque()).append(time.monotonic())
        log.warning("wrong or missing password for agent %r from %s", agentid[:32], peer)
        raise RequestError(f"agent login failed: wrong or missing password for agent {agentid}",
                           401)

    def issue_token(self, identity: Identity) -> str:
        now = time.monotonic()
        if len(self.tokens) > 10000:  # drop expired ones now and then
            self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (identity, now + TOKEN_TTL)
        return token

    def revoke(self, token: str) -> None:
        """A token given up at logout stops working at once."""
        self.tokens.pop(token, None)

    def check_token(self, token: str) -> Identity | None:
        entry = self.tokens.get(token)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]
