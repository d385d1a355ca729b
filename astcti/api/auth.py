"""Client authentication: users of the store, session tokens, failed-login rate limit.

What an authenticated identity may do is decided in astcti/api/authz.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from astcti.api.authz import Identity
from astcti.api.protocol import RequestError
from astcti.store import Store
from astcti.store.store import UserRow

__all__ = ["Auth", "Identity"]

#: the identity of an auth=none listener's clients (see Auth.unauthenticated)
ANONYMOUS = Identity("anonymous", "admin", user=False)

log = logging.getLogger(__name__)

TOKEN_TTL = 12 * 3600.0
MAX_FAILURES = 5  # per peer address within FAILURE_WINDOW
FAILURE_WINDOW = 60.0
VERIFIED_TTL = 600.0  # a password checked once is re-accepted without scrypt for this long
# scrypt needs 16 MiB per check: a small dedicated pool bounds that memory (a thread per core
# of the default pool would keep ~16 MiB of freed heap each).
_HASH_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="astcti-scrypt")


def identity_of(row: UserRow) -> Identity:
    return Identity(row.username, row.role, frozenset(row.extensions))


class Auth:
    """Checks credentials against the store's users; issues tokens valid TOKEN_TTL seconds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tokens: dict[str, tuple[Identity, float]] = {}
        self.failures: dict[str, deque[float]] = {}
        self._verified: dict[bytes, tuple[Identity, float]] = {}
        self._pepper = secrets.token_bytes(32)
        self._users: dict[str, Identity] = {}
        self.reload_users()

    def reload_users(self) -> None:
        """Re-read every user's role and extensions (after an administrator's change): live
        sessions and tokens act with the new rights from their next request."""
        self._users = {row.username: identity_of(row) for row in self.store.users()}

    def unauthenticated(self, peer: str) -> Identity:
        """Who a client of an `auth=none` listener is. Such listeners exist for legacy CRMs that
        act on every extension, so the client is `anonymous` with role admin; only the
        listener's allow list (which must name hosts, see api/listeners.py) decides who gets
        that far. Clients identified by their address get their own identity here."""
        return ANONYMOUS

    def current(self, identity: Identity | None) -> Identity | None:
        """The identity with its rights as they are now; None when the user was removed."""
        if identity is None or not identity.user:
            return identity
        return self._users.get(identity.username)

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
        identity = identity_of(row)
        if len(self._verified) > 10000:
            self._verified = {k: v for k, v in self._verified.items() if v[1] > now}
        self._verified[key] = (identity, now + VERIFIED_TTL)
        return identity

    def forget_user(self, username: str) -> int:
        """After a password change or user removal: no cached acceptance, no live tokens.
        Returns how many tokens it had."""
        self.reload_users()
        self._verified = {k: v for k, v in self._verified.items() if v[0].username != username}
        before = len(self.tokens)
        self.tokens = {t: v for t, v in self.tokens.items() if v[0].username != username}
        return before - len(self.tokens)

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
