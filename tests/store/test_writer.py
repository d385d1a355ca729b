"""The background store writer: latest write per key, in order, retried until the store takes
it, never raising into the caller."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from astcti.errors import StoreError
from astcti.store import Store
from astcti.store import writer as writer_module
from astcti.store.store import AgentRow
from astcti.store.writer import StoreWriter


async def test_writes_land_in_order_latest_per_key(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    Store.open(path, create=True).close()
    writer = StoreWriter(path)
    writer.start()
    try:
        for state in ("ready", "notready", "acw"):
            writer.put("agent:101", lambda s, st=state: s.save_agent(
                AgentRow("101", "7001", ("support",), st)))
        writer.put("userdata:1.2", lambda s: s.save_userdata("1.2", '{"a": 1}'))
        assert await writer.flush(10)
    finally:
        await writer.stop()
    store = Store.open(path)
    assert [a.state for a in store.agents()] == ["acw"]
    assert store.userdata_rows() == {"1.2": ('{"a": 1}', None)}
    store.close()


async def test_failed_writes_are_kept_and_retried(tmp_path: Path, monkeypatch, caplog) -> None:
    """The disk is full for a while: put never raises, the failure is logged once, and the
    latest value of each key is saved once the store takes writes again."""
    monkeypatch.setattr(writer_module, "RETRY_FIRST", 0.05)
    path = tmp_path / "w.db"
    Store.open(path, create=True).close()
    full = {"on": True}

    def save(value: str):
        def write(store: Store) -> None:
            if full["on"]:
                raise StoreError(f"cannot save user data: store {path}: database or disk is"
                                 " full: free disk space; nothing changed")
            store.save_userdata("9.9", value)
        return write

    writer = StoreWriter(path)
    writer.start()
    try:
        with caplog.at_level(logging.WARNING):
            writer.put("userdata:9.9", save('{"v": 1}'))
            await asyncio.sleep(0.3)  # several retries fail meanwhile
            writer.put("userdata:9.9", save('{"v": 2}'))
            assert writer.failing and "disk is full" in writer.failing
            full["on"] = False
            assert await writer.flush(10)
        errors = [r for r in caplog.records if "store writes are failing" in r.getMessage()]
        assert len(errors) == 1
        assert any("store writes work again" in r.getMessage() for r in caplog.records)
    finally:
        await writer.stop()
    store = Store.open(path)
    assert store.userdata_rows()["9.9"][0] == '{"v": 2}'
    store.close()
