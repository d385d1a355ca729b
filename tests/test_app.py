"""The daemon's event flow: one consumer's failure never skips the others for that event."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

from astcti.app import Daemon
from astcti.cti.events import Delivered
from astcti.secrets import load_key
from astcti.store import Store


async def test_a_failing_consumer_does_not_cost_the_others_the_event(tmp_path: Path,
                                                                     caplog) -> None:
    db, key = tmp_path / "a.db", tmp_path / "k"
    Store.open(db, create=True).close()
    load_key(key, create=True)
    daemon = Daemon(db, key, admin_socket=tmp_path / "admin.sock")
    await daemon.start()
    try:
        seen: dict[str, list] = {"control": [], "acd": [], "published": []}
        delivered = Delivered("101", "1.2", "2026-01-01T00:00:00.000+00:00", alerting="101")

        def broken(*args):
            raise RuntimeError("bug in one consumer")

        daemon.tracker.handle = lambda link, event: [delivered]  # type: ignore[method-assign]
        daemon.userdata.decorate = broken  # type: ignore[union-attr,method-assign]
        daemon.hub.observers.append(broken)
        daemon.hub.observers.append(lambda e: seen["published"].append(e))
        daemon.control.on_event = lambda link, e: seen["control"].append(e)  # type: ignore
        daemon.acd.on_event = lambda link, e, cti: seen["acd"].append(cti)  # type: ignore
        link = SimpleNamespace(name="acti_tlink_01")
        event = {"type": "ChannelStateChange", "channel": {"id": "1.2"}}
        with caplog.at_level(logging.ERROR):
            daemon._on_ari_event(link, event)  # type: ignore[arg-type]
        assert seen["published"] == [delivered]  # undecorated, but delivered
        assert seen["control"] == [event] and seen["acd"] == [[delivered]]
        failures = [r.getMessage() for r in caplog.records]
        assert any("user data failed on ARI event ChannelStateChange" in m for m in failures)
        assert any("hub observer" in m for m in failures)

        daemon.tracker.handle = broken  # type: ignore[method-assign]
        daemon._on_ari_event(link, event)  # type: ignore[arg-type]
        assert seen["control"] == [event, event] and seen["acd"][-1] == []
    finally:
        await daemon.stop()
