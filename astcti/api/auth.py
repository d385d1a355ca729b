"""Client authentication: users of the store, session tokens, failed-login rate limit."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass

from astcti.api.protocol import RequestError
from astcti.store import Store

log = logging.getLogger(__name__)

TOKEN_TTL = 12 * 3600.0
MAX_FAILURES = 5  # per peer address within FAILURE_WINDOW
FAILURE_WINDOW = 60.0


@dataclass(frozen=True)
class Identity:
    username: str
    role: str  # client | admin


class Auth:
    """Checks credentials against the store's users; issues tokens valid TOKEN_TTL seconds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tokens: dict[str, tuple[Identity, float]] = {}
        self.failures: dict[str, deque[float]] = {}

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
        # scrypt costs ~50 ms: keep it off the event loop
        row = await asyncio.to_thread(self.store.check_user, username, password)
        if row is None:
            raise self._fail(peer, username)
        self.failures.pop(peer, None)
        return Identity(row.username, row.role)

    def issue_token(self, identity: Identity) -> str:
        now = time.monotonic()
        if len(self.tokens) > 10000:  # drop expired ones now and then
            self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (identity, now + TOKEN_TTL)
        return token

    def check_token(self, token: str) -> Identity | None:
        entry = self.tokens.get(token)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]
