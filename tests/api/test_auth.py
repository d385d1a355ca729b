"""The login throttle: parallel wrong logins from one address are throttled too, password
checks are bounded daemon-wide, the per-address table stays small."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from astcti.api import auth as auth_module
from astcti.api.auth import Auth
from astcti.api.protocol import RequestError
from astcti.store import Store


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "a.db", create=True)
    s.set_user("alice", "right-password", "agent", ["101"])
    yield s
    s.close()


class Counting:
    """Wraps Store.check_user: how many scrypt checks ran, and how many at once at most."""

    def __init__(self, store: Store) -> None:
        self.check_user = store.check_user
        self.calls = 0
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, username: str, password: str):
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.02)  # a little longer than scrypt alone, so checks overlap
            return self.check_user(username, password)
        finally:
            with self._lock:
                self.running -= 1


async def _attempt(auth: Auth, peer: str, password: str) -> str:
    try:
        await auth.login(peer, "alice", password, None)
        return "ok"
    except RequestError as exc:
        return str(exc.status)


async def test_parallel_wrong_logins_from_one_address_are_throttled(store: Store) -> None:
    counting = Counting(store)
    store.check_user = counting  # type: ignore[method-assign]
    auth = Auth(store)
    results = await asyncio.gather(*(_attempt(auth, "10.0.0.9", f"guess-{i}")
                                     for i in range(40)))
    assert results.count("401") == auth_module.MAX_FAILURES
    assert results.count("429") == 40 - auth_module.MAX_FAILURES
    assert counting.calls == auth_module.MAX_FAILURES  # no scrypt for the refused ones
    assert counting.most <= auth_module.PEER_CHECKS
    # the right password is refused too while the address is blocked; another address is not
    assert await _attempt(auth, "10.0.0.9", "right-password") == "429"
    assert await _attempt(auth, "10.0.0.10", "right-password") == "ok"


async def test_parallel_right_logins_behind_one_address_all_succeed(store: Store) -> None:
    """A call centre behind one NAT address logging in at 9:00: no one is refused."""
    for i in range(20):
        store.set_user(f"agent{i}", f"password-{i}", "agent", [str(100 + i)])
    auth = Auth(store)

    async def login(i: int) -> str:
        identity = await auth.login("192.0.2.1", f"agent{i}", f"password-{i}", None)
        return identity.username

    assert sorted(await asyncio.gather(*(login(i) for i in range(20)))) == \
        sorted(f"agent{i}" for i in range(20))


async def test_password_checks_are_capped_daemon_wide(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(auth_module, "MAX_CHECKS", 6)
    counting = Counting(store)
    store.check_user = counting  # type: ignore[method-assign]
    auth = Auth(store)
    results = await asyncio.gather(*(_attempt(auth, f"10.1.0.{i}", "wrong")
                                     for i in range(30)))
    assert results.count("429") == 24 and results.count("401") == 6
    assert counting.calls == 6


def test_the_per_address_table_is_pruned(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(auth_module, "MAX_PEERS", 100)
    auth = Auth(store)
    for i in range(1000):
        auth._record(f"10.2.{i // 256}.{i % 256}")
        assert len(auth.failures) <= 100
