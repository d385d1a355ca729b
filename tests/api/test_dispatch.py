"""The dispatcher's answers when Asterisk refuses what a service asked: a clear error naming
the request, 409 or 502, never `internal error` with a traceback."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from astcti.api.auth import Auth
from astcti.api.authz import Identity
from astcti.api.dispatch import Dispatcher, Services, Session
from astcti.cti.directory import Directory, Extension
from astcti.cti.hub import Hub
from astcti.cti.tracker import Tracker
from astcti.pbx.ari import AriError
from astcti.store import Store


class RefusingControl:
    def __init__(self, error: AriError) -> None:
        self.error = error

    async def hold(self, extension: str, callid: str) -> None:
        raise self.error


@pytest.fixture
def directory() -> Directory:
    directory = Directory()
    directory.extensions["101"] = Extension("101", "PJSIP")
    directory.links["l1"] = SimpleNamespace(name="l1", up=True)  # type: ignore[assignment]
    directory.serving["101"] = "l1"
    return directory


@pytest.mark.parametrize("ari_status, message, status", [
    (409, "409 Channel not in Stasis application", 409),
    (404, "404 Channel not found", 409),
    (500, "500 Internal Server Error", 502),
    (503, "acti_tlink_01: cannot reach Asterisk ARI", 503),
])
async def test_asterisk_refusals_are_clear_errors(tmp_path: Path, directory: Directory, caplog,
                                                  ari_status: int, message: str,
                                                  status: int) -> None:
    store = Store.open(tmp_path / "d.db", create=True)
    try:
        services = Services(store, directory, Tracker(directory.resolve), Hub(), Auth(store),
                            control=RefusingControl(AriError(ari_status, message)))  # type: ignore
        dispatcher = Dispatcher(services)
        session = Session("test", "127.0.0.1", lambda text: None)
        session.identity = Identity("root", "admin", user=False)
        with caplog.at_level(logging.INFO):
            reply, got = await dispatcher.handle(
                session, {"id": "1", "request": "hold", "extension": "101", "callid": "1.2"})
        assert reply["error"] == f"Asterisk refused hold: {message}"
        assert got == status
        assert not any(r.exc_info for r in caplog.records)  # no traceback in the log
    finally:
        store.close()
