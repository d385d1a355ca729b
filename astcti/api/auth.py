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
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from astcti.api.authz import Identity
from astcti.api.protocol import RequestError
from astcti.store import Store
from astcti.store.store import UserRow, verify_password

if TYPE_CHECKING:
    from astcti.cti.seating import Seating

__all__ = ["Auth", "Identity", "address_identity"]

T = TypeVar("T")

log = logging.getLogger(__name__)

TOKEN_TTL = 12 * 3600.0
MAX_FAILURES = 5  # per peer address within FAILURE_WINDOW (attempts being checked count too)
FAILURE_WINDOW = 60.0
VERIFIED_TTL = 600.0  # a password checked once is re-accepted without scrypt for this long
PEER_CHECKS = 2  # password checks of one address at a time; its others wait their turn
PEER_QUEUE = 64  # logins of one address waiting for a check (a NAT of agents at 9:00)
MAX_CHECKS = 64  # password checks waiting or running, daemon-wide (each is 16 MiB of scrypt)
MAX_PEERS = 10000  # addresses remembered; expired entries go first
# scrypt needs 16 MiB per check: a small dedicated pool bounds that memory (a thread per core
# of the default pool would keep ~16 MiB of freed heap each).
_HASH_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="astcti-scrypt")


def identity_of(row: UserRow) -> Identity:
    return Identity(row.username, row.role, frozenset(row.extensions))


def address_identity(seating: Seating | None, peer: str) -> Identity:
    """Who a client of an `auth=none` listener is: its address, seated by the ipextnmap at one
    extension: role agent on that extension only, judged by the same check as every user
    (astcti/api/authz.py). The dispatcher re-derives it at each request, so `add ipextnmap`
    applies at once."""
    extension = seating.extension_of(peer) if seating is not None else None
    return Identity(f"address {peer}", "agent", frozenset({extension} if extension else ()),
                    user=False, address=peer)


class Auth:
    """Checks credentials against the store's users; issues tokens valid TOKEN_TTL seconds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tokens: dict[str, tuple[Identity, float]] = {}
        self.failures: dict[str, deque[float]] = {}  # peer -> attempts (failed or in check)
        self._peer_gates: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}
        self._checks = 0  # password checks waiting or running
        self._verified: dict[bytes, tuple[Identity, float]] = {}
        self._agents_verified: dict[bytes, float] = {}  # agent passwords, as for users
        self._pepper = secrets.token_bytes(32)
        self._users: dict[str, Identity] = {}
        self.reload_users()

    def reload_users(self) -> None:
        """Re-read every user's role and extensions (after an administrator's change): live
        sessions and tokens act with the new rights from their next request."""
        self._users = {row.username: identity_of(row) for row in self.store.users()}

    def current(self, identity: Identity | None) -> Identity | None:
        """The identity with its rights as they are now; None when the user was removed."""
        if identity is None or not identity.user:
            return identity
        return self._users.get(identity.username)

    def _key(self, username: str, password: str) -> bytes:
        return hmac.new(self._pepper, f"{username}\0{password}".encode(), hashlib.sha256).digest()

    def _cached(self, username: str, password: str) -> Identity | None:
        """The identity of credentials checked less than VERIFIED_TTL ago (keyed digest)."""
        hit = self._verified.get(self._key(username, password))
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        return None

    async def _check_password(self, username: str, password: str) -> Identity | None:
        """scrypt once per (user, password) per VERIFIED_TTL; a keyed digest remembers it."""
        cached = self._cached(username, password)
        if cached is not None:
            return cached
        key = self._key(username, password)
        now = time.monotonic()
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

    def forget_verifications(self) -> None:
        """Users may have changed in the store behind our back (a reload): check passwords
        again at the next login (tokens already issued stay valid)."""
        self._verified.clear()

    def _throttled(self, peer: str) -> float:
        """Seconds until this address may try again (0: now)."""
        window = self.failures.get(peer)
        now = time.monotonic()
        while window and now - window[0] > FAILURE_WINDOW:
            window.popleft()
        if window and len(window) >= MAX_FAILURES:
            return max(1.0, FAILURE_WINDOW - (now - window[0]))
        return 0.0

    def _record(self, peer: str) -> float:
        """Count an attempt before it is checked: parallel guesses see each other. Returns its
        mark, to forget it if it succeeds."""
        window = self.failures.get(peer)
        if window is None:
            if len(self.failures) >= MAX_PEERS:
                self._prune()
            window = self.failures[peer] = deque()
        mark = time.monotonic()
        window.append(mark)
        return mark

    def _forget_attempt(self, peer: str, mark: float) -> None:
        window = self.failures.get(peer)
        if window is not None:
            try:
                window.remove(mark)
            except ValueError:
                pass
            if not window:
                del self.failures[peer]

    def _prune(self) -> None:
        """Drop expired entries; if every address is recent, the oldest ones (so a flood of
        addresses cannot grow the table without bound)."""
        now = time.monotonic()
        self.failures = {p: w for p, w in self.failures.items()
                         if w and now - w[-1] <= FAILURE_WINDOW}
        if len(self.failures) >= MAX_PEERS:
            recent = sorted(self.failures.items(), key=lambda item: item[1][-1])
            self.failures = dict(recent[len(recent) - MAX_PEERS // 2:])

    def _fail(self, peer: str, username: str) -> RequestError:
        log.warning("failed login for user %r from %s", username[:64], peer)
        return RequestError("login failed: wrong username, password or token", 401)

    def _refuse_throttled(self, peer: str) -> None:
        wait = self._throttled(peer)
        if wait > 0:
            log.warning("login from %s refused: too many failures", peer)
            raise RequestError(f"too many failed logins: retry in {int(wait) + 1} s", 429)

    async def login(self, peer: str, username: str | None, password: str | None,
                    token: str | None) -> Identity:
        self._refuse_throttled(peer)
        if token:
            identity = self.check_token(token)
            if identity is None:
                self._record(peer)
                raise self._fail(peer, "<token>")
            return identity
        if not username or not password:
            raise RequestError("missing field username/password (or token)")
        cached = self._cached(username, password)
        if cached is not None:  # checked moments ago: no scrypt, nothing to throttle
            return cached
        return await self._checked_login(peer, username, password)

    async def _checked_login(self, peer: str, username: str, password: str) -> Identity:
        """One password check, taking its turn among the address's and the daemon's checks."""
        identity = await self._gated(peer, lambda: self._check_password(username, password))
        if identity is None:
            raise self._fail(peer, username)
        return identity

    async def _gated(self, peer: str, check: Callable[[], Awaitable[T]]) -> T:
        """Run one (scrypt) credential check in its turn: at most PEER_CHECKS of an address at
        once, MAX_CHECKS waiting or running daemon-wide, the attempt counted before it runs (so
        parallel guesses see each other) and forgotten if it succeeds."""
        if self._checks >= MAX_CHECKS:
            log.warning("login from %s refused: %d password checks already pending", peer,
                        self._checks)
            raise RequestError("too many logins at once: retry in 1 s", 429)
        gate, waiting = self._peer_gates.setdefault(
            peer, (asyncio.Semaphore(PEER_CHECKS), [0]))
        if waiting[0] >= PEER_QUEUE:
            raise RequestError("too many logins at once from this address: retry in 1 s", 429)
        self._checks += 1
        waiting[0] += 1
        try:
            async with gate:
                self._refuse_throttled(peer)  # the attempts before this one may have failed
                mark = self._record(peer)
                result = await check()
        finally:
            self._checks -= 1
            waiting[0] -= 1
            if waiting[0] == 0:
                self._peer_gates.pop(peer, None)
        if result:
            self._forget_attempt(peer, mark)
        return result

    async def check_agent_password(self, peer: str, agentid: str, password: str | None) -> None:
        """An ACD agent that has a password (astcti-shell `passwd agent`) must give it at ACD
        login and state changes; failures count towards the same per-address limit as logins.
        An agent without a password is not checked (the connection's login authorises)."""
        stored = self.store.agent_password_hash(agentid)
        if stored is None:
            return
        self._refuse_throttled(peer)
        ok = False
        if password:
            # the stored hash is in the key: a changed password forgets earlier acceptances
            key = hmac.new(self._pepper, f"{agentid}\0{password}\0{stored}".encode(),
                           hashlib.sha256).digest()
            now = time.monotonic()
            if self._agents_verified.get(key, 0.0) > now:
                return
            loop = asyncio.get_running_loop()
            ok = await self._gated(peer, lambda: loop.run_in_executor(
                _HASH_POOL, verify_password, password, stored))
            if ok:
                if len(self._agents_verified) > 10000:
                    self._agents_verified = {k: v for k, v in self._agents_verified.items()
                                             if v > now}
                self._agents_verified[key] = now + VERIFIED_TTL
                return
        if not password:
            self._record(peer)  # a missing password fails like a wrong one (no check ran)
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
